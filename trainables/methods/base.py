"""The method contract: one object per trial that owns the model, any extra networks and their
optimizers, and knows how to take one training step and how to predict."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import pgd
from trainables.config import EvalConfig
from trainables.data import Dataset
from trainables.models import EmbedHeadModel


@dataclass(frozen=True)
class NoHparams:
    """Methods without knobs of their own."""


@dataclass(frozen=True)
class TrainSettings:
    """What every method reads from the trial config besides its own knobs."""

    lr: float
    optimizer: str
    weight_decay: float
    train_eps: float
    train_steps: int
    train_step_size: float | None
    num_classes: int
    # One fused kernel per optimizer step instead of a loop over parameters: set on CUDA by the
    # training loop. CPU runs keep PyTorch's default implementation.
    fused: bool = False


class Method(nn.Module):
    """Subclasses set `Hparams`, build extra networks in __init__, implement `train_step`.

    `forward` is `predict`, the full inference path: attacks are given the method itself, so a
    defense that changes inference is attacked through it.
    """

    Hparams: type = NoHparams
    description: str = ""
    paper: str = ""
    # A baseline (no defense, PGD-AT, TRADES) rather than a latent-space regularizer: listed first
    # by `orch reproduce` and `orch benchmark`.
    baseline: bool = False
    # True when `predict` is not `model(x)` (e.g. ATLD's IMT). The evaluation then also reports
    # AutoAttack crafted on `model` alone (path="base") next to the attack through `predict`.
    # Wrap non-differentiable steps of `predict` in `trainables.attacks.bpda` so gradient attacks
    # see through them; a `predict` that needs input gradients itself must enable them (the
    # evaluation scores examples under torch.no_grad).
    changes_inference: bool = False

    def __init__(self, model: EmbedHeadModel, hp: Any, settings: TrainSettings):
        super().__init__()
        self.model = model
        self.hp = hp
        self.settings = settings
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the networks on one batch; return detached scalars, `loss` among them."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)

    def extra_evaluation(self, data: Dataset, eval_cfg: EvalConfig,
                         target_eps: float) -> dict[str, float]:
        """A method's own evaluation step after the robustness curve (e.g. ER's detector), on the
        curve's `eval_cfg.eval_examples` test points; `run_trial` logs each entry as
        test_<name>. None here."""
        return {}

    # --- helpers shared by methods -------------------------------------------------------
    def make_optimizer(self, params: Iterable[nn.Parameter], lr: float | None = None,
                       kind: str | None = None, weight_decay: float | None = None,
                       adam_beta1: float = 0.9) -> torch.optim.Optimizer:
        """SGD (momentum 0.9) or Adam; lr, kind and weight decay default to the trial's. Every
        optimizer of every method is built here, so all of them are fused on CUDA."""
        lr = self.settings.lr if lr is None else lr
        kind = kind or self.settings.optimizer
        decay = self.settings.weight_decay if weight_decay is None else weight_decay
        fused = True if self.settings.fused else None  # None: PyTorch picks (foreach or loop)
        if kind == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=decay, fused=fused)
        if kind == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(adam_beta1, 0.999), weight_decay=decay,
                                    fused=fused)
        raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")

    def adversary(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training adversary: PGD-L∞ on CE against the base model (eval mode); its last
        iterate, as Madry et al. train on (the best one would cost a forward pass more)."""
        s = self.settings
        return pgd(self.model, x, y, s.train_eps, s.train_steps, s.train_step_size,
                   keep_best=False)

    @staticmethod
    def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def state(self) -> dict[str, Any]:
        return {
            "modules": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)

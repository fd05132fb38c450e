"""TRADES (Zhang et al., 2019): CE on clean inputs + β·KL(f(x) ‖ f(x_adv)), with x_adv maximising
that KL. Also the base adversary/loss of ER-Trades and ADR with `base=trades`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import LinfBall, eval_mode
from trainables.attacks.core import input_grad
from trainables.methods import METHODS
from trainables.methods.base import Method, cross_entropy


def kl_to_clean(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_clean ‖ softmax(logits_adv))."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction="none").sum(1)


def trades_adversary(net: nn.Module, x: torch.Tensor, eps: float, steps: int,
                     step_size: float | None) -> torch.Tensor:
    """PGD-L∞ on KL(f(x) ‖ f(x')) from x + 0.001·N(0, I); reads no labels."""
    ball = LinfBall(eps)
    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    with eval_mode(net):
        with torch.no_grad():
            p_clean = F.softmax(net(x), dim=1)
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0.0, 1.0)
        for _ in range(steps):
            grad = input_grad(net, kl_to_clean, x_adv, p_clean)
            x_adv = ball.project(ball.step(x_adv, grad, alpha), x).detach()
    return x_adv


def trades_loss(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                beta: float) -> torch.Tensor:
    """CE(f(x), y) + β·mean KL(f(x) ‖ f(x_adv)) (the clean distribution is not detached)."""
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1),
                  reduction="batchmean")
    return cross_entropy(logits_clean, y) + beta * kl


@dataclass(frozen=True)
class TradesHparams:
    lambda_: float = 6.0  # β of the paper


@METHODS.register("trades")
class Trades(Method):
    Hparams = TradesHparams
    description = "TRADES: clean CE + β·KL between clean and adversarial predictions"
    paper = "Zhang et al., 2019"
    baseline = True

    def __init__(self, model, hp: TradesHparams, settings):
        super().__init__(model, hp, settings)
        self.optimizers["model"] = self.make_optimizer(model.parameters())

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.settings
        x_adv = trades_adversary(self.model, x, s.train_eps, s.train_steps, s.train_step_size)
        loss = trades_loss(self.model(x), self.model(x_adv), y, self.hp.lambda_)
        self.descend(self.optimizers["model"], loss)
        return {"loss": loss.detach()}

"""AutoAttack (Croce & Hein, 2020) and its Square attack, through the reference `pyautoattack`
package (not re-implemented here).

The package runs its own cascade (each attack only on points still robust), seeds torch's global
generator, and its FAB calls `.backward()`. We hand it the model with detached parameters so only
the input receives a gradient, and fork the random state so the caller's stream is untouched.
"""
from __future__ import annotations

from typing import Callable

import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack
from torch import nn

from trainables.attacks.core import eval_mode

AUTOATTACK_ITERATIONS = 100  # APGD / FAB iterations in the package's standard version


class _InputGradOnly(nn.Module):
    """`net` evaluated with detached parameters: `.backward()` then reaches the input only."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        return torch.func.functional_call(self.net, params, (x,))


def autoattack(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "Linf",
               version: str = "standard", seed: int = 0) -> torch.Tensor:
    """AutoAttack `version` ("standard": APGD-CE, APGD-T, FAB-T, Square 5000 queries; "rand":
    APGD-CE/DLR with EOT for randomised defenses); per example the first successful x_adv,
    else x."""
    return _run(net, x, y, AutoAttack, dict(eps=eps, norm=norm, version=version, seed=seed))


def square(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
           norm: str = "Linf", seed: int = 0) -> torch.Tensor:
    """Square attack alone (a score-based black-box attack: it never reads a gradient, so gradient
    masking cannot stop it), with `queries` queries per example."""

    def build(model: nn.Module, **kwargs) -> AutoAttack:
        adversary = AutoAttack(model, attacks=["square"], version="custom", **kwargs)
        adversary.square.n_queries = queries
        return adversary

    return _run(net, x, y, build, dict(eps=eps, norm=norm, seed=seed))


def apgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, loss: str,
         iterations: int, restarts: int, norm: str = "Linf", seed: int = 0) -> torch.Tensor:
    """APGD (AutoAttack's step-size-free PGD) alone on `loss` ("ce" or "dlr": the difference of
    logits ratio, a margin loss that does not saturate with the softmax), each restart only on
    the points still robust; per example the first successful x_adv, else x."""

    def build(model: nn.Module, **kwargs) -> AutoAttack:
        adversary = AutoAttack(model, attacks=[f"apgd-{loss}"], version="custom", **kwargs)
        # A new APGD rather than a changed n_iter: its step-size checkpoints are set from n_iter
        # when it is built.
        adversary.apgd = APGDAttack(model, n_iter=iterations, n_restarts=restarts, eps=eps,
                                    norm=norm, seed=seed, device=kwargs["device"],
                                    logger=adversary.logger)
        return adversary

    return _run(net, x, y, build, dict(eps=eps, norm=norm, seed=seed))


def _run(net: nn.Module, x: torch.Tensor, y: torch.Tensor, build: Callable[..., AutoAttack],
         kwargs: dict) -> torch.Tensor:
    if len(x) == 0:
        return x.detach().clone()
    devices = [x.device] if x.device.type == "cuda" else []
    with eval_mode(net), torch.random.fork_rng(devices=devices):
        model = _InputGradOnly(net)
        adversary = build(model, device=x.device, **kwargs)
        adversary.verbose = False
        _fit_targets(adversary, num_classes=_num_classes(model, x))
        x_adv, _ = adversary.run_standard_evaluation(x.detach(), y, batch_size=len(x))
    return x_adv.detach()


@torch.no_grad()
def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    return model(x[:1]).shape[1]


def _fit_targets(adversary: AutoAttack, num_classes: int) -> None:
    """The standard version targets the 9 runner-up classes: fewer when there are fewer classes."""
    targets = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets

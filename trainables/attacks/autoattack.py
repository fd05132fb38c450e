"""AutoAttack (Croce & Hein, 2020) and its Square attack, through the reference `pyautoattack`
package (not re-implemented here).

The package runs its own cascade (each attack only on points still robust), seeds torch's global
generator, and its FAB calls `.backward()`. We hand it the model with detached parameters so only
the input receives a gradient, and fork the random state so the caller's stream is untouched.

`autoattack_cascade` runs the published cascade one stage at a time (each stage is the package's
own `run_standard_evaluation` on the points the stages before it left robust, exactly what the
package does in one call), so it can record which sub-attack broke each point; the package's
reliability checks, which it only logs, are captured as named flags. Its Square check, which the
package runs after the whole cascade, is judged by trainables.sanity from what the Square stage
broke (its threshold, with the sampling noise of the points evaluated).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack
from torch import nn

from trainables.attacks.core import eval_mode

AUTOATTACK_ITERATIONS = 100  # APGD / FAB iterations in the package's standard version
PACKAGE_LOGGER = "auto-attack"  # the logger pyautoattack's AutoAttack writes to
# pyautoattack's own checks (pyautoattack/checks.py), which it reports as logged warnings: our flag
# name -> a phrase of the warning that check logs. The flag is True while its warning is absent.
AUTOATTACK_CHECKS = {
    "autoattack_deterministic": "randomized defense",  # check_randomized
    "autoattack_outputs_logits": "probability distribution",  # check_range_output
    "autoattack_static_defense": "dynamic defense",  # check_dynamic (autograd calls in forward)
    "autoattack_target_classes": "classes",  # check_n_classes
    "autoattack_no_zero_gradient": "zero gradient",  # check_zero_gradients, inside APGD
}


@dataclass(frozen=True)
class AutoAttackRun:
    """One AutoAttack cascade: per example the first successful x_adv (else x), which stage
    broke it, and the names of the package's checks that warned."""

    x_adv: torch.Tensor
    broken_by: dict[str, torch.Tensor]  # stage ("apgd-ce", ...) -> bool [N], in cascade order
    warned: frozenset[str]  # AUTOATTACK_CHECKS names whose warning was logged


class _InputGradOnly(nn.Module):
    """`net` evaluated with detached parameters: `.backward()` then reaches the input only."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        return torch.func.functional_call(self.net, params, (x,))


def autoattack(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               version: str = "standard", seed: int = 0) -> torch.Tensor:
    """AutoAttack `version` ("standard": APGD-CE, APGD-T, FAB-T, Square 5000 queries; "rand":
    APGD-CE/DLR with EOT for randomised defenses); per example the first successful x_adv,
    else x."""
    return autoattack_cascade(net, x, y, eps, version, seed).x_adv


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


def autoattack_cascade(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                       version: str = "standard", seed: int = 0, batch_size: int = 512,
                       stages: tuple[str, ...] | None = None, continue_from: dict[str, Any] | None = None,
                       after_stage: Callable[[str, dict[str, Any]], None] | None = None) -> AutoAttackRun:
    """AutoAttack `version` as published, stage by stage on the points still robust (see the
    module docstring); robustness is judged on `net`, as the package does. `stages` keeps only
    those of the version's sub-attacks (one of them: that sub-attack alone).

    `after_stage(stage, state)` is told where the cascade stands after each stage, and
    `continue_from` takes such a state (of the same inputs) to run only the stages after it:
    each stage seeds its own random state, so the result is the uninterrupted cascade's."""
    devices = [x.device] if x.device.type == "cuda" else []
    state = continue_from or {"x_adv": x.detach().clone(), "robust": None, "broken_by": {}, "messages": []}
    with eval_mode(net), torch.random.fork_rng(devices=devices), _logged_warnings(state["messages"]) as messages:
        model = _InputGradOnly(net)
        adversary = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed,
                               device=x.device)
        adversary.verbose = False
        _fit_targets(adversary, num_classes=_num_classes(model, x))
        x_adv, broken_by = state["x_adv"].to(x.device), dict(state["broken_by"])
        robust = _predicts(model, x, y, batch_size) if state["robust"] is None else state["robust"].to(x.device)
        for stage in [a for a in adversary.attacks_to_run if stages is None or a in stages]:
            if stage in broken_by:  # run before the cascade was interrupted
                continue
            idx = robust.nonzero().squeeze(1)
            broken_by[stage] = torch.zeros_like(robust)
            if len(idx):
                adversary.attacks_to_run = [stage]
                stage_adv, _ = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                fooled = ~_predicts(model, stage_adv, y[idx], batch_size)
                x_adv[idx[fooled]] = stage_adv.detach()[fooled]
                broken_by[stage][idx[fooled]], robust[idx[fooled]] = True, False
            if after_stage is not None:
                after_stage(stage, {"x_adv": x_adv, "robust": robust, "broken_by": broken_by,
                                    "messages": list(messages)})
    warned = frozenset(name for name, phrase in AUTOATTACK_CHECKS.items()
                       if any(phrase in message for message in messages))
    return AutoAttackRun(x_adv, broken_by, warned)


@contextmanager
def _logged_warnings(before: list[str]) -> Iterator[list[str]]:
    """`before`, then the warnings the package's logger emits inside the block (its checks report
    only there)."""
    logger, handler = logging.getLogger(PACKAGE_LOGGER), _Collect(before)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


class _Collect(logging.Handler):
    def __init__(self, before: list[str]):
        super().__init__(logging.WARNING)
        self.messages: list[str] = list(before)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@torch.no_grad()
def _predicts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                      for i in range(0, len(x), batch_size)])


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

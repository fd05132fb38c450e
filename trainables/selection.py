"""What a trial tells the search: robust accuracy on the validation split under a strong attack.

Selecting on a weak attack rewards gradient masking: a configuration whose gradients are
uninformative looks robust to PGD on cross-entropy and wins the search. So the value a finished
trial reports to the search (`SEARCH_METRIC`, at its last epoch) is the per-example worst case of
PGD on cross-entropy and APGD on the DLR loss (a margin loss with an adaptive step, from the
reference `pyautoattack` package), each with restarts, at the target ε (`STRONG_METRIC`). On the
other epochs `SEARCH_METRIC` is the cheap per-epoch PGD (`RUNG_METRIC`), which an early-stopping
scheduler compares across trials at the same epoch; a trial stopped on it never reports a strong
value, and the search is told it was pruned (orchestrator.sweep.searchers).
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.attacks import ATTACKS, AttackSettings, correct, eval_mode
from trainables.attacks.autoattack import apgd
from trainables.data import Split

RUNG_METRIC = "val_robust_acc"  # every epoch: PGD-CE, val_steps steps, one restart
STRONG_METRIC = "val_strong_robust_acc"  # last epoch: worst case of PGD-CE and APGD-DLR, restarts
SEARCH_METRIC = "search_robust_acc"  # RUNG_METRIC, and STRONG_METRIC at the last epoch
EVAL_SEED = 0  # every trial is attacked with the same random starts


def strong_robust_accuracy(net: nn.Module, split: Split, eps: float, steps: int, restarts: int,
                           batch_size: int = 512) -> float:
    """Per example: correct without attack and under both PGD-CE and APGD-DLR (`steps`
    iterations, `restarts` restarts each); each attack runs only on the points still robust."""
    pgd = ATTACKS.get("pgd")
    settings = AttackSettings(steps=steps, restarts=restarts, seed=EVAL_SEED)
    attacks = (lambda x, y: pgd(net, x, y, eps, settings),
               lambda x, y: apgd(net, x, y, eps, "dlr", steps, restarts, seed=EVAL_SEED))
    devices = [split.x.device] if split.x.device.type == "cuda" else []
    # Fixed random starts, in a forked random state: the trial's own stream is left as it was.
    with torch.random.fork_rng(devices=devices), eval_mode(net):
        torch.manual_seed(EVAL_SEED)
        robust = torch.cat([correct(net, split.x[i:i + batch_size], split.y[i:i + batch_size])
                            for i in range(0, len(split), batch_size)])
        for attack in attacks:
            for idx in robust.nonzero().squeeze(1).split(batch_size):
                x_adv = attack(split.x[idx], split.y[idx])
                robust[idx] = correct(net, x_adv, split.y[idx])
    return robust.float().mean().item() if len(robust) else float("nan")

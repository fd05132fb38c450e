"""The black-box sanity checks, re-judged from the per-example records: per method, how many of its
seeds fail `whitebox_le_blackbox` or `autoattack_square_gain_small` at the target ε.

A trial stores its checks as booleans when it finishes; these two are judged here again, from the
records the leaderboard ranks, with the rule the trials use now (trainables.sanity.blackbox_checks
on the gaps trainables.outcomes computes): records written before the rule changed are judged like
new ones, and what is ranked is judged from what is ranked.
"""
from __future__ import annotations

import pandas as pd
import torch

from trainables.attacks import ATTACKS
from trainables.outcomes import Job, blackbox_gaps, square_stage_gain
from trainables.sanity import blackbox_checks

# The stored columns these replace ("autoattack_square_no_gain": the package's own, single-point
# judgement, stored before orch judged it with the sampling noise).
REJUDGED = ("whitebox_le_blackbox", "autoattack_square_gain_small", "autoattack_square_no_gain")


def failing_seeds(records: pd.DataFrame, target_eps: float) -> dict[str, dict[str, int]]:
    """Per method, per re-judged check, the number of its seeds that fail it."""
    failing: dict[str, dict[str, int]] = {}
    for (method, _), rows in records.groupby(["method", "seed"]):
        clean, results = _as_evaluated(rows)
        target = min({job.eps for job in results} or {target_eps}, key=lambda e: abs(e - target_eps))
        checks = blackbox_checks(blackbox_gaps(results, clean), square_stage_gain(results, target), target)
        counts = failing.setdefault(method, {})
        for name, passed in checks.items():
            counts[name] = counts.get(name, 0) + (passed is False)
    return failing


def _as_evaluated(rows: pd.DataFrame) -> tuple[torch.Tensor, dict[Job, torch.Tensor]]:
    """One seed's records as its evaluation held them: clean correctness, and per job (an attack
    at an ε on a path, in a role) whether each point was still correct, in test-point order."""
    clean, results = torch.zeros(0, dtype=torch.bool), {}
    for (attack, path, eps), series in rows.sort_values("index").groupby(["attack", "path", "eps"]):
        correct = torch.tensor(series["correct"].to_numpy(dtype=bool))
        name, _, role = attack.partition("/")
        if attack == "clean":
            clean = correct
        elif name in ATTACKS:  # not a derived series ("worst")
            results[Job(name, float(eps), path, role or "curve")] = correct
    return clean, results

"""What Optuna is told about a trial (see trainables.selection for what the numbers are).

A trial reports `search_robust_acc` every epoch, but only its last epoch's value comes from the
strong attack. A trial the scheduler stopped early ends on a cheap-PGD value; told to Optuna as
COMPLETE, that weak number would be compared with other trials' strong ones (and a masked
configuration would look best). So such a trial is told PRUNED, which is what it was.
"""
from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from trainables.selection import STRONG_METRIC


def is_final(result: dict[str, Any] | None) -> bool:
    """The result of a trial's last epoch: it carries the strong validation value."""
    return bool(result) and STRONG_METRIC in result


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna PRUNED (not COMPLETE with its last weak value) for a trial
    that ended without a final result; a trial that raised stays FAIL."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # OptunaSearch tells PRUNED for no result and no error, FAIL for no result and an error.
        super().on_trial_complete(trial_id, result if is_final(result) else None, error)

"""Which weights the final evaluation attacks, and whether training collapsed.

`final_checkpoint=last` evaluates the last epoch's weights (the papers' protocol);
`final_checkpoint=best` the weights of the epoch with the best validation robust accuracy (the
validation split only: the test split is still read once, at the end). Either way a trial whose
validation accuracy collapsed is flagged, so a collapse never reaches the tables silently: ATLD
on digits went 0.83 (epoch 23) -> 0.04 (epoch 30) validation clean accuracy, and a sweep that
keeps only the last epoch reported chance as the method's result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

# A drop smaller than this is training noise, not a collapse, whatever the accuracy gained.
COLLAPSE_MIN_DROP = 0.1


def collapsed(history: list[dict[str, Any]], num_classes: int) -> bool:
    """Validation clean accuracy ended far below its best: it lost at least half of what it had
    gained over chance, and at least COLLAPSE_MIN_DROP."""
    accuracies = [h["val_clean_acc"] for h in history]
    best = max(accuracies)
    return best - accuracies[-1] >= max(COLLAPSE_MIN_DROP, (best - 1 / num_classes) / 2)


def validation_rank(metrics: dict[str, Any]) -> tuple[float, float]:
    """What "best on validation" means: robust accuracy at the target ε, then clean accuracy."""
    return metrics["val_robust_acc"], metrics["val_clean_acc"]


@dataclass
class BestEpoch:
    """The best epoch on validation so far and a copy of its weights."""

    epoch: int = 0
    rank: tuple[float, float] = (-math.inf, -math.inf)
    weights: dict[str, Any] = field(default_factory=dict)

    def offer(self, metrics: dict[str, Any], model: nn.Module) -> None:
        """Keep this epoch if it is strictly better (ties keep the earlier epoch)."""
        rank = validation_rank(metrics)
        if rank > self.rank:
            self.epoch, self.rank = metrics["epoch"], rank
            self.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def load_into(self, model: nn.Module) -> int:
        """Put the best epoch's weights into `model`; returns that epoch."""
        model.load_state_dict(self.weights)
        return self.epoch

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "rank": list(self.rank), "weights": self.weights}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BestEpoch":
        return cls(state["epoch"], tuple(state["rank"]), state["weights"])

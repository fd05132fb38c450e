"""The searchers Tune asks for trials: Optuna (told PRUNED for a trial stopped early) and the
seed repeater (`--seeds K`).

Pruning. What Optuna is told about a trial (see trainables.selection for what the numbers are).

A trial reports `search_robust_acc` every epoch, but only its last epoch's value comes from the
strong attack. A trial the scheduler stopped early ends on a cheap-PGD value; told to Optuna as
COMPLETE, that weak number would be compared with other trials' strong ones (and a masked
configuration would look best). So such a trial is told PRUNED, which is what it was.

Seeds. `--seeds K`: every configuration Optuna proposes is trained with K seeds.

Design. The seed is an ordinary trial-config key (`seed`, a `TrainConfig` field), so a seed
replicate is just another Tune trial: replicates run in parallel, are scheduled, checkpointed,
logged to MLflow and written to Parquet exactly like any trial. `SeedRepeater` wraps the Optuna
searcher: the first Tune trial of a group asks Optuna for a configuration, the next K−1 reuse it,
and replicate i gets `seed = first_seed + i`. Optuna is told about the group once, when its last
replicate ends, with the mean over the replicates that reached their last epoch (and so a strong
value, see PruningOptunaSearch) — so it ranks configurations by their mean, not by a lucky
seed. Every replicate's own numbers stay in Parquet (`config_id` groups them), where the report
computes mean ± std per configuration. An early-stopping scheduler would judge replicates one by
one (and a stopped replicate leaves the mean to fewer seeds), so `--seeds` defaults to FIFO
scheduling.

This is Ray's `Repeater` with three changes: the seed goes into the config (not an index the
trainable would have to translate), multi-objective metric lists are averaged per objective, and
the group bookkeeping is part of the saved experiment state (get_state), so a resumed sweep keeps
its groups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.records.results import SEED_KEY, is_final
from trainables.selection import STRONG_METRIC


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna PRUNED (not COMPLETE with its last weak value) for a trial
    that ended without a final result; a trial that raised stays FAIL."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # OptunaSearch tells PRUNED for no result and no error, FAIL for no result and an error.
        super().on_trial_complete(trial_id, result if is_final(result) else None, error)


@dataclass
class _Group:
    primary: str  # the Tune trial id Optuna knows this configuration by
    config: dict[str, Any]
    results: dict[str, dict[str, float] | None] = field(default_factory=dict)  # None: pending
    size: int = 0  # replicates suggested so far
    errors: int = 0  # replicates that failed


class SeedRepeater(Searcher):
    def __init__(self, searcher: Searcher, seeds: int, first_seed: int):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.seeds = seeds
        self.first_seed = first_seed
        self._groups: dict[str, _Group] = {}  # Tune trial id -> its group
        self._open: _Group | None = None  # the group still handing out replicates

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._open is None or self._open.size == self.seeds:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._open = _Group(trial_id, dict(config))
        group = self._open
        group.results[trial_id] = None
        self._groups[trial_id] = group
        group.size += 1
        return {**group.config, SEED_KEY: self.first_seed + group.size - 1}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group = self._groups[trial_id]
        # Only a replicate's final (strong) values count: one stopped early ends on a weak value.
        group.results[trial_id] = {m: float(result[m]) for m in self._metrics() if m in result} \
            if is_final(result) else {}
        group.errors += error
        if group.size < self.seeds or any(r is None for r in group.results.values()):
            return
        mean = _means(list(group.results.values()), self._metrics())
        # No mean: every replicate failed (FAIL) or was stopped early (PRUNED).
        self.searcher.on_trial_complete(group.primary, result=mean, error=mean is None and group.errors > 0)

    def _metrics(self) -> list[str]:
        """The objectives, and the strong value that marks the mean as final (is_final)."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        return [*metrics, STRONG_METRIC] if STRONG_METRIC not in metrics else metrics

    # Tune saves a wrapper's own state (get_state) apart from the searcher it wraps (save).
    def get_state(self) -> dict[str, Any]:
        return {"groups": self._groups, "open": self._open}

    def set_state(self, state: dict[str, Any]) -> None:
        self._groups, self._open = state["groups"], state["open"]

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def _means(results: list[dict[str, float]], metrics: list[str]) -> dict[str, float] | None:
    """Per metric, the mean over the replicates that reported a finite value; None if a metric
    has none (the configuration failed with every seed)."""
    means = {}
    for metric in metrics:
        values = [r[metric] for r in results if metric in r and math.isfinite(r[metric])]
        if not values:
            return None
        means[metric] = sum(values) / len(values)
    return means

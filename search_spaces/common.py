"""Dimensions most spaces share."""
from __future__ import annotations

from typing import Any


def suggest_lr(trial: Any, low: float = 1e-4, high: float = 1e-2) -> None:
    trial.suggest_float("lr", low, high, log=True)


def suggest_embed_dim(trial: Any, family: str) -> None:
    # Papers: 4 (MNIST) to 20 (Tiny-ImageNet); wider allowed so the search can find the cost.
    trial.suggest_int("embed_dim", 2, 64 if family == "mnist-like" else 256, log=True)


def suggest_train_eps(trial: Any, family: str) -> None:
    from search_spaces import eps_range

    low, high = eps_range(family)
    trial.suggest_float("train_eps", low, high)

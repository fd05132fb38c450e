"""One define-by-run search space per method: `space(trial, family)` calls `trial.suggest_*`
(Optuna's trial API) and `paper_defaults(family)` is the first point to evaluate. Modules import
nothing heavy; `family` is the dataset family ("mnist-like" or "cifar-like"), since the papers'
ε and embedding sizes differ between MNIST- and CIFAR-like data.

Every module in this package that sets `METHOD` is registered, so adding a space is adding a file.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

SPACES: dict[str, ModuleType] = {}

for _info in pkgutil.iter_modules(__path__):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "METHOD"):
        if _module.METHOD in SPACES:
            raise ValueError(f"two search spaces for {_module.METHOD!r}")
        SPACES[_module.METHOD] = _module


def get_space(method: str) -> ModuleType:
    try:
        return SPACES[method]
    except KeyError:
        raise KeyError(f"no search space for {method!r}; known: {', '.join(sorted(SPACES))}") from None


def eps_range(family: str) -> tuple[float, float]:
    """Where training ε is searched: around the family's standard ε (0.3 MNIST, 8/255 CIFAR)."""
    return (0.1, 0.4) if family == "mnist-like" else (2 / 255, 16 / 255)

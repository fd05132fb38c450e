"""Optuna define-by-run glue: a method's space with some dimensions fixed by `--set`, and its ε
dimensions scaled to the dataset's protocol.

Spaces and paper defaults give training ε for their family's standard ε (MNIST 0.3, CIFAR
8/255). A dataset with its own protocol (`trainables.data.DATASET_PROTOCOL`: digits' target is
0.1) scales them by `eps_scale`, so the papers' "train at the target ε" stays true there."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from search_spaces import get_space
from trainables.config import is_eps_key


class FixingTrial:
    """Wraps an Optuna trial: a fixed name returns its fixed value and is not searched; an ε
    dimension's range is multiplied by `eps_scale`."""

    def __init__(self, trial: Any, fixed: dict[str, Any], eps_scale: float = 1.0):
        self._trial = trial
        self._fixed = fixed
        self._eps_scale = eps_scale

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            if param in self._fixed:
                return self._fixed[param]
            if name == "suggest_float" and is_eps_key(param):
                low, high, *rest = args
                return attr(param, low * self._eps_scale, high * self._eps_scale, *rest, **kwargs)
            return attr(param, *args, **kwargs)

        return suggest


def _define_by_run(space: Callable, family: str, fixed: dict[str, Any], eps_scale: float,
                   trial: Any) -> dict[str, Any]:
    space(FixingTrial(trial, fixed, eps_scale), family)
    return dict(fixed)  # Ray adds these constants to every trial's config


def search_space(method: str, family: str, fixed: dict[str, Any],
                 eps_scale: float = 1.0) -> Callable[[Any], dict[str, Any]]:
    return partial(_define_by_run, get_space(method).space, family, fixed, eps_scale)


def first_points(method: str, family: str, fixed: dict[str, Any],
                 eps_scale: float = 1.0) -> list[dict[str, Any]]:
    """The paper's defaults (ε scaled to the dataset), minus what --set fixed: the first
    configuration evaluated."""
    defaults = get_space(method).paper_defaults(family)
    point = {k: v * eps_scale if is_eps_key(k) else v for k, v in defaults.items() if k not in fixed}
    return [point] if point else []


def space_dimensions(method: str, family: str, eps_scale: float = 1.0) -> list[dict[str, Any]]:
    """Each searched dimension as data ({"name", "type": float|int|categorical, "low", "high",
    "log"} or {"name", "type", "choices"}), found by running the space (ε ranges scaled by
    `eps_scale`) on a trial that records its suggest_* calls."""
    dimensions: list[dict[str, Any]] = []

    class Recorder:
        def __getattr__(self, kind: str) -> Callable[..., Any]:
            def suggest(name: str, *args: Any, **kwargs: Any) -> Any:
                if kind == "suggest_categorical":
                    choices = list(kwargs.get("choices", args[0] if args else []))
                    dimensions.append({"name": name, "type": "categorical", "choices": choices})
                    return choices[0]
                low, high = kwargs.get("low", args[0] if args else None), kwargs.get("high", args[1] if len(args) > 1 else None)
                dimensions.append({"name": name, "type": kind.removeprefix("suggest_"), "low": low,
                                   "high": high, "log": bool(kwargs.get("log"))})
                return low

            return suggest

    get_space(method).space(FixingTrial(Recorder(), {}, eps_scale), family)
    return dimensions


def describe_dimension(dimension: dict[str, Any]) -> str:
    """"float in [0.0001, 1], log scale" or "one of gaussian, uniform, cauchy"."""
    if dimension["type"] == "categorical":
        return f"one of {', '.join(map(str, dimension['choices']))}"
    scale = ", log scale" if dimension["log"] else ""
    return f"{dimension['type']} in [{dimension['low']:g}, {dimension['high']:g}]{scale}"


def describe_space(method: str, family: str) -> list[str]:
    """One line per searched dimension ("lambda: float in [0.0001, 1], log scale")."""
    return [f"{d['name']}: {describe_dimension(d)}" for d in space_dimensions(method, family)]

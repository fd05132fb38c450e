"""Optuna define-by-run glue: a method's space with some dimensions fixed by `--set`."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from search_spaces import get_space


class FixingTrial:
    """Wraps an Optuna trial: a fixed name returns its fixed value and is not searched."""

    def __init__(self, trial: Any, fixed: dict[str, Any]):
        self._trial = trial
        self._fixed = fixed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            return self._fixed[param] if param in self._fixed else attr(param, *args, **kwargs)

        return suggest


def _define_by_run(space: Callable, family: str, fixed: dict[str, Any], trial: Any) -> dict[str, Any]:
    space(FixingTrial(trial, fixed), family)
    return dict(fixed)  # Ray adds these constants to every trial's config


def search_space(method: str, family: str, fixed: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    return partial(_define_by_run, get_space(method).space, family, fixed)


def first_points(method: str, family: str, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's defaults, minus what --set fixed: the first configuration evaluated."""
    point = {k: v for k, v in get_space(method).paper_defaults(family).items() if k not in fixed}
    return [point] if point else []


def describe_space(method: str, family: str) -> list[str]:
    """One line per searched dimension ("lambda: float in [0.0001, 1], log scale"), found by
    running the space on a trial that records its suggest_* calls."""
    lines: list[str] = []

    class Recorder:
        def __getattr__(self, kind: str) -> Callable[..., Any]:
            def suggest(name: str, *args: Any, **kwargs: Any) -> Any:
                if kind == "suggest_categorical":
                    choices = kwargs.get("choices", args[0] if args else [])
                    lines.append(f"{name}: one of {', '.join(map(str, choices))}")
                    return choices[0]
                low, high = kwargs.get("low", args[0] if args else None), kwargs.get("high", args[1] if len(args) > 1 else None)
                scale = ", log scale" if kwargs.get("log") else ""
                lines.append(f"{name}: {kind.removeprefix('suggest_')} in [{low:g}, {high:g}]{scale}")
                return low

            return suggest

    get_space(method).space(Recorder(), family)
    return lines

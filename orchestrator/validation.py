"""Hyperparameter checks at the CLI, before anything runs: every `--set` value against rules
generated from the method's dataclasses (a field's type and default) and its search space (the
choices of a categorical), so a new knob is checked without a new `if`.

The rules: numbers are never negative (weights, rates, sizes, counts); an integer whose default
is at least 1 is a count and must stay at least 1 (embed_dim, steps, widths), except the
`*_examples` sizes, where 0 means "every example of the split"; a string the search space
chooses from must be one of its choices. ε keys are checked in [0, 1] when they are parsed
(trainables.config.coerce); a method's own dataclass may refuse more (e.g. ATLD's smoothing)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from search_spaces import get_space
from trainables.config import ConfigError, TrialConfig


def check_fixed(method: str, family: str, fixed: Mapping[str, Any]) -> None:
    """Raise ConfigError (one line) for the first `--set` value the rules refuse."""
    defaults = TrialConfig(method=method).to_flat()
    choices = string_choices(method, family)
    for key, value in fixed.items():
        problem = value_problem(key, value, defaults.get(key), choices.get(key))
        if problem:
            raise ConfigError(f"--set {key}={_shown(value)}: {problem}")


def value_problem(key: str, value: Any, default: Any, choices: list[str] | None) -> str | None:
    """Why `value` is not acceptable for `key`, or None."""
    if isinstance(value, str):
        return None if choices is None or value in choices else f"choose one of {', '.join(choices)}"
    if not _is_number(value):
        return None  # None (the dataset's default), a bool, or an ε grid checked when parsed
    if value < 0:
        return "must be at least 0 (weights, rates, sizes and counts are never negative)"
    if _is_count(key, default) and value < 1:
        return "must be at least 1 (a count or a size)"
    return None


def string_choices(method: str, family: str) -> dict[str, list[str]]:
    """The string categoricals of the method's search space."""
    return {name: list(values) for name, values in _recorded(method, family).categoricals.items()
            if all(isinstance(v, str) for v in values)}


def space_values(method: str, family: str) -> dict[str, tuple[Any, ...]]:
    """Every value the search space can hand a trial at its edges: each categorical's choices,
    each numeric dimension's low and high."""
    recorder = _recorded(method, family)
    return {**recorder.categoricals, **recorder.bounds}


def _recorded(method: str, family: str) -> "_SpaceRecorder":
    recorder = _SpaceRecorder()
    get_space(method).space(recorder, family)
    return recorder


class _SpaceRecorder:
    """Stands in for an Optuna trial: records each suggestion and answers its first value."""

    def __init__(self) -> None:
        self.categoricals: dict[str, tuple[Any, ...]] = {}
        self.bounds: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.categoricals[name] = tuple(choices)
        return choices[0]

    def _numeric(self, name: str, low: Any, high: Any, **_: Any) -> Any:
        self.bounds[name] = (low, high)
        return low

    suggest_float: Callable[..., Any] = _numeric
    suggest_int: Callable[..., Any] = _numeric


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(key: str, default: Any) -> bool:
    # `*_examples` go through Split.head, where 0 takes the whole split.
    return (isinstance(default, int) and not isinstance(default, bool) and default >= 1
            and not key.endswith("_examples"))


def _shown(value: Any) -> str:
    """As the user typed it, near enough: -1 rather than -1.0, strings quoted."""
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)

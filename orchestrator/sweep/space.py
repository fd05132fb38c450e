"""A method's search space as a sweep uses it: Optuna define-by-run glue (some dimensions fixed by
`--set`, ε dimensions scaled to the dataset's protocol), the `--set` checks generated from it, and
its description for `orch methods` and the parent run.

Spaces and paper defaults give training ε for their family's standard ε (MNIST 0.3, CIFAR
8/255). A dataset with its own protocol (`trainables.data.DATASET_PROTOCOL`: digits' target is
0.1) scales them by `eps_scale`, so the papers' "train at the target ε" stays true there.

Checks. Hyperparameter checks at the CLI, before anything runs: every `--set` value against rules
generated from the method's dataclasses (a field's type and default) and its search space (the
choices of a categorical), so a new knob is checked without a new `if`.

The rules: numbers are never negative (weights, rates, sizes, counts); an integer whose default
is at least 1 is a count and must stay at least 1 (embed_dim, steps, widths), except the
`*_examples` sizes, where 0 means "every example of the split"; a string the search space
chooses from must be one of its choices. ε keys are checked in [0, 1] when they are parsed
(trainables.config.coerce); a method's own dataclass may refuse more (e.g. ATLD's smoothing).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

from orchestrator.report.text import fmt
from search_spaces import SPACES, get_space
from trainables.config import ConfigError, TrialConfig, hparams_class, is_eps_key
from trainables.methods import METHODS
from trainables.models import MODELS
from trainables.protocol import resolve_protocol


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


def describe_methods() -> list[str]:
    """`orch methods`: every method, its search space and paper defaults per family, its knobs."""
    lines = []
    for name in METHODS:
        cls = METHODS.get(name)
        lines.append(f"{name}: {cls.description}  [{cls.paper}]")
        if name in SPACES:
            for family in ("mnist-like", "cifar-like"):
                lines.append(f"  searched ({family}):")
                lines += [f"    {line}" for line in describe_space(name, family)]
                defaults = SPACES[name].paper_defaults(family)
                lines.append("  paper defaults (first trial): " + ", ".join(f"{k}={fmt(v)}" for k, v in defaults.items()))
        knobs = {k.rstrip("_"): v for k, v in vars(hparams_class(name)()).items()}
        if knobs:
            lines.append("  knobs (--set KEY=VALUE): " + ", ".join(f"{k}={fmt(v)}" for k, v in knobs.items()))
        lines.append("")
    lines.append("models (--model): " + ", ".join(MODELS))
    lines.append("shared knobs: see `TrialConfig` fields, e.g. --set batch_size=64 --set target_eps=8/255")
    return lines


def search_space_record(method: str, family: str, fixed: dict[str, Any],
                        first_points: list[dict[str, Any]], eps_scale: float = 1.0) -> dict[str, Any]:
    """What the sweep searched (search_space.json on the parent run): each dimension the search
    varies, the `--set` constants, and the paper defaults tried first."""
    searched = [d for d in space_dimensions(method, family, eps_scale) if d["name"] not in fixed]
    return {"method": method, "family": family, "searched": searched, "fixed": fixed,
            "first_points": first_points}


def parent_params(record: dict[str, Any], base: dict[str, Any], trials: int, family: str) -> dict[str, Any]:
    """The parent run's params: `search.<dimension>` describes each searched range; every other
    key holds the value every trial used (settings, `--set` constants), with the ε values the
    dataset's protocol fills in where the config leaves them unset (`target_eps`, `eps_grid`,
    and `train_eps` unless searched). A searched key's default is left out: no trial used it."""
    searched = {d["name"]: describe_dimension(d) for d in record["searched"]}
    shared = {**base, **record["fixed"]}
    protocol = resolve_protocol(TrialConfig.from_flat(shared), family)
    shared.update(target_eps=protocol.target_eps, train_eps=protocol.train_eps,
                  eps_grid=",".join(f"{e:.4g}" for e in protocol.eps_grid))
    shared = {k: v for k, v in shared.items() if k not in searched}
    return {"trials": trials, **shared, **{f"search.{name}": text for name, text in searched.items()}}


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

"""Trial configuration: one frozen dataclass per concern, composed into `TrialConfig`.

The flat dict form (`to_flat` / `from_flat`) is what Tune's param space, MLflow params and the
Parquet `hp_*` columns carry. Keys are field names, unique across concerns; a field spelled with
a trailing underscore (`lambda_`) is keyed without it (`lambda`). Method knobs live in the
method's own dataclass (see `trainables.methods`), so every method can have its own names.
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says which and why."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_dir: str = ""  # torchvision download folder, or the .npz file for `npz`
    val_fraction: float = 0.1  # carved from train; drives the search
    split_seed: int = 0  # fixed so every trial sees the same train/val/test split


@dataclass(frozen=True)
class ModelConfig:
    model: str = "small-cnn"
    embed_dim: int = 16  # size of z = model.embed(x), the layer regularizers act on


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd (momentum 0.9), for methods without their own
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto: cuda if this process sees a GPU, else cpu
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    augment: Optional[bool] = None  # random crop + flip on the device; None: on for CIFAR-like data
    compile: bool = False  # torch.compile the model (CUDA; warm-up on the first batches)


@dataclass(frozen=True)
class AttackConfig:
    """The training adversary (PGD-Linf). None means: the dataset's target ε."""

    train_eps: Optional[float] = None
    train_steps: int = 10
    train_step_size: Optional[float] = None  # None: 2.5 * eps / steps (Madry et al.)


@dataclass(frozen=True)
class EvalConfig:
    target_eps: Optional[float] = None  # None: the dataset's standard ε
    eps_grid: tuple[float, ...] = ()  # empty: the dataset's grid
    eval_steps: int = 20
    eval_restarts: int = 1
    eval_examples: int = 1000  # test points for the final curve; 0 = the whole test split
    val_examples: int = 512  # validation points for the per-epoch robust accuracy
    val_steps: int = 10
    # The strong validation attack at the last epoch, what the search selects on
    # (trainables.selection): PGD-CE and APGD-DLR, each this many steps and restarts.
    val_strong_steps: int = 50
    val_strong_restarts: int = 2
    # The final evaluation (see trainables.evaluate and trainables.sanity).
    eval_profile: str = "standard"  # quick | standard | full (see trainables.evaluate)
    eval_strong_restarts: int = 5  # PGD/CW restarts at the target ε in the standard and full profiles
    eval_l2_eps_scale: float = 0.0  # PGD-L2 radius = scale * L∞ ε; 0: sqrt(input dim) / 4
    eval_square_queries: int = 1000  # Square's queries per example (full profile)
    eval_eot_samples: int = 1  # gradients averaged per attack step (EOT); > 1: randomised defense
    autoattack_version: str = "standard"  # pyautoattack version; "rand" for randomised defenses
    eval_sanity_examples: int = 100  # test points for the sanity measurements
    # Square's queries in the white-box <= black-box check, on the points the gradient attacks
    # left robust at the target ε (all eval_examples of them: the check's power comes from n).
    eval_sanity_queries: int = 1000
    # An attack skips the examples it fooled at a smaller ε (nested balls); False attacks every
    # example at every ε (slower; for checking the evaluation itself).
    eval_nested: bool = True
    # The weights the final evaluation attacks: the last epoch's, or the epoch with the best
    # validation robust accuracy (ties: the better validation clean accuracy, then the earlier).
    final_checkpoint: str = "last"  # last | best
    # False: the trial never reads the test split (a benchmark's search: what it selects on is the
    # strong validation attack); its last epoch reports validation numbers only.
    evaluate_test: bool = True
    # A folder where the transfer attack's surrogate is kept once trained, for every trial of the
    # sweep (a sweep sets <results-dir>/surrogates); "": each trial process trains its own.
    eval_surrogate_cache: str = ""
    # A folder where the final evaluation keeps each attack it finished (trainables.kept_attacks),
    # so a trial killed during it continues from there (a sweep sets <its folder>/evaluations);
    # "": nothing kept.
    eval_progress_dir: str = ""

    def __post_init__(self) -> None:
        check_profile(self.eval_profile)
        if self.final_checkpoint not in FINAL_CHECKPOINTS:
            raise ConfigError(f"final_checkpoint={self.final_checkpoint!r}; known: {', '.join(FINAL_CHECKPOINTS)}")


FINAL_CHECKPOINTS = ("last", "best")
PROFILES = ("quick", "standard", "full")  # the evaluation profiles (trainables.evaluate)


def check_profile(profile: str) -> str:
    """`profile` if it names an evaluation profile; else a ConfigError that names the choices
    (the one check: config, CLI and `evaluate_trial` all call it)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown evaluation profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


CONCERNS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "attack": AttackConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class TrialConfig:
    method: str = "standard"
    hparams: Any = None  # the method's knob dataclass; None: its defaults
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.hparams is None:
            object.__setattr__(self, "hparams", hparams_class(self.method)())

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"method": self.method}
        for concern in CONCERNS:
            flat.update(_dataclass_to_flat(getattr(self, concern)))
        flat.update(_dataclass_to_flat(self.hparams))
        return flat

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "TrialConfig":
        values = dict(flat)
        method = values.pop("method", "standard")
        known = field_types(method)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown hyperparameter {', '.join(map(repr, unknown))} for method {method!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        parts = {
            concern: _flat_to_dataclass(dc, values) for concern, dc in CONCERNS.items()
        }
        hparams = _flat_to_dataclass(hparams_class(method), values)
        return cls(method=method, hparams=hparams, **parts)

    def replace(self, **flat_updates: Any) -> "TrialConfig":
        """A copy with some flat keys changed (validated like `from_flat`)."""
        return TrialConfig.from_flat({**self.to_flat(), **flat_updates})


def hparams_class(method: str) -> type:
    from trainables.methods import METHODS  # late: methods import this module

    return METHODS.get(method).Hparams


def field_types(method: str) -> dict[str, Any]:
    """Every flat key a trial of `method` accepts, with its declared type."""
    types: dict[str, Any] = {}
    for dc in [*CONCERNS.values(), hparams_class(method)]:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            types[_key(f.name)] = hints[f.name]
    return types


def is_eps_key(key: str) -> bool:
    """ε-valued keys: always floats in [0, 1] pixel units."""
    return key.endswith("eps") or key == "eps_grid"


def _key(field_name: str) -> str:
    return field_name.rstrip("_")


def _dataclass_to_flat(obj: Any) -> dict[str, Any]:
    return {_key(f.name): getattr(obj, f.name) for f in fields(obj)}


def _flat_to_dataclass(dc: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(dc)
    kwargs = {}
    for f in fields(dc):
        key = _key(f.name)
        if key in values:
            kwargs[f.name] = coerce(key, values[key], hints[f.name])
    return dc(**kwargs)


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check and normalise one value against its field type (numbers stay numbers)."""
    base, optional = _unwrap_optional(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} may not be empty")
    if typing.get_origin(base) is tuple:
        items = tuple(float(v) for v in value)
        for item in items:
            _check_eps(key, item)
        return items
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes", "on")
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
        else:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a valid {base.__name__}") from None
    if is_eps_key(key):
        _check_eps(key, number)
    return number


def _check_eps(key: str, eps: float) -> None:
    if not (0.0 <= eps <= 1.0):
        raise ConfigError(f"{key}={eps:g} is outside [0, 1] (ε is in [0,1] pixel units)")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def check_unique_keys() -> None:
    """Flat keys must be unique across concerns, or the round trip would lose values."""
    seen: set[str] = {"method"}
    for dc in CONCERNS.values():
        for f in fields(dc):
            if _key(f.name) in seen:
                raise AssertionError(f"flat key {_key(f.name)!r} defined twice")
            seen.add(_key(f.name))


check_unique_keys()

__all__ = [
    "AttackConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "TrialConfig",
    "field_types",
    "is_eps_key",
]

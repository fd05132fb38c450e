"""Parsing what users type: `--set KEY=VALUE` and ε strings such as `8/255`."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from trainables.config import ConfigError, coerce, field_types, is_eps_key


def parse_number(text: str) -> float:
    """'0.03', '3e-2' or a fraction such as '8/255'."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{text!r} is not a number or a fraction like 8/255") from None


def parse_value(key: str, text: str, annotation: Any) -> Any:
    if key == "eps_grid":
        return coerce(key, [parse_number(t) for t in text.split(",") if t.strip()], annotation)
    if is_eps_key(key):
        return coerce(key, parse_number(text), annotation)
    return coerce(key, text, annotation)


def parse_sets(items: tuple[str, ...], method: str) -> dict[str, Any]:
    """`("train_eps=8/255", "prior=cauchy")` -> `{"train_eps": 0.0313..., "prior": "cauchy"}`."""
    types = field_types(method)
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        if key not in types:
            raise ConfigError(
                f"--set {key}: unknown hyperparameter for {method}; known: {', '.join(sorted(types))}"
            )
        parsed[key] = parse_value(key, text.strip(), types[key])
    return parsed

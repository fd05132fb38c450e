"""How report numbers are written: missing values, mean ± std, sanity verdicts, aligned text
tables. Every report, ranking and reproduction table formats through here."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)

def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, (float, np.floating)) and math.isnan(value))

def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header)] + [list(r) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)

def mean_std(row: dict[str, Any], metric: str, missing: str = "—") -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not present(mean):
        return missing
    return f"{mean:.3f} ± {std:.3f}" if present(std) else f"{mean:.3f}"

def sanity_text(row: dict[str, Any]) -> str:
    if row["trusted"] is None and not row["failed_checks"]:
        text = "not recorded"
    else:
        text = "failed: " + ", ".join(row["failed_checks"]) if row["failed_checks"] else "all passed"
    return text + ("; FLAT CURVE: robust = clean at every ε (constant predictions?)" if row["flat_curve"] else "")

def trust_text(trusted: bool | None) -> str:
    return {True: "yes", False: "NO (untrusted)", None: "unknown"}[trusted]

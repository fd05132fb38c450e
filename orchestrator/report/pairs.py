"""Every pair of a leaderboard's methods compared, not only each with the reference: whether
trades is above tla is a question the reference column cannot answer. The paired difference in
worst-case accuracy (same points, same seed index) with its 95% interval, McNemar's exact p, and
the verdict the two methods' flags leave standing (report.verdicts)."""
from __future__ import annotations

import csv
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.report import verdicts
from orchestrator.report.leaderboard import Comparison, compare, outcome_matrices, p_cell, p_text

PAIRS_CSV_FILE = "benchmark_pairs.csv"
HEADER = ["method", "minus", "worst-case difference", "McNemar's p", "verdict"]


def pairs(board: list[dict[str, Any]], records: pd.DataFrame, target_eps: float,
          judged: dict[str, verdicts.Judged], reference: str, seed: int = 0) -> list[dict[str, Any]]:
    """Each method of the leaderboard's rows (`board`) against every one with a lower mean worst
    case (the higher minus the lower): its report.leaderboard Comparison and verdict. A pair with
    the reference is the rows' own comparison (reversed where the reference is the higher), so the
    two tables never disagree."""
    order = [r["method"] for r in sorted(board, key=lambda r: -r["worst"].mean)]
    vs_reference = {r["method"]: r["comparison"] for r in board}
    worst = {method: m["worst"] for method, m in outcome_matrices(records, target_eps).items()}

    def comparison_of(method: str, other: str) -> Comparison:
        if other == reference:
            return vs_reference[method]
        if method == reference:
            return vs_reference[other].reversed()
        # One generator per pair: its interval does not depend on which others were merged.
        rng = np.random.default_rng([seed, zlib.crc32(f"{method} - {other}".encode())])
        return compare(worst[method], worst[other], rng)

    out = []
    for i, method in enumerate(order):
        for other in order[i + 1:]:
            comparison = comparison_of(method, other)
            out.append({"method": method, "minus": other, "comparison": comparison,
                        "verdict": verdicts.verdict(comparison, judged[method].reading, judged[other].reading,
                                                    other=other)})
    return out


def cells(pair: dict[str, Any]) -> list[str]:
    comparison = pair["comparison"]
    return [pair["method"], pair["minus"], comparison.difference.signed(), p_text(comparison.p_value).lstrip("="),
            pair["verdict"]]


def legend(count: int) -> str:
    return (f"Every pair of methods ({count}): the first method's worst-case accuracy at the target ε minus "
            "the second's, in points, paired (same points, same seed index), with its 95% two-way bootstrap "
            "interval and McNemar's exact p; the verdict is the first method's against the second, by the "
            "leaderboard's rules (the interval excludes 0 and p < 0.05; a flag withholds what it could "
            f"change). Each pair is judged on its own, with no correction for the {count} comparisons: among "
            "pairs that do not differ, about one in 20 would still show p < 0.05, which is one reason a "
            "verdict also needs the interval to exclude 0.")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Numbers as fractions; p as a number (an underflowed one as '<1e-300', never 0)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "minus", "diff_mean", "diff_low", "diff_high", "p_value", "verdict"])
        for r in rows:
            d = r["comparison"].difference
            writer.writerow([r["method"], r["minus"], d.mean, d.low, d.high, p_cell(r["comparison"].p_value),
                             r["verdict"]])

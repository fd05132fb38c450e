"""The benchmark's leaderboard, computed from per-example records alone (records.examples): per
method, clean, AutoAttack-alone and worst-case accuracy at the target ε with 95% intervals, and
the difference to the reference method (madry) in worst-case accuracy, paired on the same test
points and seed index, with a verdict.

The numbers:
- A method's accuracy is the mean over its K seeds and T test points of "still correct".
- Worst case at ε: a point counts as robust only if it is clean-correct and no attack broke it at
  any ε' ≤ ε (a point broken at ε' is broken inside every larger L∞ ball), over every attack
  recorded (sanity attacks included).
- Intervals: a two-way bootstrap (`RESAMPLES` resamples, percentile 95%) that resamples test
  points and seeds together, since both vary between one benchmark and the next; a paired
  difference resamples the same points and seed indices for both methods.
- The verdict on a difference uses the paired interval and McNemar's exact test
  (`scipy.stats.binomtest` on the discordant (seed, point) pairs): "better" or "worse" only when
  the interval excludes 0 and p < 0.05, else "not distinguishable".
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

RESAMPLES = 2000
LEVEL = 0.95
METRICS = ("clean", "autoattack", "worst")


class RecordsMismatch(ValueError):
    """Records that cannot be compared (different test points or ε); the message says how."""


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float

    def percent(self) -> str:
        if np.isnan(self.mean):
            return "—"
        return f"{100 * self.mean:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"

    def signed(self) -> str:
        """A difference in points: '+8.9 [+5.2, +12.7]'."""
        return f"{100 * self.mean:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


@dataclass(frozen=True)
class Comparison:
    difference: Estimate  # method minus reference, worst case at the target ε
    p_value: float  # McNemar's exact test on discordant (seed, point) pairs
    verdict: str  # better | worse | not distinguishable | reference

    def reversed(self) -> "Comparison":
        """The reference minus the method: the same bootstrap draws negated, the same p."""
        d = self.difference
        return Comparison(Estimate(-d.mean, -d.high, -d.low), self.p_value,
                          {"better": "worse", "worse": "better"}.get(self.verdict, self.verdict))


# Below this McNemar's exact p underflows (binomtest returns 0.0 for ~1,100 discordant pairs all
# one way, as an undefended model against madry gives); no p is 0.
SMALLEST_P = 1e-300


def p_text(p_value: float) -> str:
    """'=7.9e-26', or '<1e-300' where the exact p is too small for a float."""
    return f"<{SMALLEST_P:.0e}" if p_value < SMALLEST_P else f"={p_value:.2g}"


def p_cell(p_value: float) -> float | str:
    """The p value as a number for a CSV, or '<1e-300' where it underflowed (never a false 0)."""
    return p_value if p_value >= SMALLEST_P else p_text(p_value)


def outcome_matrices(records: pd.DataFrame, target_eps: float) -> dict[str, dict[str, np.ndarray]]:
    """Per method and metric, a bool matrix [seed index, test point] of "still correct" at the
    target ε. Seeds are indexed in increasing order; points in increasing test-split index."""
    check_comparable(records)
    points = np.sort(records["index"].unique())
    matrices: dict[str, dict[str, np.ndarray]] = {}
    for method, rows in records.groupby("method"):
        seeds = sorted(rows["seed"].unique())
        table = rows.pivot_table(index=["attack", "path", "eps", "seed"], columns="index", values="correct",
                                 aggfunc="first").reindex(columns=points)
        clean = _series(table, "clean", seeds)
        attacked = table.drop(index="clean", level="attack", errors="ignore")
        attacked = attacked.drop(index="worst", level="attack", errors="ignore")  # re-derived below
        within = attacked[attacked.index.get_level_values("eps") <= target_eps + 1e-12]
        broken = ~within.fillna(True).astype(bool)
        worst = clean.copy()
        for i, seed in enumerate(seeds):
            of_seed = broken[broken.index.get_level_values("seed") == seed]
            worst[i] &= ~of_seed.to_numpy().any(axis=0)
        matrices[method] = {"clean": clean, "worst": worst,
                            "autoattack": _series(table, "autoattack", seeds, target_eps)}
    return matrices


def _series(table: pd.DataFrame, attack: str, seeds: list, eps: float | None = None) -> np.ndarray:
    """[seed, point] outcomes of one attack (on the full inference path); NaN rows where absent."""
    if attack not in table.index.get_level_values("attack"):
        return np.full((len(seeds), table.shape[1]), np.nan)
    rows = table.xs((attack, "predict"), level=("attack", "path"))
    if eps is not None:
        rows = rows[np.isclose(rows.index.get_level_values("eps"), eps)]
    by_seed = rows.groupby(level="seed").first().reindex(seeds)
    values = by_seed.to_numpy(dtype=float)
    return values.astype(bool) if not np.isnan(values).any() else values


def check_comparable(records: pd.DataFrame) -> None:
    """Every method and seed must be measured on the same test points: a leaderboard of merged
    records from different point sets would compare different things."""
    point_sets = records.groupby(["method", "seed"])["index"].apply(lambda s: tuple(sorted(set(s))))
    distinct = set(point_sets)
    if len(distinct) > 1:
        sizes = sorted({len(p) for p in distinct})
        raise RecordsMismatch(f"the records are on different test points ({len(distinct)} different sets, "
                              f"of {', '.join(map(str, sizes))} points): merge only benchmarks run with "
                              "the same preset and --test-examples")


def estimate(matrix: np.ndarray, rng: np.random.Generator) -> Estimate:
    """Mean of a [seed, point] outcome matrix with its two-way bootstrap interval."""
    if np.isnan(matrix).any():
        return Estimate(np.nan, np.nan, np.nan)
    draws = _resampled_means(matrix.astype(float), rng)
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(float(matrix.mean()), float(low), float(high))


def _resampled_means(matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    seeds, points = matrix.shape
    seed_draws = rng.integers(seeds, size=(RESAMPLES, seeds))
    point_draws = rng.integers(points, size=(RESAMPLES, points))
    return np.array([matrix[np.ix_(s, p)].mean() for s, p in zip(seed_draws, point_draws)])


def compare(method: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> Comparison:
    """`method` minus `reference` ([seed, point] bool matrices, paired by seed index and point)."""
    seeds = min(len(method), len(reference))  # pair seed i with seed i
    a, b = method[:seeds].astype(bool), reference[:seeds].astype(bool)
    difference = estimate(a.astype(float) - b.astype(float), rng)
    gained, lost = int((a & ~b).sum()), int((~a & b).sum())
    p_value = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    if difference.low > 0 and p_value < 1 - LEVEL:
        verdict = "better"
    elif difference.high < 0 and p_value < 1 - LEVEL:
        verdict = "worse"
    else:
        verdict = "not distinguishable"
    return Comparison(difference, p_value, verdict)


def per_seed(records: pd.DataFrame, target_eps: float) -> pd.DataFrame:
    """One row per (method, seed): its clean, AutoAttack-alone and worst-case accuracy at the
    target ε over the test points. The pooled intervals hide how far seeds of one configuration
    fall apart (1-2 points of robust accuracy is usual); this shows it."""
    matrices = outcome_matrices(records, target_eps)
    rows = []
    for method, outcomes in matrices.items():
        seeds = sorted(records.loc[records["method"] == method, "seed"].unique())  # outcome_matrices' order
        rows += [{"method": method, "seed": int(seed),
                  **{metric: float(np.mean(outcomes[metric][i])) for metric in METRICS}}
                 for i, seed in enumerate(seeds)]
    return pd.DataFrame(rows, columns=["method", "seed", *METRICS])


def leaderboard(records: pd.DataFrame, target_eps: float, reference: str = "madry",
                seed: int = 0) -> pd.DataFrame:
    """One row per method: seeds, points, each metric's Estimate, and its Comparison with the
    reference (None for the reference itself, or when the reference was not run)."""
    matrices = outcome_matrices(records, target_eps)
    rows = []
    for method, outcomes in matrices.items():
        # One generator per method: its intervals do not depend on which others were merged.
        rng = np.random.default_rng([seed, zlib.crc32(method.encode())])
        row = {"method": method, "seeds": outcomes["clean"].shape[0], "points": outcomes["clean"].shape[1]}
        row.update({metric: estimate(outcomes[metric], rng) for metric in METRICS})
        if method == reference:
            row["comparison"] = Comparison(Estimate(0.0, 0.0, 0.0), 1.0, "reference")
        elif reference in matrices:
            row["comparison"] = compare(outcomes["worst"], matrices[reference]["worst"], rng)
        else:
            row["comparison"] = None
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.assign(order=[r.mean for r in table["worst"]]).sort_values(
        "order", ascending=False).drop(columns="order").reset_index(drop=True)

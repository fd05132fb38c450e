"""What a leaderboard may say about a method: its sanity flags, judged from its trials and its
per-example records, and the verdict against the reference that those flags leave standing.

A flag means the worst case may be wrong. Most flags say an attack may have missed points, so the
worst case (a union of attacks) can only be too high: an upper bound, which can still be `worse`
than a sound reference, never `better`. The others (trainables.sanity.OVERSTATING says which)
withhold every verdict."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.report import blackbox
from orchestrator.report.leaderboard import Comparison
from trainables.sanity import MEASURE_OF, OVERSTATING
from trainables.sanity import TOL as SANITY_TOL

# How far a method's worst case can be read: as measured (no flag), as an upper bound (every flag
# says the attacks may have missed points), or not at all (another flag: a collapsed seed, an
# attack that left the ε-ball, a randomised model).
EXACT, UPPER_BOUND, UNREADABLE = "exact", "upper bound", "unreadable"


@dataclass(frozen=True)
class Judged:
    flags: list[str]  # each failed check with how many seeds it hit and what it measured
    reading: str  # EXACT, UPPER_BOUND or UNREADABLE


def judge(records: pd.DataFrame, trials: pd.DataFrame, target_eps: float) -> dict[str, Judged]:
    """Per method of the records: its flags (the black-box checks judged again from the records)
    and how its worst case can be read."""
    rejudged = blackbox.failing_seeds(records, target_eps)
    above = pgd_above_fgsm(records)
    out = {}
    for method in records["method"].unique():
        mine = trials[trials["method"] == method] if len(trials) else trials
        where = above.get(method)
        said = {"pgd_le_fgsm": "; PGD above FGSM at ε " + ", ".join(f"{e:g}" for e in where)} if where else {}
        hits = failed(mine, rejudged.get(method, {}))
        out[method] = Judged(described(mine, hits, said), reading(hits))
    return out


def reading(failed_checks: dict[str, int]) -> str:
    if not failed_checks:
        return EXACT
    return UPPER_BOUND if set(failed_checks) <= OVERSTATING else UNREADABLE


def verdict(comparison: Comparison | None, mine: str, reference_reading: str | None,
            other: str = "the reference") -> str:
    """The verdict on a method (its report.leaderboard Comparison, its reading) against the
    reference (named `other` in what it says), as far as the flags let it be read. Two sound numbers: the paired comparison's. A
    method whose worst case is an upper bound can still be worse than a sound reference (its true
    number is lower still), never better; against a reference whose number is an upper bound, a
    sound method can still be better. Anything else is not ranked."""
    if comparison is None:
        return "—"
    if comparison.verdict == "reference":
        return "reference"
    if mine == reference_reading == EXACT:
        return comparison.verdict
    if comparison.verdict == "worse" and mine == UPPER_BOUND and reference_reading == EXACT:
        return "worse (flagged: its worst case is an upper bound)"
    if comparison.verdict == "better" and mine == EXACT and reference_reading == UPPER_BOUND:
        return f"better ({other} is flagged: its worst case is an upper bound)"
    return "not ranked (flagged)" if mine != EXACT else f"not ranked ({other} is flagged)"


def described(trials: pd.DataFrame, hits: dict[str, int], where: dict[str, str]) -> list[str]:
    """The flags as the leaderboard shows them: each failed check (`hits`, from `failed`) with how
    many of the method's seeds it hit, so one bad seed in three does not read as three, and what it
    measured (`where`: said from the records, e.g. the ε at which PGD did worse than FGSM)."""
    return [f"{name} ({count}/{len(trials)} seeds{_measured(trials, name)}{where.get(name, '')})"
            for name, count in hits.items()]


def failed(trials: pd.DataFrame, rejudged: dict[str, int]) -> dict[str, int]:
    """Each failed sanity check (the black-box ones as `rejudged`) and a collapsed training: how
    many of the method's seeds it hit."""
    stored = [column for column in trials.columns if column.startswith("sanity_")
              and column.removeprefix("sanity_") not in (*blackbox.REJUDGED, "trusted")]
    hits = {column.removeprefix("sanity_"): int((trials[column] == False).sum())  # noqa: E712
            for column in stored}
    hits.update(rejudged)
    if "collapsed" in trials:
        hits["collapsed"] = int(trials["collapsed"].fillna(False).astype(bool).sum())
    return {name: count for name, count in hits.items() if count}


def pgd_above_fgsm(records: pd.DataFrame) -> dict[str, list[float]]:
    """Per method, the ε at which a seed's PGD accuracy exceeded its FGSM accuracy by more than the
    check's tolerance (the pgd_le_fgsm rule, on the records' curve series): a failure past the
    target ε does not bear on the headline number the way one at it would, so the flag says where."""
    series = records[records["attack"].isin(["pgd", "fgsm"])]
    accuracy = series.groupby(["method", "seed", "path", "eps", "attack"])["correct"].mean().unstack("attack")
    if accuracy.empty or not {"pgd", "fgsm"} <= set(accuracy.columns):
        return {}
    above = accuracy[accuracy["pgd"] > accuracy["fgsm"] + SANITY_TOL].reset_index()
    return {method: sorted(rows["eps"].unique()) for method, rows in above.groupby("method")}


def _measured(trials: pd.DataFrame, check: str) -> str:
    """'; zero_grad_fraction 0.36-0.41': the value a failed check judged, over the seeds it
    failed on, where the records carry it (trials written before they did: nothing)."""
    column = f"measured_{MEASURE_OF[check]}" if check in MEASURE_OF else None
    if column not in trials:
        return ""
    values = trials.loc[trials[f"sanity_{check}"] == False, column].dropna()  # noqa: E712
    if values.empty:
        return ""
    low, high = f"{values.min():.2g}", f"{values.max():.2g}"
    return f"; {MEASURE_OF[check]} {low}" + (f"-{high}" if high != low else "")

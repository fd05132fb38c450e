"""Rankings as text: `orch compare`'s tables (one per dataset, target ε and profile), a sweep's
configurations (printed after a sweep with --seeds or --objective clean+robust), and the best
trials a sweep prints when it ends."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from orchestrator.report import html
from orchestrator.report.load import best_configurations, configurations, load_sweeps, ranking_groups
from orchestrator.report.pareto import pareto_front
from orchestrator.report.text import fmt, mean_std, sanity_text, text_table, trust_text
from trainables.evaluate import UPPER_BOUND_PROFILES
from trainables.selection import STRONG_METRIC

RANKING_HEADER = ["rank", "method", "sweep", "dataset", "target ε", "eval", "best config", "seeds",
                  "clean", "PGD", "AutoAttack", "robust (worst)", "sanity", "trusted"]

def ranking_rows(best: pd.DataFrame) -> list[list[str]]:
    """One group's rows (see ranking_groups): ranks are only meaningful within a group."""
    rows = []
    for rank, row in enumerate(best.itertuples(index=False), start=1):
        r = row._asdict()
        upper = " (upper bound)" if r["eval_profile"] in UPPER_BOUND_PROFILES else ""
        rows.append([str(rank), r["method"], r["sweep"], r["dataset"], f"{r['target_eps']:.4g}",
                     r["eval_profile"] + upper, r["config"], str(r["n_seeds"]),
                     mean_std(r, "clean_acc"), mean_std(r, "pgd_acc") + upper,
                     mean_std(r, "autoattack_acc", missing="not run"), mean_std(r, "robust_acc") + upper,
                     sanity_text(r), trust_text(r["trusted"])])
    return rows

def ranking_text(best: pd.DataFrame) -> str:
    """One group's ranking as an aligned text table."""
    return text_table(RANKING_HEADER, ranking_rows(best))

def compare_text(dirs: Sequence[Path]) -> str:
    """What `orch compare` prints: per (dataset, target ε, profile) group, a title line and its
    ranking table; groups are never ranked against each other."""
    best = best_configurations(configurations(load_sweeps(dirs).trials))
    if best.empty:
        return "no finished trials"
    groups = ranking_groups(best)
    tables = [f"{title}: methods ranked by test robust accuracy of their best configuration "
              f"(chosen on validation; mean ± std over seeds):\n" + ranking_text(rows)
              for title, rows in groups]
    note = (f"{len(groups)} groups of (dataset, target ε, evaluation profile), each ranked on its "
            "own: numbers from different groups are not comparable.\n\n") if len(groups) > 1 else ""
    return note + "\n\n".join(tables)

SUMMARY_HEADER = ["config", "seeds", "val clean", "val robust", "test clean", "test robust"]

def sweep_summary(sweep_dir: Path, pareto: bool, top: int = 10) -> str:
    """The configurations of one sweep by mean validation robust accuracy (the strong attack the
    search maximised), mean ± std over seeds;
    with `pareto`, the (val clean, val robust) Pareto front of the configurations is marked: the
    front a clean+robust search optimised (Optuna's study keeps it too)."""
    configs = configurations(load_sweeps([sweep_dir]).trials)
    if configs.empty:
        return "no finished configurations"
    points = list(zip(configs["val_clean_acc_mean"], configs[f"{STRONG_METRIC}_mean"]))
    configs = configs.assign(pareto=[i in set(pareto_front(points)) for i in range(len(configs))])
    configs = configs.sort_values(f"{STRONG_METRIC}_mean", ascending=False).head(top)
    header = SUMMARY_HEADER + (["Pareto"] if pareto else [])
    rows = [[r["config"], str(r["n_seeds"]), mean_std(r, "val_clean_acc"), mean_std(r, STRONG_METRIC),
             mean_std(r, "clean_acc"), mean_std(r, "robust_acc")] + (["*" if r["pareto"] else ""] if pareto else [])
            for r in configs.to_dict("records")]
    title = "configurations (mean ± std over seeds)" + (", * = Pareto front on validation" if pareto else "")
    return title + ":\n" + text_table(header, rows)


def best_trials_text(rows: list[dict[str, Any]], top: int = 5) -> str:
    """What a sweep prints when it ends: how its trials ended, and the best by the search
    objective (validation) with their test numbers."""
    finished = [r for r in rows if r["status"] == "FINISHED"]
    failed = len([r for r in rows if r["status"] == "FAILED"])
    lines = [f"\n[orch] {len(finished)} finished, {failed} failed, "
             f"{len(rows) - len(finished) - failed} stopped early"]
    if not finished:
        return "\n".join(lines)
    finished.sort(key=lambda r: r[STRONG_METRIC], reverse=True)
    hp_names = sorted({k for r in finished for k in r if k.startswith("hp_") and r[k] is not None})
    upper = finished[0]["robust_is_upper_bound"]
    header = ["trial", "val_robust", "test_clean", "test_robust" + (" (upper bound)" if upper else "")] \
        + [h[3:] for h in hp_names]
    table = [header] + [
        [r["trial_id"], f"{r[STRONG_METRIC]:.3f}", f"{r['clean_acc']:.3f}", f"{r['robust_acc']:.3f}"]
        + [fmt(r.get(h)) for h in hp_names]
        for r in finished[:top]
    ]
    lines.append(f"best trials (ranked by validation robust accuracy at ε={finished[0]['target_eps']:.4g}, "
                 "worst case of PGD-CE and APGD-DLR):")
    if upper:
        lines.append(f"  test robust: {finished[0]['eval_profile']} profile, no AutoAttack: an upper bound")
    lines += ["  " + line for line in text_table(table[0], table[1:]).splitlines()]
    return "\n".join(lines)


def ranking_html(best: pd.DataFrame) -> str:
    intro = html.paragraph(
        "Methods ranked by the test robust accuracy at the target ε (worst case over the attack set) "
        "of their best configuration, chosen by mean validation robust accuracy (PGD-CE and APGD-DLR) "
        "over seeds; one table per dataset, target ε and evaluation profile, never ranked across them. "
        "Rows in red failed a sanity check of the evaluation: their robustness is not to be trusted. "
        "Rows in amber have a flat curve: no attack changed any prediction, as for a constant classifier.")
    tables = []
    for title, rows in ranking_groups(best):
        classes = ["untrusted" if t is False else "flat" if flat else ""
                   for t, flat in zip(rows["trusted"], rows["flat_curve"])]
        tables.append(f"<h3>{html.escape(title)}</h3>" + html.table(RANKING_HEADER, ranking_rows(rows), classes))
    return intro + "".join(tables)

"""`orch reproduce PRESET`: every method's paper-default configuration on one dataset, no search,
`--seeds K`, the `standard` evaluation; then one table (Markdown and CSV) and one HTML page with
what was measured beside what each paper claims (`PAPER_CLAIMS` in `search_spaces/<method>.py`).

Each method is an ordinary sweep of one configuration (`--trials 1`: Optuna's first point is the
paper's defaults) in `<results-dir>/<name>/<method>/`, so MLflow runs, Parquet and `--resume`
are the sweep's own. This module holds the presets and writes the comparison.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from orchestrator.records import parquet
from orchestrator.report import draw, html
from orchestrator.report.figures import robust_vs_eps_series
from orchestrator.report.load import best_configurations, configurations, load_sweeps, target_eps
from orchestrator.report.text import present, sanity_text
from search_spaces import SPACES, get_space
from trainables.methods import METHODS

TABLE_FILE, CSV_FILE, HTML_FILE = "reproduce.md", "reproduce.csv", "reproduce.html"
# Measured metric (trials.parquet / report column) -> the claim's key and the table's heading.
COLUMNS = (("clean_acc", "clean", "clean"), ("pgd_acc", "pgd", "PGD"),
           ("autoattack_acc", "autoattack", "AutoAttack"), ("robust_acc", "worst", "worst case"))


@dataclass(frozen=True)
class Preset:
    dataset: str
    model: str
    epochs: int
    claims: str  # the key of each method's PAPER_CLAIMS
    eval_examples: int
    sets: dict[str, str] = field(default_factory=dict)  # --set values every method gets
    needs_data_dir: bool = False
    summary: str = ""


PRESETS = {
    # Sized on 2 CPU cores: all 8 methods, one seed, in one run (92 min measured; docs/benchmarks.md says how).
    # Batches of 50 (Madry et al.'s MNIST batch): at ε 0.3 a model first sits at chance, and
    # 4 epochs of 128-batches (225 steps) leave madry there longer than 4 epochs of 50 (576).
    "mnist-cpu": Preset(
        dataset="npz", model="small-cnn", epochs=4, claims="mnist", eval_examples=200,
        sets={"target_eps": "0.3", "train_steps": "10", "eval_steps": "20", "batch_size": "50"},
        needs_data_dir=True,
        summary="10,000 real MNIST digits from an .npz (--data-dir), small-cnn, ε 0.3, PGD-10 "
                "training, batches of 50, 4 epochs, 200 test points"),
    "mnist": Preset(
        dataset="mnist", model="lenet", epochs=50, claims="mnist", eval_examples=1000,
        sets={"target_eps": "0.3", "train_steps": "40", "train_step_size": "0.01",
              "eval_steps": "40"},
        summary="full MNIST, LeNet, ε 0.3, PGD-40 training (step 0.01), 50 epochs, 1,000 test "
                "points (GPU)"),
    "cifar10": Preset(
        dataset="cifar10", model="resnet18", epochs=100, claims="cifar10", eval_examples=1000,
        sets={"target_eps": "8/255", "train_steps": "10", "train_step_size": "2/255",
              "eval_steps": "20"},
        summary="CIFAR-10, ResNet-18 (--model wrn-34-10 for the WRN papers), ε 8/255, PGD-10 "
                "training (step 2/255), 100 epochs, 1,000 test points (GPU)"),
}


def methods() -> list[str]:
    """Every registered method that has a search space: baselines first, then by name."""
    return sorted((m for m in METHODS if m in SPACES), key=lambda m: (not METHODS.get(m).baseline, m))


@dataclass(frozen=True)
class Row:
    """One method: measured mean ± std over seeds (fractions) beside the paper's claim (%)."""

    method: str
    seeds: int
    measured: dict[str, tuple[float, float]]  # metric -> (mean, std); nan where not measured
    claim: dict[str, Any]
    sanity: str


def comparison_rows(root: Path, methods: Sequence[str], claims: str) -> list[Row]:
    """Per method with a finished trial under `root`: the measured numbers and its claim."""
    dirs = [root / m for m in methods if (root / m / parquet.TRIALS_FILE).is_file()]
    configs = configurations(load_sweeps(dirs).trials) if dirs else None
    rows = []
    for method in methods:
        found = [] if configs is None or configs.empty else \
            configs[configs["method"] == method].to_dict("records")
        measured = {metric: (found[0][f"{metric}_mean"], found[0][f"{metric}_std"]) if found
                    else (math.nan, math.nan) for metric, _, _ in COLUMNS}
        rows.append(Row(method, found[0]["n_seeds"] if found else 0, measured,
                        get_space(method).PAPER_CLAIMS.get(claims, {}),
                        sanity_text(found[0]) if found else "not run"))
    return rows


def write_outputs(root: Path, preset_name: str, rows: list[Row]) -> list[Path]:
    """reproduce.md, reproduce.csv and reproduce.html (with the robust-vs-ε figure) in `root`."""
    preset = PRESETS[preset_name]
    header, cells = table_cells(rows)
    title = f"`orch reproduce {preset_name}`: {preset.summary}"
    markdown = "\n".join([
        title, "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in cells), "",
        _LEGEND, ""])
    (root / TABLE_FILE).write_text(markdown)
    _write_csv(root / CSV_FILE, rows)
    figure = _robust_vs_eps_figure(root, [r.method for r in rows if r.seeds])
    (root / HTML_FILE).write_text(_html(title, header, cells, figure))
    return [root / TABLE_FILE, root / CSV_FILE, root / HTML_FILE]


_LEGEND = ("Measured: test accuracy in %, mean ± std over seeds (one seed: no ±); PGD = PGD-L∞ "
           "with restarts, AutoAttack = standard version, worst case = per example over every "
           "L∞ attack, all at the target ε. Paper: the number the paper reports for its own "
           "model and protocol (source per row), — where it gives none.")


def table_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = (["method", "seeds"] + [f"{label} (measured)" for _, _, label in COLUMNS]
              + [f"{label} (paper)" for _, _, label in COLUMNS]
              + ["paper's model", "paper's attacks", "paper's source", "sanity"])
    cells = []
    for row in rows:
        measured = [_percent(*row.measured[metric]) for metric, _, _ in COLUMNS]
        claimed = [_claim(row.claim.get(key)) for _, key, _ in COLUMNS]
        cells.append([row.method, str(row.seeds), *measured, *claimed, row.claim.get("model") or "—",
                      attacks_text(row.claim) or "—", row.claim.get("source") or "—", row.sanity])
    return header, cells


def attacks_text(claim: dict[str, Any]) -> str:
    """Each claimed robust number's protocol: which attack, ε, steps, restarts, targeting, points."""
    return "; ".join(f"{label}: {c.attack}, ε {c.eps}, steps {c.steps}, restarts {c.restarts}, {c.targeted}, "
                     f"points: {c.n_points}" for _, key, label in COLUMNS
                     if key != "clean" and (c := claim.get("claims", {}).get(key)) is not None)


def _percent(mean: float, std: float) -> str:
    if not present(mean):
        return "—"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if present(std) else f"{100 * mean:.1f}"


def _claim(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _write_csv(path: Path, rows: list[Row]) -> None:
    """Numbers as numbers (fractions measured, percent claimed), empty where absent."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seeds"]
                        + [f"{m}_{s}" for m, _, _ in COLUMNS for s in ("mean", "std")]
                        + [f"paper_{key}_percent" for _, key, _ in COLUMNS]
                        + ["paper_model", "paper_attacks", "paper_source", "sanity"])
        for row in rows:
            measured = [v if present(v) else "" for m, _, _ in COLUMNS for v in row.measured[m]]
            claimed = ["" if row.claim.get(key) is None else row.claim[key] for _, key, _ in COLUMNS]
            writer.writerow([row.method, row.seeds, *measured, *claimed,
                             row.claim.get("model") or "", attacks_text(row.claim), row.claim.get("source") or "",
                             row.sanity])


def _robust_vs_eps_figure(root: Path, methods: list[str]) -> Path | None:
    """The worst-case accuracy vs ε of every method (PNG + PDF in `root`)."""
    if not methods:
        return None
    sweeps = load_sweeps([root / m for m in methods])
    best = best_configurations(configurations(sweeps.trials))
    if best.empty:
        return None
    series, attack_set = robust_vs_eps_series(sweeps, best)
    draw.save(draw.robust_vs_eps(series, attack_set, target_eps(sweeps.trials)), root, "reproduce_robust_vs_eps")
    return root / "reproduce_robust_vs_eps.png"


def _html(title: str, header: list[str], cells: list[list[str]], figure: Path | None) -> str:
    shown = html.table(header, cells) + html.paragraph(_LEGEND)
    if figure is not None:
        shown += html.figure(figure, "Worst-case test accuracy vs ε of each method (mean ± std over "
                                     "seeds); dotted: the target ε.")
    return html.page("Measured vs claimed", title, [("orch reproduce", shown)])

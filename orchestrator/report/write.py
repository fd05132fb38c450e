"""`orch report`: every registered figure (PNG + PDF), pareto.parquet, latent.parquet and one
report.html of one or more sweeps."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from orchestrator.report import html
from orchestrator.report.figures import FIGURES, Inputs, draw_all, trial_scatter
from orchestrator.report.latent import LATENT_FILE, latent_html, latent_rows
from orchestrator.report.load import ReportError, best_configurations, configurations, load_sweeps
from orchestrator.report.ranking import ranking_html

PARETO_FILE = "pareto.parquet"
HTML_FILE = "report.html"
# report.html's sections: (figures' section key, heading); the ranking and latent sections open
# with their tables.
HEADINGS = (("robust_vs_eps", "1. Robust accuracy vs ε"),
            ("clean_vs_robust", "2. Clean vs robust accuracy, Pareto fronts"),
            ("hyperparameters", "3. Hyperparameter effects"),
            ("ranking", "4. Ranking"),
            ("latent", "5. Latent analyses of each method's best trial"))


@dataclass
class Report:
    """What `write_report` produced: figure name -> caption, and notes on what was skipped."""

    figures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def write_report(dirs: Sequence[Path], out: Path, latent_examples: int = 500) -> Report:
    """latent_examples = 0 skips the latent analyses."""
    sweeps = load_sweeps(dirs)
    best = best_configurations(configurations(sweeps.trials))
    if best.empty:
        raise ReportError("no finished trials in " + ", ".join(map(str, dirs)))
    out.mkdir(parents=True, exist_ok=True)
    inputs = Inputs(sweeps, best)
    parquet_write(trial_scatter(sweeps.trials)[1], out / PARETO_FILE)
    if latent_examples > 0:
        inputs.latent, notes = latent_rows(sweeps, best, latent_examples)
        inputs.notes += notes
    if inputs.latent:
        parquet_write(pd.DataFrame(inputs.latent), out / LATENT_FILE)
    report = Report(draw_all(inputs, out), inputs.notes)
    tables = {"ranking": ranking_html(best), "latent": latent_html(inputs.latent)}
    sections = [(heading, tables.get(key, "") + "".join(
        html.figure(out / f"{name}.png", report.figures[name])
        for name, registered in FIGURES.items() if registered.section == key and name in report.figures))
        for key, heading in HEADINGS]
    names = ", ".join(d.name for d in sweeps.dirs)
    (out / HTML_FILE).write_text(html.page(
        "Robustness sweep report", f"Sweeps: {names}. Written by orch report; figures are also in this "
        "folder as PNG and PDF.", sections, report.notes))
    return report


def parquet_write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)

"""The papers' latent analyses of each method's best trial (AFD's sensitivity, TLA's separation
ratio and k-NN accuracy, ER-Classifier's t-SNE), restored from its checkpoint: rows for
latent.parquet and the report's table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.report import html
from orchestrator.report.load import Sweeps
from orchestrator.report.text import fmt, present
from trainables.checkpoint import CheckpointRefused, load_state_file, restore
from trainables.latent import KNN_K, analyse

TSNE_MAX_EXAMPLES = 300  # t-SNE cost grows fast; 300 points per side show the clusters
LATENT_FILE = "latent.parquet"

def latent_rows(sweeps: Sweeps, best: pd.DataFrame, n_examples: int) -> tuple[list[dict], list[str]]:
    """The papers' latent analyses of each method's best trial (its best seed by validation),
    restored from its checkpoint. Rows for latent.parquet, and notes on trials skipped."""
    rows, notes = [], []
    for row in best.itertuples(index=False):
        trial = sweeps.trials[(sweeps.trials["sweep"] == row.sweep)
                              & (sweeps.trials["trial_id"] == row.best_trial)].iloc[0]
        checkpoint = trial["checkpoint_uri"]
        if not present(checkpoint) or not Path(checkpoint).exists():
            notes.append(f"{row.method}: checkpoint {checkpoint} not found, no latent analysis")
            continue
        try:
            state = load_state_file(checkpoint)
        except CheckpointRefused as error:  # corrupt, or crafted to run code: never unpickled
            notes.append(f"{row.method}: {error}, no latent analysis")
            continue
        config, method, data = restore(state)
        result = analyse(method, data, float(trial["target_eps"]), config.eval.eval_steps,
                         n_examples, min(n_examples, TSNE_MAX_EXAMPLES))
        rows.append({
            "sweep": row.sweep, "method": row.method, "trial_id": row.best_trial,
            "config_id": row.config_id, "config": row.config, "attack": "pgd",
            "steps": config.eval.eval_steps, **_scalars(result),
            "tsne_x": result.tsne[:, 0].tolist(), "tsne_y": result.tsne[:, 1].tolist(),
            "tsne_label": result.tsne_label.tolist(), "tsne_adversarial": result.tsne_adversarial.tolist(),
        })
    return rows, notes

def _scalars(result: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(result).items() if not isinstance(v, np.ndarray)}

LATENT_HEADER = ["method", "trial", "ε", "n", "adv. acc", "sensitivity median (± std)",
                 "separation r", "kNN clean", "kNN adv."]

def latent_table(rows: list[dict]) -> list[list[str]]:
    return [[r["method"], r["trial_id"], f"{r['eps']:.4g}", str(r["n_examples"]), f"{r['adv_acc']:.3f}",
             f"{r['sensitivity_median']:.3f} ± {r['sensitivity_std']:.3f}",
             fmt(r["separation_ratio"]), f"{r['knn_clean_acc']:.3f}", f"{r['knn_adv_acc']:.3f}"]
            for r in rows]

def latent_html(latent: list[dict]) -> str:
    if not latent:
        return "<p>No latent analyses (see the notes).</p>"
    return ("<p>On test points, x' = PGD-L∞ at the target ε through the full inference path. "
            "Sensitivity ‖E(x)−E(x')‖/‖E(x)‖ (AFD, lower is better); separation ratio r of "
            "misclassified adversaries from their false class (TLA Table 2, higher is better); "
            f"accuracy of a {KNN_K}-NN classifier fitted on clean training embeddings (TLA Table 3). "
            f"Also in {LATENT_FILE}.</p>" + html.table(LATENT_HEADER, latent_table(latent)))

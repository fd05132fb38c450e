"""What a fixed-seed digits sweep records, as one JSON file, to check that a refactoring changed
where code lives and not what it does.

    python bench/sweep_fingerprint.py OUT.json        # run the sweep, write its fingerprint
    python bench/sweep_fingerprint.py --compare A.json B.json

The fingerprint holds every column of trials.parquet and curves.parquet with its values, and every
MLflow param and metric (latest value and step) of the parent and child runs, keyed by the trial's
configuration (Tune's trial ids and MLflow's run ids are random). Columns and keys that measure
time or name a random id or a temporary path are left out; nothing else is.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# A small ASHA sweep on digits, seeded: Optuna's sampler and every trial's training are seeded.
SWEEP = ["standard", "--dataset", "digits", "--trials", "3", "--epochs", "4", "--seed", "7",
         "--scheduler", "fifo", "--eval", "quick", "--set", "eval_examples=64", "--set", "val_examples=64",
         "--set", "eval_steps=3", "--set", "val_steps=3", "--set", "train_steps=3",
         "--set", "val_strong_steps=3", "--set", "val_strong_restarts=1", "--cpus-per-trial", "1",
         "--name", "fingerprint"]
VOLATILE = {"trial_id", "mlflow_run_id", "duration_s", "checkpoint_uri", "timestamp", "sweep_dir",
            "search_s", "train_s", "eval_s"}
VOLATILE_SUFFIXES = ("_s", "time", "_uri", "_path")


def _stable(key: str) -> bool:
    return key not in VOLATILE and not key.endswith(VOLATILE_SUFFIXES)


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def parquet_part(sweep_dir: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    part = {}
    for name in ("trials.parquet", "curves.parquet"):
        rows = pq.read_table(sweep_dir / name).to_pylist()
        columns = sorted(rows[0]) if rows else []
        stable = [c for c in columns if _stable(c)]
        values = sorted(json.dumps({c: _round(r[c]) for c in stable}, sort_keys=True, default=str) for r in rows)
        part[name] = {"columns": columns, "rows": values}
    return part


def mlflow_part(tracking_uri: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    part = {}
    for run in runs:
        params = {k: v for k, v in run.data.params.items() if _stable(k)}
        key = "parent" if "mlflow.parentRunId" not in run.data.tags else json.dumps(
            {k: v for k, v in sorted(params.items()) if k not in ("trial_id",)}, sort_keys=True)
        metrics = {}
        for name in run.data.metrics:
            if _stable(name):
                history = client.get_metric_history(run.info.run_id, name)
                metrics[name] = sorted((m.step, _round(m.value)) for m in history)
        part[key] = {"params": params, "metrics": metrics, "status": run.info.status}
    return part


def fingerprint(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tracking = f"sqlite:///{folder}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
        orch = Path(sys.executable).with_name("orch")
        subprocess.run([str(orch), "sweep", *SWEEP, "--results-dir", f"{folder}/results"],
                       check=True, env=env, cwd=folder)
        result = {"parquet": parquet_part(Path(folder) / "results" / "fingerprint"),
                  "mlflow": mlflow_part(tracking)}
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {out}")


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    differences = []
    for section in ("parquet", "mlflow"):
        for key in sorted(set(left[section]) | set(right[section])):
            if left[section].get(key) != right[section].get(key):
                differences.append(f"{section}: {key[:120]}")
    for line in differences:
        print("differs:", line)
    print(f"{len(differences)} difference(s) between {a} and {b}")
    return 1 if differences else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    fingerprint(Path(sys.argv[1]))

"""Orchestration overhead: N identical trials through `orch sweep` versus the same N
`run_trial` calls back to back in one process, on the same cores.

    python bench/overhead.py                 # 10 trials of ~20 s (targets: <= 1 s/trial, <= 1.15x)
    python bench/overhead.py --epochs 1      # short trials: mostly overhead

A second sweep of one trial separates what a sweep pays once (imports, Ray and the MLflow store
starting, the first worker) from what each further trial adds beyond its own compute.

Every searched dimension of `standard` is fixed with --set, so all trials do the same work and
the difference is what Ray, Optuna, MLflow and Parquet cost. The sweep runs one trial at a time
with every core (--cpus-per-trial = cores), exactly like the in-process loop.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402

FIXED = {"lr": "1e-3", "embed_dim": "16", "eval_examples": "360", "val_examples": "144"}


def in_process(trials: int, epochs: int, cores: int) -> float:
    from trainables import TrialConfig, run_trial

    flat = {"method": "standard", "epochs": epochs, "threads": cores, **FIXED}
    config = TrialConfig.from_flat({k: (float(v) if k == "lr" else v) for k, v in flat.items()})
    start = time.perf_counter()
    for _ in range(trials):
        run_trial(config)
    return time.perf_counter() - start


def through_orch(trials: int, epochs: int, cores: int, workdir: Path) -> tuple[float, list[float]]:
    """The sweep's wall time, and each trial's duration as its trials.parquet row records it
    (from the driver seeing it start to it completing)."""
    sets = [arg for k, v in FIXED.items() for arg in ("--set", f"{k}={v}")]
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", "standard", "--trials", str(trials),
               "--epochs", str(epochs), "--cpus-per-trial", str(cores), "--name", "overhead",
               "--scheduler", "fifo",  # every trial runs all its epochs, as in-process
               "--results-dir", str(workdir / "results"),
               "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", *sets]
    workdir.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=workdir)
    wall = time.perf_counter() - start
    rows = pq.read_table(workdir / "results" / "overhead" / "trials.parquet").to_pylist()
    return wall, [row["duration_s"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50, help="50 epochs of digits ~ 20 s on 2 cores")
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials must be at least 2 (one sweep of 1 trial is the fixed-cost baseline)")
    cores = os.cpu_count() or 1
    # The machine's speed drifts over minutes: half the in-process trials run before the
    # sweeps, half after.
    direct = in_process(args.trials // 2, args.epochs, cores)
    with tempfile.TemporaryDirectory() as folder:
        swept, durations = through_orch(args.trials, args.epochs, cores, Path(folder) / "n")
        single, _ = through_orch(1, args.epochs, cores, Path(folder) / "one")
    direct += in_process(args.trials - args.trials // 2, args.epochs, cores)
    trial = direct / args.trials
    later = sorted(durations)[:-1]  # all but the longest: the first trial also starts the worker
    row = {
        "trials": args.trials, "epochs": args.epochs, "cores": cores, "trial_s": trial,
        "in_process_s": direct, "orch_sweep_s": swept, "ratio": swept / direct,
        "overhead_per_trial_s": (swept - direct) / args.trials,
        # Start-up and shutdown (imports, Ray, MLflow store, first worker): paid once per sweep.
        "fixed_s": single - trial,
        # What one more trial in the sweep costs beyond its own compute...
        "marginal_per_trial_s": (swept - single) / (args.trials - 1) - trial,
        # ...split into a trial running slower inside the sweep (it shares the cores with the
        # driver and Ray's processes) and time between trials.
        "in_trial_s": sum(later) / len(later) - trial,
        "between_trials_s": (swept - single - sum(later)) / len(later),
    }
    print(table([row]))
    print("targets: ratio <= 1.15 (for ~20 s trials), overhead <= 1 s per trial")
    print(f"saved {save('overhead', {'results': [row]})}")


if __name__ == "__main__":
    main()

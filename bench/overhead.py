"""Orchestration overhead: N identical trials through `orch sweep` versus the same N
`run_trial` calls back to back in one process, on the same cores.

    python bench/overhead.py                 # 10 trials of ~20 s (targets: <= 1 s/trial, <= 1.15x)
    python bench/overhead.py --epochs 1      # short trials: mostly overhead

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


def through_orch(trials: int, epochs: int, cores: int, workdir: Path) -> float:
    sets = [arg for k, v in FIXED.items() for arg in ("--set", f"{k}={v}")]
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", "standard", "--trials", str(trials),
               "--epochs", str(epochs), "--cpus-per-trial", str(cores), "--name", "overhead",
               "--scheduler", "fifo",  # every trial runs all its epochs, as in-process
               "--results-dir", str(workdir / "results"),
               "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", *sets]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=workdir)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=12, help="12 epochs of digits ~ 20 s on 2 cores")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        swept = through_orch(args.trials, args.epochs, cores, Path(folder))
    direct = in_process(args.trials, args.epochs, cores)
    row = {
        "trials": args.trials, "epochs": args.epochs, "cores": cores,
        "trial_s": direct / args.trials, "in_process_s": direct, "orch_sweep_s": swept,
        "overhead_per_trial_s": (swept - direct) / args.trials, "ratio": swept / direct,
    }
    print(table([row]))
    print("targets: overhead <= 1 s/trial, ratio <= 1.15 (for ~20 s trials)")
    print(f"saved {save('overhead', {'results': [row]})}")


if __name__ == "__main__":
    main()

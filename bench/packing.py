"""Trials per hour when several trials share one GPU, as Ray's fractional GPUs do.

    python bench/packing.py                              # 1, 0.5 and 0.25 GPU per trial
    python bench/packing.py --trials 16 --method madry --dataset npz --data-dir mnist-10k.npz

For each share s in --shares, 1/s worker processes split --trials `run_trial` calls between them
and run their part back to back on the same device; trials per hour = trials / wall time. A
fractional GPU in Ray is exactly that, processes sharing a device, so Ray is not needed here (the
GPU machines we measure on do not have it). Workers start, import torch and load the data before
the clock starts: a reused Ray actor pays that once per sweep, not once per trial. The CPU cores
are divided between the workers. Target (GPU, digits/MNIST-sized models): >= 2.5x the trials per
hour at 0.25 GPU per trial versus 1 GPU per trial. Runs on CPU too (then it measures core sharing).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402


def worker(flat: dict, seeds: list[int], threads: int, ready, results) -> None:
    """Runs one trial per seed; waits at `ready` (with every other worker and the clock) first."""
    import torch

    from trainables import TrialConfig, run_trial
    from trainables.data import load_dataset

    torch.set_num_threads(threads)
    configs = [TrialConfig.from_flat({**flat, "seed": seed}) for seed in seeds]
    load_dataset(configs[0].data)
    if torch.cuda.is_available() and flat["device"] != "cpu":
        torch.ones(1, device="cuda").sum().item()  # CUDA context made before the clock starts
    ready.wait()
    for config in configs:
        run_trial(config)
    results.put(len(configs))


def trials_per_hour(flat: dict, trials: int, workers: int, cores: int) -> dict:
    context = mp.get_context("spawn")  # fork and CUDA do not mix
    ready, results = context.Barrier(workers + 1), context.Queue()
    shares = [list(range(w, trials, workers)) for w in range(workers)]
    threads = max(1, cores // workers)
    processes = [context.Process(target=worker, args=(flat, seeds, threads, ready, results))
                 for seeds in shares if seeds]
    for process in processes:
        process.start()
    ready.wait()
    start = time.perf_counter()
    done = sum(results.get() for _ in processes)
    wall = time.perf_counter() - start
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a worker failed with exit code {process.exitcode}")
    return {"gpu_per_trial": 1 / workers, "workers": workers, "threads_each": threads,
            "trials": done, "wall_s": wall, "trials_per_hour": done * 3600 / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="1,0.5,0.25", help="GPU per trial; 1/share workers each")
    parser.add_argument("--trials", type=int, default=8, help="trials per share (divisible by 1/share)")
    parser.add_argument("--method", default="madry")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    flat = {"method": args.method, "dataset": args.dataset, "data_dir": args.data_dir,
            "model": args.model, "epochs": args.epochs, "device": args.device}
    rows = []
    for share in (float(s) for s in args.shares.split(",")):
        rows.append(trials_per_hour(flat, args.trials, round(1 / share), cores))
        rows[-1]["vs_1_gpu"] = rows[-1]["trials_per_hour"] / rows[0]["trials_per_hour"]
        print(f"{share:g} GPU per trial: {rows[-1]['trials_per_hour']:.0f} trials/h", flush=True)
    print(table(rows))
    print("target (GPU): vs_1_gpu >= 2.5 at 0.25 GPU per trial")
    print(f"saved {save('packing', {'args': vars(args), 'cores': cores, 'results': rows})}")


if __name__ == "__main__":
    main()

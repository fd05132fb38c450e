"""A method's learning curve on validation: after each epoch, clean accuracy and the strong
validation attack's robust accuracy (the search's own number: the per-example worst case of PGD-CE
and APGD-DLR with restarts at the target ε). It chooses a benchmark preset's epochs: where
madry's robust accuracy stops improving.

    python bench/learning_curve.py --data-dir ../shared/data/mnist-10k.npz --epochs 20 \\
        --out docs/benchmark/mnist-cpu/learning-curve.csv

Defaults are the mnist-cpu benchmark preset (orchestrator.report.benchmark.BENCHMARKS). The test
split is never read. Uses trainables only (no Ray, no MLflow).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from trainables.config import TrialConfig
from trainables.data import ResidentSplit, load_dataset
from trainables.evaluate import accuracy
from trainables.protocol import resolve_protocol
from trainables.selection import strong_robust_accuracy
from trainables.trial import augments, build_method, pick_device, shuffle, train_one_epoch

MNIST_CPU = {"dataset": "npz", "model": "small-cnn", "target_eps": 0.3, "train_steps": 10, "eval_steps": 20,
             "batch_size": 50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="madry")
    parser.add_argument("--data-dir", required=True, help="the .npz file (mnist-10k.npz)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val-examples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="CSV: epoch, clean, strong robust, seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrialConfig.from_flat({**TrialConfig(method=args.method).to_flat(), **MNIST_CPU,
                                    "method": args.method, "data_dir": args.data_dir, "epochs": args.epochs})
    data = load_dataset(config.data)
    device = pick_device(config.train.device)
    protocol = resolve_protocol(config, data.family)
    torch.manual_seed(config.train.seed)
    method = build_method(config, data, device)
    train = ResidentSplit.of(data.train, device)
    val = data.val.head(args.val_examples).to(device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "epoch", "val_clean_acc", "val_strong_robust_acc", "epoch_seconds"])
        for epoch in range(args.epochs):
            started = time.time()
            train_one_epoch(method, train, config.train.batch_size, shuffle(config.train.seed, epoch),
                            augments(config.train, data.family))
            seconds = time.time() - started
            method.eval()
            clean = accuracy(method, val)
            robust = strong_robust_accuracy(method, val, protocol.target_eps, config.eval.val_strong_steps,
                                            config.eval.val_strong_restarts)
            method.train()
            writer.writerow([args.method, epoch + 1, f"{clean:.4f}", f"{robust:.4f}", f"{seconds:.0f}"])
            f.flush()
            print(f"epoch {epoch + 1}: val clean {clean:.3f}, strong robust {robust:.3f} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

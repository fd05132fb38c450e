"""How much ATLD's old predict masked the attack (issue #11): IMT kept in the autograd graph
versus the straight-through (BPDA) backward `ATLD.predict` has now, against the transfer from
the base classifier (no IMT) that the paper reports.

    python bench/imt_masking.py                      # digits, train ε 0.1, 30 epochs, ε 0.1 and 0.2
    python bench/imt_masking.py --epochs 5 --eps 0.1 0.2 0.3

Every attack is PGD-20 on CE (random start, best iterate per example) on the whole digits test
split and is scored on the full `predict` (with IMT); the attacks differ only in the gradient
they follow:
    in_graph   ∇ of f(IMT(x)) with IMT differentiated (ATLD's predict before 96e2da0)
    bpda       ∇ of f at IMT(x), IMT's backward the identity (ATLD's predict now)
    transfer   ∇ of f at x: crafted on the base classifier, IMT only applied when scoring
The zero-gradient column is the fraction of input pixels whose CE gradient is exactly 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # planted.InGraphIMT

from common import save, table  # noqa: E402
from planted import InGraphIMT  # noqa: E402

from trainables.attacks import ce_loss, correct, input_grad, pgd  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import ResidentSplit, load_dataset  # noqa: E402
from trainables.trial import build_method, shuffle, train_one_epoch  # noqa: E402


def train_atld(epochs: int, train_eps: float, seed: int):
    config = TrialConfig(method="atld").replace(dataset="digits", train_eps=train_eps,
                                                epochs=epochs, seed=seed, device="cpu")
    torch.manual_seed(seed)
    data = load_dataset(config.data)
    atld = build_method(config, data, torch.device("cpu"))
    train = ResidentSplit.of(data.train, "cpu")
    for epoch in range(epochs):
        train_one_epoch(atld, train, config.train.batch_size, shuffle(seed, epoch))
    return atld.eval(), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-eps", type=float, default=0.1)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    started = time.perf_counter()
    atld, data = train_atld(args.epochs, args.train_eps, args.seed)
    trained_s = time.perf_counter() - started
    x, y = data.test.x, data.test.y
    gradients = {"in_graph": InGraphIMT(atld), "bpda": atld, "transfer": atld.model}
    rows = [{"attack": "clean", "eps": 0.0, "robust_acc": correct(atld, x, y).float().mean().item(),
             "zero_grad_pixels": float("nan")}]
    for eps in args.eps:
        for name, crafted_on in gradients.items():
            torch.manual_seed(args.seed)
            x_adv = pgd(crafted_on, x, y, eps, args.steps)
            zero = (input_grad(crafted_on, ce_loss, x, y) == 0).float().mean().item()
            rows.append({"attack": name, "eps": eps,
                         "robust_acc": correct(atld, x_adv, y).float().mean().item(),
                         "zero_grad_pixels": zero})
    print(f"ATLD on digits (imt={atld.hp.imt}), train ε {args.train_eps}, {args.epochs} epochs "
          f"({trained_s:.0f} s), PGD-{args.steps} on {len(x)} test points, scored on predict")
    print(table(rows))
    path = save("imt-masking", {"args": vars(args), "note": args.note, "train_s": trained_s,
                                "rows": rows})
    print(f"saved {path}")


if __name__ == "__main__":
    main()

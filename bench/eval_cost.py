"""Evaluation cost: the final test evaluation of one trial as a ratio to that trial's training.

    python bench/eval_cost.py              # madry as `orch reproduce mnist-cpu` trains it
    python bench/eval_cost.py --unnested   # also time the evaluation without nested ε-balls
    python bench/eval_cost.py --versus-autoattack --examples 200   # issue #20's cost target
    python bench/eval_cost.py --versus-autoattack --dataset digits --eps 0.1 --epochs 10

The trial is the one `orch reproduce mnist-cpu` runs for madry (small-cnn, PGD-10 at ε 0.3,
batches of 50, 4 epochs, `standard` evaluation of 500 test points), through `run_trial`; the
evaluation is `run_trial`'s own `final_evaluation` call (with --unnested, run a second time
attacking every example at every ε, as before that shortcut). The training time is all of
`run_trial` but the evaluations (data, epochs, per-epoch validation, the strong validation
attack). Times are wall-clock and CPU (process time, all threads: on a shared machine the CPU
ratio is the steadier one). Target: the evaluation costs a fraction of the training (ratio < 1).

--versus-autoattack trains the same model (through the trainables API), then times, on the same
model and the same test points, a standalone pyautoattack standard run (the package used as its
README shows) and orch's `standard` evaluation (`evaluate_trial`, with the trial's default
PGD-trained transfer surrogate, trained beforehand: one surrogate serves a whole sweep, so its
training is reported apart). Target (issue #20): orch / AutoAttack <= 1.3.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist-10k.npz"


class Clock:
    """Wall-clock and CPU seconds since it started."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure(method: str, epochs: int, batch_size: int, profile: str, examples: int, threads: int,
            data_dir: Path, unnested: bool) -> list[dict]:
    import trainables.trial as trial_module
    from trainables import TrialConfig

    config = TrialConfig.from_flat({
        "method": method, "dataset": "npz", "data_dir": str(data_dir), "model": "small-cnn",
        "epochs": epochs, "batch_size": batch_size, "threads": threads, "eval_profile": profile,
        "eval_examples": examples, "target_eps": 0.3, "train_steps": 10, "eval_steps": 20})
    evaluations: dict[bool, tuple[float, float, object]] = {}
    final_evaluation = trial_module.final_evaluation

    def both_evaluations(trial_config, *args):
        for nested in (True, False) if unnested else (True,):
            clock = Clock()
            result = final_evaluation(trial_config.replace(eval_nested=nested), *args)
            evaluations[nested] = (*clock.read(), result)
            print(f"evaluation nested={nested}: {evaluations[nested][0]:.0f} s wall, "
                  f"{evaluations[nested][1]:.0f} s CPU", flush=True)
        return evaluations[True][2]

    trial_module.final_evaluation = both_evaluations  # run_trial calls it once, after training
    clock = Clock()
    trial_module.run_trial(config)
    wall, cpu = clock.read()
    train_wall = wall - sum(e[0] for e in evaluations.values())
    train_cpu = cpu - sum(e[1] for e in evaluations.values())
    print(f"training: {train_wall:.0f} s wall, {train_cpu:.0f} s CPU", flush=True)
    return [{
        "method": method, "epochs": epochs, "batch_size": batch_size, "profile": profile,
        "examples": examples,
        "threads": threads, "nested": nested, "train_s": train_wall, "eval_s": eval_wall,
        "ratio": eval_wall / train_wall, "train_cpu_s": train_cpu, "eval_cpu_s": eval_cpu,
        "cpu_ratio": eval_cpu / train_cpu, "clean_acc": result.clean_acc,
        "robust_acc": result.robust_acc, "autoattack_acc": result.autoattack_acc,
    } for nested, (eval_wall, eval_cpu, result) in evaluations.items()]


def versus_autoattack(method: str, epochs: int, batch_size: int, examples: int, threads: int,
                      data_dir: Path, dataset: str, eps: float) -> list[dict]:
    import torch
    from pyautoattack import AutoAttack

    from trainables import TrialConfig
    from trainables.data import ResidentSplit, load_dataset
    from trainables.evaluate import evaluate_trial
    from trainables.protocol import resolve_protocol
    from trainables.trial import (build_method, shuffle, surrogate_config, train_one_epoch,
                                  trained_surrogate)

    torch.set_num_threads(threads)
    config = TrialConfig.from_flat({
        "method": method, "dataset": dataset, "data_dir": str(data_dir), "model": "small-cnn",
        "epochs": epochs, "batch_size": batch_size, "threads": threads,
        "eval_profile": "standard", "eval_examples": examples, "target_eps": eps,
        "train_steps": 10, "eval_steps": 20, "device": "cpu"})
    data = load_dataset(config.data)
    protocol = resolve_protocol(config, data.family)
    torch.manual_seed(config.train.seed)
    trained = build_method(config, data, torch.device("cpu"))
    train = ResidentSplit.of(data.train, "cpu")
    clock = Clock()
    for epoch in range(epochs):
        train_one_epoch(trained, train, batch_size, shuffle(config.train.seed, epoch))
    train_wall, _ = clock.read()
    trained.eval()
    clock = Clock()
    surrogate = trained_surrogate(surrogate_config(config))
    surrogate_wall, _ = clock.read()
    test = data.test.head(examples)

    clock = Clock()
    adversary = AutoAttack(trained, norm="Linf", eps=protocol.target_eps, version="standard", seed=0)
    adversary.verbose = False
    x_adv, _ = adversary.run_standard_evaluation(test.x, test.y, batch_size=512)
    with torch.no_grad():
        autoattack_acc = (trained(x_adv).argmax(1) == test.y).float().mean().item()
    autoattack_wall, autoattack_cpu = clock.read()
    print(f"pyautoattack standard: {autoattack_wall:.0f} s wall, {autoattack_cpu:.0f} s CPU", flush=True)

    clock = Clock()
    evaluation = evaluate_trial(trained, data.test, protocol, config.eval, data.family, surrogate)
    orch_wall, orch_cpu = clock.read()
    print(f"orch standard: {orch_wall:.0f} s wall, {orch_cpu:.0f} s CPU", flush=True)
    return [{
        "method": method, "dataset": dataset, "eps": eps, "epochs": epochs, "examples": examples,
        "threads": threads, "train_s": train_wall, "surrogate_train_s": surrogate_wall,
        "autoattack_s": autoattack_wall, "orch_standard_s": orch_wall,
        "ratio": orch_wall / autoattack_wall, "cpu_ratio": orch_cpu / autoattack_cpu,
        "clean_acc": evaluation.clean_acc, "standalone_autoattack_acc": autoattack_acc,
        "autoattack_acc": evaluation.autoattack_acc, "robust_acc": evaluation.robust_acc,
    }]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="madry")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--examples", type=int, default=500, help="test points attacked")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (a lone trial in a sweep gets every core)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the MNIST .npz")
    parser.add_argument("--unnested", action="store_true",
                        help="also time the evaluation that attacks every example at every ε")
    parser.add_argument("--versus-autoattack", action="store_true",
                        help="time orch's standard evaluation against a standalone pyautoattack "
                             "standard run on the same model and points")
    parser.add_argument("--dataset", default="npz", help="with --versus-autoattack: npz or digits")
    parser.add_argument("--eps", type=float, default=0.3,
                        help="with --versus-autoattack: the target ε (digits: 0.1, see METHODS.md)")
    parser.add_argument("--note", default="", help="saved with the result (e.g. the machine's load)")
    args = parser.parse_args()
    if args.versus_autoattack:
        rows = versus_autoattack(args.method, args.epochs, args.batch_size, args.examples,
                                 args.threads, args.data_dir, args.dataset, args.eps)
        print(table(rows))
        print("target: ratio <= 1.3 (orch standard / standalone AutoAttack standard)")
        print(f"saved {save('eval_cost-vs-autoattack', {'note': args.note, 'results': rows})}")
        return
    rows = measure(args.method, args.epochs, args.batch_size, args.profile, args.examples,
                   args.threads, args.data_dir, args.unnested)
    print(table(rows))
    print("target: ratio < 1 (the evaluation costs less than the training)")
    print(f"saved {save('eval_cost', {'note': args.note, 'results': rows})}")


if __name__ == "__main__":
    main()

"""Evaluation cost: the final test evaluation of one trial as a ratio to that trial's training.

    python bench/eval_cost.py              # madry as `orch reproduce mnist-cpu` trains it
    python bench/eval_cost.py --unnested   # also time the evaluation without nested ε-balls

The trial is the one `orch reproduce mnist-cpu` runs for madry (small-cnn, PGD-10 at ε 0.3,
batches of 50, 4 epochs, `standard` evaluation of 500 test points), through `run_trial`; the
evaluation is `run_trial`'s own `final_evaluation` call (with --unnested, run a second time
attacking every example at every ε, as before that shortcut). The training time is all of
`run_trial` but the evaluations (data, epochs, per-epoch validation, the strong validation
attack). Times are wall-clock and CPU (process time, all threads: on a shared machine the CPU
ratio is the steadier one). Target: the evaluation costs a fraction of the training (ratio < 1).
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
    parser.add_argument("--note", default="", help="saved with the result (e.g. the machine's load)")
    args = parser.parse_args()
    rows = measure(args.method, args.epochs, args.batch_size, args.profile, args.examples,
                   args.threads, args.data_dir, args.unnested)
    print(table(rows))
    print("target: ratio < 1 (the evaluation costs less than the training)")
    print(f"saved {save('eval_cost', {'note': args.note, 'results': rows})}")


if __name__ == "__main__":
    main()

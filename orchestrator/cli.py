"""`orch`: sweep robustness regularizers with Ray Tune + Optuna, record to MLflow and Parquet."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from orchestrator.params import parse_sets
from orchestrator.tracking import TrackingUnreachable, check_tracking_uri, default_tracking_uri


class BadInput(click.ClickException):
    """One line on stderr, exit code 2, and nothing written."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"orch: error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sweep latent-space adversarial-robustness regularizers (ER-Classifier, ATLD, AFD, TLA,
    ADR and baselines) with Ray Tune + Optuna; every trial is logged to MLflow and every
    robustness curve collated into Parquet."""


@main.command()
@click.argument("method")
@click.option("--dataset", default="digits", show_default=True,
              help="digits (embedded, offline), npz (with --data-dir FILE.npz), mnist, fashion-mnist, "
                   "cifar10, cifar100, svhn (downloaded into --data-dir).")
@click.option("--data-dir", default=None, help="Folder torchvision downloads into (default ./data), or the .npz file for --dataset npz. Must exist.")
@click.option("--model", default="small-cnn", show_default=True, help="Model architecture (see `orch methods`).")
@click.option("--trials", default=8, show_default=True, type=int, help="Number of Optuna trials (configurations).")
@click.option("--epochs", default=10, show_default=True, type=int, help="Training epochs per trial.")
@click.option("--gpus", default=None, type=float, help="GPUs the sweep may use; bounds concurrency. Default: all this machine has (0 on CPU).")
@click.option("--gpus-per-trial", default=1.0, show_default=True, type=float, help="GPUs per trial; fractions (0.5, 0.25) share a GPU.")
@click.option("--cpus-per-trial", default=1, show_default=True, type=int, help="CPU cores (and torch threads) per trial.")
@click.option("--name", default=None, help="Sweep name (folder under --results-dir, MLflow parent run). Default: METHOD-YYYYmmdd-HHMMSS.")
@click.option("--results-dir", default="./results", show_default=True, help="Where sweep folders (Parquet, Ray checkpoints) are written.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of training and of the Optuna sampler.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Fix a searched hyperparameter or set a knob, e.g. --set train_eps=8/255 --set prior=cauchy. Repeatable; see `orch methods`.")
def sweep(method: str, dataset: str, data_dir: str | None, model: str, trials: int, epochs: int,
          gpus: float | None, gpus_per_trial: float, cpus_per_trial: int, name: str | None,
          results_dir: str, tracking_uri: str | None, seed: int, sets: tuple[str, ...]) -> None:
    """Search METHOD's hyperparameters: train, attack and record every trial."""
    request = _validated_request(method, dataset, data_dir, model, trials, epochs, gpus,
                                 gpus_per_trial, cpus_per_trial, name, results_dir, tracking_uri,
                                 seed, sets)
    from orchestrator.sweep import experiment_name, run_sweep

    started = time.time()
    click.echo(f"[orch] sweep {request.name}: {method} on {dataset}, {trials} trials x {epochs} epochs")
    rows = run_sweep(request)
    _print_best(rows)
    sweep_dir = request.sweep_dir.resolve()
    click.echo(f"\n[orch] done in {time.time() - started:.0f} s. Results:")
    click.echo(f"  curves:  {sweep_dir / 'curves.parquet'}")
    click.echo(f"  trials:  {sweep_dir / 'trials.parquet'}")
    click.echo(f"  MLflow:  {request.tracking_uri} (experiment {experiment_name(dataset)!r}, parent run {request.name!r})")
    click.echo(f"  view:    mlflow ui --backend-store-uri {request.tracking_uri}")


def _validated_request(method, dataset, data_dir, model, trials, epochs, gpus, gpus_per_trial,
                       cpus_per_trial, name, results_dir, tracking_uri, seed, sets):
    """Every check that can fail runs here, before anything is written or Ray starts."""
    from search_spaces import SPACES
    from trainables.config import ConfigError, TrialConfig
    from trainables.data import DATASETS, DatasetUnavailable, load_dataset
    from trainables.methods import METHODS
    from trainables.models import MODELS

    from orchestrator.sweep import SweepRequest

    if method not in METHODS or method not in SPACES:
        raise BadInput(f"unknown method {method!r}; known: {', '.join(n for n in METHODS if n in SPACES)}")
    if dataset not in DATASETS:
        raise BadInput(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if model not in MODELS:
        raise BadInput(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    for flag, value in (("--trials", trials), ("--epochs", epochs), ("--cpus-per-trial", cpus_per_trial)):
        if value < 1:
            raise BadInput(f"{flag} must be at least 1 (got {value})")
    if data_dir is not None and not Path(data_dir).exists():
        raise BadInput(f"--data-dir {data_dir} does not exist")
    gpus = _available_gpus() if gpus is None else gpus
    if gpus < 0 or gpus_per_trial <= 0:
        raise BadInput("--gpus must be >= 0 and --gpus-per-trial > 0")
    if gpus and gpus_per_trial > gpus:
        raise BadInput(f"--gpus-per-trial {gpus_per_trial:g} exceeds --gpus {gpus:g}")
    name = name or f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name.startswith("."):
        raise BadInput(f"--name {name!r} must be a plain folder name")
    sweep_dir = Path(results_dir) / name
    if sweep_dir.exists():
        raise BadInput(f"{sweep_dir} already exists; pick another --name")
    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        fixed = parse_sets(sets, method)
        base = TrialConfig.from_flat({
            "method": method, "dataset": dataset, "data_dir": data_dir or "", "model": model,
            "epochs": epochs, "seed": seed, "threads": cpus_per_trial,
        }).to_flat()
        TrialConfig.from_flat({**base, **fixed})  # --set values that a method rejects fail here
        check_tracking_uri(tracking_uri)
        data = load_dataset(TrialConfig.from_flat(base).data)  # offline downloads fail here, once
    except (ConfigError, ValueError, TrackingUnreachable, DatasetUnavailable) as error:
        raise BadInput(str(error)) from None
    return SweepRequest(
        method=method, name=name, results_dir=Path(results_dir), tracking_uri=tracking_uri,
        trials=trials, base=base, fixed=fixed, family=data.family, gpus=gpus,
        gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, seed=seed,
    )


def _available_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _print_best(rows: list[dict[str, Any]], top: int = 5) -> None:
    """The best trials by the search objective (validation), with their test numbers."""
    finished = [r for r in rows if r["status"] == "FINISHED"]
    failed = len([r for r in rows if r["status"] == "FAILED"])
    click.echo(f"\n[orch] {len(finished)} finished, {failed} failed, "
               f"{len(rows) - len(finished) - failed} stopped early")
    if not finished:
        return
    finished.sort(key=lambda r: r["val_robust_acc"], reverse=True)
    hp_names = sorted({k for r in finished for k in r if k.startswith("hp_") and r[k] is not None})
    header = ["trial", "val_robust", "test_clean", "test_robust"] + [h[3:] for h in hp_names]
    table = [header] + [
        [r["trial_id"], f"{r['val_robust_acc']:.3f}", f"{r['clean_acc']:.3f}", f"{r['robust_acc']:.3f}"]
        + [_fmt(r.get(h)) for h in hp_names]
        for r in finished[:top]
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    click.echo(f"best trials (ranked by validation robust accuracy at ε={finished[0]['target_eps']:.4g}):")
    for row in table:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@main.command()
def methods() -> None:
    """Every method, its search space and its paper defaults."""
    from search_spaces import SPACES
    from trainables.config import hparams_class
    from trainables.methods import METHODS
    from trainables.models import MODELS

    from orchestrator.search import describe_space

    for name in METHODS:
        cls = METHODS.get(name)
        click.echo(f"{name}: {cls.description}  [{cls.paper}]")
        if name in SPACES:
            for family in ("mnist-like", "cifar-like"):
                click.echo(f"  searched ({family}):")
                for line in describe_space(name, family):
                    click.echo(f"    {line}")
                defaults = SPACES[name].paper_defaults(family)
                click.echo("  paper defaults (first trial): "
                           + ", ".join(f"{k}={_fmt(v)}" for k, v in defaults.items()))
        knobs = hparams_class(name)()
        fields = {k.rstrip("_"): v for k, v in vars(knobs).items()}
        if fields:
            click.echo("  knobs (--set KEY=VALUE): " + ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))
        click.echo("")
    click.echo("models (--model): " + ", ".join(MODELS))
    click.echo("shared knobs: see `TrialConfig` fields, e.g. --set batch_size=64 --set target_eps=8/255")


@main.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
def collate(sweep_dirs: tuple[str, ...], output: str) -> None:
    """Merge the curves of several sweeps into one Parquet file."""
    from orchestrator.parquet import collate as collate_curves

    try:
        table = collate_curves([Path(d) for d in sweep_dirs], Path(output))
    except FileNotFoundError as error:
        raise BadInput(str(error)) from None
    click.echo(f"[orch] wrote {table.num_rows} curve rows from {len(sweep_dirs)} sweep(s) to {output}")


if __name__ == "__main__":
    sys.exit(main())

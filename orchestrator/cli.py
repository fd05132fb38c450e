"""`orch`: sweep robustness regularizers with Ray Tune + Optuna, record to MLflow and Parquet."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

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
@click.option("--cpus-per-trial", default=None, type=int,
              help="CPU cores (and torch threads) per trial. Default: on this machine, its cores "
                   "shared by the trials that run at once (a lone trial gets them all); 1 on a cluster.")
@click.option("--name", default=None, help="Sweep name (folder under --results-dir, MLflow parent run). Default: METHOD-YYYYmmdd-HHMMSS.")
@click.option("--results-dir", default="./results", show_default=True, help="Where sweep folders (Parquet, Ray checkpoints) are written.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of training and of the Optuna sampler.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Fix a searched hyperparameter or set a knob, e.g. --set train_eps=8/255 --set prior=cauchy. Repeatable; see `orch methods`.")
@click.option("--address", default=None,
              help="A running Ray cluster: host:port or auto. Default: $RAY_ADDRESS (set under `ray job submit`), else a local Ray on this machine.")
@click.option("--storage", default=None,
              help="Tune's storage for checkpoints (and a copy of the Parquet files): s3://..., gs://... or a path every node sees. Default: <results-dir>/<name>/ray, one machine only.")
@click.option("--max-failures", default=0, show_default=True, type=int,
              help="Retries of a trial that dies (exception, killed worker, lost node), each from its last checkpoint.")
@click.option("--checkpoint-every", "checkpoint_every_s", default=10.0, show_default=True, type=float,
              help="Seconds between a trial's checkpoints (its last epoch is always saved): what a "
                   "crash may cost in training, against the per-epoch cost of saving. 0: every epoch.")
@click.option("--scheduler", default=None,
              help="fifo (every trial runs all epochs) or asha (stop weak trials early on val_robust_acc). Default: asha above 3 epochs, else fifo.")
@click.option("--resume", is_flag=True,
              help="Continue sweep --name whose driver died: finished trials stay, the rest continue from their checkpoints.")
@click.option("--objective", default="robust", show_default=True,
              help="robust: maximise the validation robust accuracy at the target ε. clean+robust: "
                   "multi-objective Optuna on validation clean and robust accuracy; the Pareto front is kept.")
@click.option("--seeds", default=1, show_default=True, type=int,
              help="Train every configuration with K seeds (--seed, --seed+1, ...): --trials x K trials; "
                   "Optuna sees the mean, results show mean ± std.")
@click.option("--eval", "eval_profile", default="standard", show_default=True,
              help="Final test evaluation. standard: clean, FGSM, PGD, CW-L∞ and a transfer attack "
                   "over the ε grid; at the target ε PGD and CW with restarts, then AutoAttack on "
                   "the points still robust. quick: no CW, no restarts, no "
                   "AutoAttack (its robust accuracy is labelled an upper bound). full: adds PGD-L2, "
                   "MIM, Square (and transfer) over the grid. Sanity checks run in every profile.")
@click.option("--eval-examples", default=1000, show_default=True, type=int,
              help="Test points attacked for the final curve (0: the whole test split).")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile every trial's model on CUDA (its first batches compile it); "
                   "no effect on CPU.")
@click.option("--final-checkpoint", default="last", show_default=True,
              help="Weights the final test evaluation attacks: last (the last epoch's) or best (the "
                   "epoch with the best validation robust accuracy). Recorded per trial.")
def sweep(method: str, dataset: str, data_dir: str | None, model: str, trials: int, epochs: int,
          gpus: float | None, gpus_per_trial: float, cpus_per_trial: int | None, name: str | None,
          results_dir: str, tracking_uri: str | None, seed: int, sets: tuple[str, ...],
          address: str | None, storage: str | None, max_failures: int, checkpoint_every_s: float,
          scheduler: str | None, resume: bool, objective: str, seeds: int, eval_profile: str,
          eval_examples: int, compile_model: bool, final_checkpoint: str) -> None:
    """Search METHOD's hyperparameters: train, attack and record every trial."""
    ctx = click.get_current_context()
    settings, saved = _resumed(ctx) if resume else (dict(ctx.params), None)
    request = _validated_request(**settings, saved=saved)
    # What --resume restores: the options as given, with the name and tracking URI resolved.
    request = dataclasses.replace(request, settings={
        **settings, "sets": list(settings["sets"]), "name": request.name,
        "tracking_uri": request.tracking_uri})
    from orchestrator.sweep import experiment_name

    started = time.time()
    click.echo(f"[orch] {'resuming sweep' if saved else 'sweep'} {request.name}: {request.method} on "
               f"{request.base['dataset']}, {request.trials} trials x {request.base['epochs']} epochs, "
               f"scheduler {request.scheduler}")
    click.echo(f"[orch] {_resources_line(request)}")
    rows = _interruptible(request)
    _print_best(rows)
    if request.seeds > 1 or request.objective != "robust":
        from orchestrator.report import sweep_summary

        click.echo("\n" + sweep_summary(request.sweep_dir, pareto=request.objective != "robust"))
    sweep_dir = request.sweep_dir.resolve()
    click.echo(f"\n[orch] done in {time.time() - started:.0f} s. Results:")
    click.echo(f"  curves:  {sweep_dir / 'curves.parquet'}")
    click.echo(f"  trials:  {sweep_dir / 'trials.parquet'}")
    click.echo(f"  MLflow:  {request.tracking_uri} (experiment {experiment_name(request.base['dataset'])!r}, parent run {request.name!r})")
    served = request.tracking_uri.startswith(("http://", "https://"))
    click.echo(f"  view:    {'open ' if served else 'mlflow ui --backend-store-uri '}{request.tracking_uri}")


def _interruptible(request) -> list[dict[str, Any]]:
    """Runs the sweep; on SIGINT/SIGTERM says how to continue it and exits 128 + the signal."""
    from orchestrator.interrupt import SweepInterrupted, received, resume_command
    from orchestrator.sweep import run_sweep

    try:
        return run_sweep(request)
    except SweepInterrupted as stop:
        if stop.resumable:
            command = resume_command(request.method, request.name, str(request.results_dir))
            click.echo(f"[orch] sweep {request.name} interrupted by {stop}; its state is saved. "
                       f"Continue it with:\n  {command}", err=True)
        else:
            click.echo(f"[orch] sweep {request.name} interrupted by {stop} before any trial started; "
                       f"nothing to resume: start it again under a new --name", err=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:  # a second signal: stopped at once, without Tune's last snapshot
        click.echo(f"[orch] sweep {request.name} stopped at once; --resume continues it from Tune's "
                   "last snapshot", err=True)
        sys.exit(128 + (received() or 2))


@main.command()
@click.argument("preset")
@click.option("--data-dir", default=None, help="The dataset's folder, or the .npz file (mnist-cpu: e.g. ../shared/data/mnist-10k.npz). Must exist.")
@click.option("--seeds", default=1, show_default=True, type=int, help="Seeds per method (mean ± std in the table).")
@click.option("--seed", default=0, show_default=True, type=int, help="The first seed.")
@click.option("--methods", default=None, help="Comma-separated subset of the methods (default: all eight).")
@click.option("--model", default=None, help="Override the preset's model.")
@click.option("--epochs", default=None, type=int, help="Override the preset's epochs.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a preset value or set a knob for every method; repeatable.")
@click.option("--name", default=None, help="Folder under --results-dir. Default: reproduce-PRESET-YYYYmmdd-HHMMSS.")
@click.option("--results-dir", default="./results", show_default=True)
@click.option("--tracking-uri", default=None, help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
@click.option("--gpus", default=None, type=float, help="GPUs to use (default: all this machine has).")
@click.option("--gpus-per-trial", default=1.0, show_default=True, type=float)
@click.option("--resume", is_flag=True, help="Continue reproduction --name: finished methods are kept, an interrupted one continues from its checkpoints.")
def reproduce(preset: str, data_dir: str | None, seeds: int, seed: int, methods: str | None,
              model: str | None, epochs: int | None, sets: tuple[str, ...], name: str | None,
              results_dir: str, tracking_uri: str | None, gpus: float | None,
              gpus_per_trial: float, resume: bool) -> None:
    """Run every method's paper-default configuration (no search) on PRESET (mnist-cpu, mnist,
    cifar10) with the standard evaluation, then write the measured-vs-claimed table
    (reproduce.md, reproduce.csv) and reproduce.html."""
    from orchestrator.reproduce import METHODS, PRESETS, comparison_rows, is_complete, sweep_settings, write_outputs
    from orchestrator.resume import load_sweep

    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if PRESETS[preset].needs_data_dir and data_dir is None:
        raise BadInput(f"preset {preset} needs --data-dir (the .npz file of the digits)")
    chosen = methods.split(",") if methods else list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise BadInput(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if resume and not name:
        raise BadInput("--resume needs the --name of the reproduction to continue")
    name = name or f"reproduce-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(results_dir) / name
    if root.exists() and not resume:
        raise BadInput(f"{root} already exists; pick another --name (or continue it with --resume)")
    if resume and not root.is_dir():
        raise BadInput(f"--resume: {root} does not exist")
    requests = []
    for method in chosen:  # every check before the first trial runs
        sweep_dir = root / method
        if resume and is_complete(sweep_dir, seeds):
            continue
        settings, saved = sweep_settings(
            PRESETS[preset], method, root, data_dir=data_dir, model=model, epochs=epochs,
            seeds=seeds, seed=seed, sets=sets, tracking_uri=tracking_uri, gpus=gpus,
            gpus_per_trial=gpus_per_trial), None
        if sweep_dir.exists():
            try:
                saved = load_sweep(sweep_dir)
            except ValueError as error:
                raise BadInput(str(error)) from None
            settings = {**saved.settings, "results_dir": str(root)}
        request = _validated_request(**settings, saved=saved)
        requests.append(dataclasses.replace(request, settings={
            **settings, "sets": list(settings["sets"]), "tracking_uri": request.tracking_uri}))
    click.echo(f"[orch] reproduce {preset} into {root}: {', '.join(chosen)} "
               f"({len(chosen) - len(requests)} already done), {seeds} seed(s) each")
    started = time.time()
    for request in requests:
        click.echo(f"[orch] {request.method}: {_resources_line(request)}")
        _interruptible(request)
    written = write_outputs(root, preset, comparison_rows(root, chosen, PRESETS[preset].claims))
    click.echo("\n" + written[0].read_text())
    click.echo(f"[orch] done in {time.time() - started:.0f} s: " + ", ".join(str(p) for p in written))


def _resumed(ctx: click.Context) -> tuple[dict[str, Any], Any]:
    """The saved settings of sweep --name (flags given now must agree with them)."""
    from orchestrator.resume import load_sweep, resumed_settings

    given = ctx.params
    if not given["name"]:
        raise BadInput("--resume needs the --name of the sweep to continue")
    explicit = {key for key in given
                if ctx.get_parameter_source(key) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    try:
        saved = load_sweep(Path(given["results_dir"]) / given["name"])
        flags = {param.name: param.opts[0] for param in ctx.command.params}
        return resumed_settings(given, explicit, saved, flags), saved
    except ValueError as error:
        raise BadInput(str(error)) from None


def _resources_line(request) -> str:
    if not request.concurrency:
        return f"on {request.where}: CPU only, {request.cpus_per_trial} CPU per trial"
    return (f"on {request.where}: up to {request.concurrency} trials at once, "
            f"{request.gpus_per_trial:g} GPU + {request.cpus_per_trial} CPU each, {request.gpus:g} GPUs in all")


def _validated_request(method, dataset, data_dir, model, trials, epochs, gpus, gpus_per_trial,
                       cpus_per_trial, name, results_dir, tracking_uri, seed, sets, address=None,
                       storage=None, max_failures=0, checkpoint_every_s=10.0, scheduler=None,
                       resume=False, saved=None, objective="robust", seeds=1, eval_profile="standard",
                       eval_examples=1000, compile_model=False, final_checkpoint="last"):
    """Every check that can fail runs here, before anything is written or a trial runs. A local
    Ray is started later (by run_sweep); a cluster given by --address is connected to here, to
    check what it has."""
    import torch

    from search_spaces import SPACES
    from trainables.config import ConfigError, TrialConfig
    from trainables.data import DATASETS, DatasetUnavailable, load_dataset
    from trainables.methods import METHODS
    from trainables.models import MODELS
    from trainables.trial import build_method

    from orchestrator.preconditions import (
        PreconditionFailed, check_data_dir, check_local_storage, check_output_folder,
    )
    from orchestrator.sweep import OBJECTIVES, SCHEDULERS, SweepRequest, default_scheduler
    from orchestrator.validation import check_fixed

    if method not in METHODS or method not in SPACES:
        raise BadInput(f"unknown method {method!r}; known: {', '.join(n for n in METHODS if n in SPACES)}")
    if dataset not in DATASETS:
        raise BadInput(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if model not in MODELS:
        raise BadInput(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    if cpus_per_trial is None:
        cpus_per_trial = _default_cpus_per_trial(address, trials * seeds, gpus, gpus_per_trial)
    for flag, value in (("--trials", trials), ("--epochs", epochs), ("--cpus-per-trial", cpus_per_trial)):
        if value < 1:
            raise BadInput(f"{flag} must be at least 1 (got {value})")
    try:
        check_data_dir(dataset, data_dir)
        check_output_folder("--results-dir", results_dir)
        check_local_storage(storage)
    except PreconditionFailed as error:
        raise BadInput(str(error)) from None
    if max_failures < 0:
        raise BadInput(f"--max-failures must be at least 0 (got {max_failures})")
    if not checkpoint_every_s >= 0:  # also refuses nan
        raise BadInput(f"--checkpoint-every must be at least 0 seconds (got {checkpoint_every_s:g})")
    if objective not in OBJECTIVES:
        raise BadInput(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if seeds < 1:
        raise BadInput(f"--seeds must be at least 1 (got {seeds})")
    from trainables.evaluate import PROFILES

    if eval_profile not in PROFILES:
        raise BadInput(f"--eval {eval_profile!r}: choose one of {', '.join(PROFILES)}")
    if eval_examples < 0:
        raise BadInput(f"--eval-examples must be at least 0 (got {eval_examples})")
    # ASHA would judge each seed replicate alone, which is what --seeds is there to avoid.
    scheduler = scheduler or ("fifo" if seeds > 1 else default_scheduler(epochs))
    if scheduler not in SCHEDULERS:
        raise BadInput(f"--scheduler {scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
    name = name or f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name.startswith("."):
        raise BadInput(f"--name {name!r} must be a plain folder name")
    sweep_dir = Path(results_dir) / name
    if sweep_dir.exists() and saved is None:
        raise BadInput(f"{sweep_dir} already exists; pick another --name (or continue it with --resume)")
    if saved is not None:
        _check_tune_state(storage, sweep_dir, name)
    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        fixed = parse_sets(sets, method)
        check_fixed(method, DATASETS.get(dataset)[1], fixed)
        base = TrialConfig.from_flat({
            "method": method, "dataset": dataset, "data_dir": data_dir or "", "model": model,
            "epochs": epochs, "seed": seed, "threads": cpus_per_trial,
            "eval_profile": eval_profile, "eval_examples": eval_examples, "compile": compile_model,
            "final_checkpoint": final_checkpoint,
        }).to_flat()
        fixed_config = TrialConfig.from_flat({**base, **fixed})  # a method's dataclass refuses here
        check_tracking_uri(tracking_uri)
        data = load_dataset(TrialConfig.from_flat(base).data)  # offline downloads fail here, once
        # What a method's constructor refuses (an unknown optimizer, ATLD's smoothing for this
        # many classes) fails here, once, rather than in every trial: built on the CPU and dropped.
        build_method(fixed_config, data, torch.device("cpu"))
    except (ConfigError, ValueError, TrackingUnreachable, DatasetUnavailable) as error:
        raise BadInput(str(error)) from None
    address, gpus, storage, where = _placement(address, gpus, gpus_per_trial, cpus_per_trial,
                                               storage, sweep_dir, name, saved is not None)
    return SweepRequest(
        method=method, name=name, results_dir=Path(results_dir), tracking_uri=tracking_uri,
        trials=trials, base=base, fixed=fixed, family=data.family, gpus=gpus,
        gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, seed=seed,
        storage=storage, address=address, max_failures=max_failures,
        checkpoint_every_s=checkpoint_every_s, scheduler=scheduler,
        resume=saved, where=where, objective=objective, seeds=seeds,
    )


def _check_tune_state(storage: str | None, sweep_dir: Path, name: str) -> None:
    """Before Ray starts and Tune unpickles the sweep's saved state: could anyone else have written it?"""
    from orchestrator.preconditions import PreconditionFailed, check_tune_state_trusted
    from orchestrator.storage import default_storage, normalise

    try:
        check_tune_state_trusted(normalise(storage or default_storage(sweep_dir)), name)
    except PreconditionFailed as error:
        raise BadInput(str(error)) from None


def _default_cpus_per_trial(address: str | None, trials: int, gpus: float | None,
                            gpus_per_trial: float) -> int:
    """On this machine, its cores shared by the trials that can run at once: a lone trial (or
    fewer trials than cores) gets the cores no other trial could use. On a cluster, 1."""
    from orchestrator.cluster import concurrency, local_cluster, resolve_address

    if resolve_address(address) is not None:
        return 1
    machine = local_cluster()
    gpus = machine.max_gpus if gpus is None else gpus
    slots = concurrency(gpus, gpus_per_trial) if gpus > 0 and gpus_per_trial > 0 else None
    return max(1, int(machine.largest_node_cpus) // max(1, min(trials, slots or trials)))


def _placement(address, gpus, gpus_per_trial, cpus_per_trial, storage, sweep_dir, name, resume):
    """(address, GPUs to use, storage, where): the cluster is connected to (or this machine
    measured) and asked whether it can give what was asked for."""
    from orchestrator.cluster import (
        ClusterError, check_storage, connect, disconnect, local_cluster, plan_gpus, resolve_address,
    )
    from orchestrator.storage import default_storage, experiment_path, normalise

    address = resolve_address(address)
    try:
        cluster = local_cluster() if address is None else connect(address)
        gpus = plan_gpus(cluster, gpus, gpus_per_trial, cpus_per_trial)
        storage = normalise(storage or default_storage(sweep_dir))
        check_storage(storage, cluster)
        if resume:
            _check_restorable(experiment_path(storage, name))
    except ClusterError as error:
        disconnect()
        raise BadInput(str(error)) from None
    return address, gpus, storage, cluster.where


def _check_restorable(path: str) -> None:
    from ray import tune

    from orchestrator.cluster import ClusterError

    if not tune.Tuner.can_restore(path):
        raise ClusterError(f"--resume: Tune saved no state at {path}; start the sweep again under a new --name")


def _print_best(rows: list[dict[str, Any]], top: int = 5) -> None:
    """The best trials by the search objective (validation), with their test numbers."""
    finished = [r for r in rows if r["status"] == "FINISHED"]
    failed = len([r for r in rows if r["status"] == "FAILED"])
    click.echo(f"\n[orch] {len(finished)} finished, {failed} failed, "
               f"{len(rows) - len(finished) - failed} stopped early")
    if not finished:
        return
    from trainables.selection import STRONG_METRIC

    finished.sort(key=lambda r: r[STRONG_METRIC], reverse=True)
    hp_names = sorted({k for r in finished for k in r if k.startswith("hp_") and r[k] is not None})
    upper = finished[0]["robust_is_upper_bound"]
    header = ["trial", "val_robust", "test_clean", "test_robust" + (" (upper bound)" if upper else "")] \
        + [h[3:] for h in hp_names]
    table = [header] + [
        [r["trial_id"], f"{r[STRONG_METRIC]:.3f}", f"{r['clean_acc']:.3f}", f"{r['robust_acc']:.3f}"]
        + [_fmt(r.get(h)) for h in hp_names]
        for r in finished[:top]
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    click.echo(f"best trials (ranked by validation robust accuracy at ε={finished[0]['target_eps']:.4g}, "
               "worst case of PGD-CE and APGD-DLR):")
    if upper:
        click.echo(f"  test robust: {finished[0]['eval_profile']} profile, no AutoAttack: an upper bound")
    for row in table:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@main.command()
@click.argument("target")
@click.option("--eval", "eval_profile", default="standard", show_default=True,
              help="quick, standard or full (see `orch sweep --help`).")
@click.option("--eval-examples", default=1000, show_default=True, type=int,
              help="Test points to attack (0: the whole test split).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (for a run id). Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
def evaluate(target: str, eval_profile: str, eval_examples: int, tracking_uri: str | None) -> None:
    """Re-evaluate a finished trial without retraining. TARGET is a trial's checkpoint folder or
    its MLflow run id; for a run id the results are logged to that run under eval/<profile>/."""
    from mlflow.exceptions import MlflowException

    from orchestrator.preconditions import PreconditionFailed, evaluate_target
    from orchestrator.reevaluate import load_target, log_to_run, reevaluate
    from trainables.checkpoint import CheckpointRefused
    from trainables.evaluate import PROFILES

    if eval_profile not in PROFILES:
        raise BadInput(f"--eval {eval_profile!r}: choose one of {', '.join(PROFILES)}")
    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        where = evaluate_target(target, tracking_uri)
        if where.run_id is not None:
            check_tracking_uri(tracking_uri)
        state, run_id = load_target(where, tracking_uri)
    except MlflowException as error:
        raise BadInput(f"cannot load {target!r}: read as an MLflow run id in {tracking_uri}: "
                       f"{str(error).splitlines()[0]}") from None
    except (TrackingUnreachable, PreconditionFailed, CheckpointRefused) as error:
        raise BadInput(f"cannot load {target!r}: {str(error).splitlines()[0]}") from None
    click.echo(f"[orch] evaluating {target} ({state['config']['method']}, {eval_profile} profile, "
               f"{eval_examples or 'all'} test points)")
    evaluation, target_eps = reevaluate(state, eval_profile, eval_examples)
    click.echo(f"{'attack':<12}{'path':<9}{'norm':<6}{'eps':>8}{'accuracy':>10}")
    for point in evaluation.curve:
        click.echo(f"{point.attack:<12}{point.path:<9}{point.norm:<6}{point.eps:>8.4f}{point.accuracy:>10.3f}")
    click.echo(f"clean {evaluation.clean_acc:.3f}, robust (worst case at ε={target_eps:.4g}) "
               f"{evaluation.robust_acc:.3f}" + (f", AutoAttack {evaluation.autoattack_acc:.3f}"
                                                 if evaluation.autoattack_acc is not None else ""))
    click.echo("sanity: " + ", ".join(f"{k}={v}" for k, v in evaluation.sanity.items()))
    for check, value in evaluation.sanity.items():
        if value is False and check != "trusted":
            click.echo(f"[orch] WARNING: sanity check {check} failed: robust accuracy is untrusted")
    if run_id is not None:
        log_to_run(tracking_uri, run_id, eval_profile, evaluation)
        click.echo(f"[orch] logged to MLflow run {run_id} under eval/{eval_profile}/")


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


@main.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", default="report", show_default=True,
              help="Folder for the figures (PNG and PDF), report.html, pareto.parquet and latent.parquet.")
@click.option("--latent-examples", default=500, show_default=True, type=int,
              help="Test points for the latent analyses of each method's best trial (t-SNE on at most 300); 0 skips them.")
def report(sweep_dirs: tuple[str, ...], output: str, latent_examples: int) -> None:
    """Figures, ranking, Pareto fronts and latent analyses of one or more sweeps, as one HTML page."""
    from orchestrator.report import HTML_FILE, ReportError, write_report

    if latent_examples < 0:
        raise BadInput(f"--latent-examples must be at least 0 (got {latent_examples})")
    if Path(output).exists() and not Path(output).is_dir():
        raise BadInput(f"-o {output} is a file, not a folder")
    dirs = [Path(d) for d in sweep_dirs]
    try:
        written = write_report(dirs, Path(output), latent_examples)  # checks all before writing
    except ReportError as error:
        raise BadInput(str(error)) from None
    for note in written.notes:
        click.echo(f"[orch] note: {note}")
    click.echo(f"[orch] wrote {len(written.figures)} figures (PNG + PDF) and {Path(output) / HTML_FILE}")


@main.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path())
def compare(sweep_dirs: tuple[str, ...]) -> None:
    """Print the ranking table of one or more sweeps: each method's best configuration."""
    from orchestrator.report import ReportError, compare_text

    try:
        click.echo(compare_text([Path(d) for d in sweep_dirs]))
    except ReportError as error:
        raise BadInput(str(error)) from None


@main.command("validate-cluster")
@click.argument("config", default="cluster.yaml", type=click.Path(dir_okay=False))
def validate_cluster(config: str) -> None:
    """Check a Ray cluster-launcher YAML offline, as `ray up` would: the schema inside the ray
    package and Ray's own config validation. Exit code 2 and one line per problem if invalid;
    a warning line for what an AWS config leaves open (SSH from anywhere, default roles)."""
    from orchestrator.cluster_config import validate_cluster_file

    verdict = validate_cluster_file(Path(config))
    for warning in verdict.warnings:
        click.echo(f"orch: warning: {config}: {warning}", err=True)
    for problem in verdict.problems:
        click.echo(f"orch: error: {config}: {problem}", err=True)
    if verdict.problems:
        click.get_current_context().exit(2)
    click.echo(f"{config}: {verdict.summary}")


if __name__ == "__main__":
    sys.exit(main())

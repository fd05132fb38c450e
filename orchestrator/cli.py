"""`orch`: sweep robustness regularizers with Ray Tune + Optuna, record to MLflow and Parquet.

Click commands only: each parses its flags (the sweep's are defined once, in
`orchestrator.options`) and hands over to the package that does the work. Those packages import
torch, Ray and MLflow, which take seconds; each command imports them when it runs, so that
`orch --help` and a mistyped flag answer at once.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from orchestrator import options
from orchestrator.options import BadInput, shared, sweep_options

if TYPE_CHECKING:
    from orchestrator.report.benchmark import Leaderboard


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sweep latent-space adversarial-robustness regularizers (ER-Classifier, ATLD, AFD, TLA,
    ADR and baselines) with Ray Tune + Optuna; every trial is logged to MLflow and every
    robustness curve collated into Parquet."""


@main.command()
@click.argument("method")
@sweep_options
def sweep(method: str, **given) -> None:
    """Search METHOD's hyperparameters: train, attack and record every trial."""
    # Lazy (see the module docstring): torch, Ray and MLflow.
    from orchestrator.report.ranking import best_trials_text, sweep_summary
    from orchestrator.sweep.request import build_request
    from orchestrator.sweep.resume import load_sweep, resumed_settings
    from orchestrator.sweep.run import run_or_exit
    from orchestrator.tracking.runs import experiment_name

    ctx = click.get_current_context()
    settings, saved = {"method": method, **given}, None
    if given["resume"]:
        if not given["name"]:
            raise BadInput("--resume needs the --name of the sweep to continue")
        explicit = {key for key in settings if ctx.get_parameter_source(key) in
                    (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
        flags = {option.name: option.flag for option in options.SWEEP}
        try:
            saved = load_sweep(Path(given["results_dir"]) / given["name"])
            settings = resumed_settings(settings, explicit, saved, flags)
        except ValueError as error:
            raise BadInput(str(error)) from None
    request = build_request(settings, saved)
    started = time.time()
    click.echo(f"[orch] {'resuming sweep' if saved else 'sweep'} {request.name}: {request.method} on "
               f"{request.base['dataset']}, {request.trials} trials"
               f"{f' x {request.seeds} seeds' if request.seeds > 1 else ''} x {request.base['epochs']} epochs, "
               f"scheduler {request.scheduler}")
    click.echo(f"[orch] {request.resources_line}")
    rows = run_or_exit(request)
    click.echo(best_trials_text(rows))
    if request.seeds > 1 or request.objective != "robust":
        click.echo("\n" + sweep_summary(request.sweep_dir, pareto=request.objective != "robust"))
    sweep_dir = request.sweep_dir.resolve()
    click.echo(f"\n[orch] done in {time.time() - started:.0f} s. Results:")
    click.echo(f"  curves:  {sweep_dir / 'curves.parquet'}")
    click.echo(f"  trials:  {sweep_dir / 'trials.parquet'}")
    click.echo(f"  MLflow:  {request.tracking_uri} (experiment {experiment_name(request.base['dataset'])!r}, "
               f"parent run {request.name!r})")
    served = request.tracking_uri.startswith(("http://", "https://"))
    click.echo(f"  view:    {'open ' if served else 'mlflow ui --backend-store-uri '}{request.tracking_uri}")


@main.command()
@click.argument("preset")
@shared("data_dir", "seeds", "seed", data_dir={"help": "The dataset's folder, or the .npz file (mnist-cpu: e.g. "
                                                       "../shared/data/mnist-10k.npz). Must exist."},
        seeds={"help": "Seeds per method (mean ± std in the table)."}, seed={"help": "The first seed."})
@click.option("--methods", default=None, help="Comma-separated subset of the methods (default: every registered one).")
@shared("model", "epochs", "sets", "name", "results_dir", "tracking_uri", "gpus", "gpus_per_trial", "resume",
        model={"default": None, "help": "Override the preset's model."},
        epochs={"default": None, "type": int, "help": "Override the preset's epochs."},
        sets={"help": "Override a preset value or set a knob for every method; repeatable."},
        name={"help": "Folder under --results-dir. Default: reproduce-PRESET-YYYYmmdd-HHMMSS."},
        gpus={"help": "GPUs to use (default: all this machine has)."},
        resume={"help": "Continue reproduction --name: finished methods are kept, an interrupted one "
                        "continues from its checkpoints."})
def reproduce(preset: str, methods: str | None, model: str | None, epochs: int | None, sets: tuple[str, ...],
              name: str | None, results_dir: str, resume: bool, **given) -> None:
    """Run every method's paper-default configuration (no search) on PRESET (mnist-cpu, mnist,
    cifar10) with the standard evaluation, then write the measured-vs-claimed table
    (reproduce.md, reproduce.csv) and reproduce.html."""
    # Lazy (see the module docstring): torch, Ray and MLflow.
    from orchestrator.report import reproduce as report
    from orchestrator.sweep import campaign

    if preset not in report.PRESETS:
        raise BadInput(f"unknown preset {preset!r}; known: {', '.join(report.PRESETS)}")
    chosen = chosen_methods(methods, report.methods())
    if report.PRESETS[preset].needs_data_dir and given["data_dir"] is None:
        raise BadInput(f"preset {preset} needs --data-dir (the .npz file of the digits)")
    root = campaign.campaign_root(results_dir, name, f"reproduce-{preset}", resume)
    todo = [m for m in chosen if not (resume and campaign.finished_trials(root / m) >= given["seeds"])]
    requests = campaign.plan(  # every check before the first trial runs
        (root / m, lambda m=m: campaign.sweep_settings(report.PRESETS[preset], m, root, model=model,
                                                       epochs=epochs, sets=sets, **given)) for m in todo)
    click.echo(f"[orch] reproduce {preset} into {root}: {', '.join(chosen)} "
               f"({len(chosen) - len(requests)} already done), {given['seeds']} seed(s) each")
    started = time.time()
    campaign.run_all(requests, campaign_resume_command(root))
    written = report.write_outputs(root, preset, report.comparison_rows(root, chosen, report.PRESETS[preset].claims))
    click.echo("\n" + written[0].read_text())
    click.echo(f"[orch] done in {time.time() - started:.0f} s: " + ", ".join(str(p) for p in written))


@main.command()
@click.argument("preset")
@click.option("--methods", default=None, help="Comma-separated subset of the methods (default: every registered one).")
@click.option("--trials", default=None, type=int, help="Optuna trials per method (default: the preset's).")
@click.option("--seeds", default=None, type=int, help="Fresh seeds the chosen configuration is re-trained with (default: the preset's).")
@click.option("--epochs", default=None, type=int, help="Epochs of every trial (default: the preset's).")
@click.option("--test-examples", default=None, type=int,
              help="The first T test points, the same for every method (0: the whole test split; default: the preset's).")
@click.option("--continue-from", default=None, type=click.Path(file_okay=False),
              help="A benchmark folder or its committed records, from another machine: each method whose search "
                   "ended there (METHOD-search/ with sweep.json and trials.parquet) is not searched again, its "
                   "search is copied (refused when it ran with other settings); the attacks its seeds' "
                   "evaluations finished there (METHOD-evaluations/) are copied too, and a seed re-trained to "
                   "the same weights continues its evaluation from them.")
@shared("data_dir", "gpus", "gpus_per_trial", "cpus_per_trial", "address", "seed", "name", "results_dir",
        "tracking_uri", "surrogate_cache", "resume",
        name={"help": "Folder under --results-dir. Default: benchmark-PRESET-YYYYmmdd-HHMMSS."},
        surrogate_cache={"help": "Folder where the transfer attack's surrogate is kept once trained. Default: "
                                 "RESULTS_DIR/surrogates, shared by every benchmark there (run one method at a "
                                 "time, the methods train it once)."},
        seed={"help": "Seed of every search (its fresh seeds are SEED+1, SEED+2, ...)."},
        resume={"help": "Continue benchmark --name: finished searches and seeds are kept, an interrupted "
                        "sweep continues from its checkpoints."})
def benchmark(preset: str, methods: str | None, trials: int | None, seeds: int | None, epochs: int | None,
              test_examples: int | None, continue_from: str | None, name: str | None, results_dir: str,
              tracking_uri: str | None, resume: bool, **given) -> None:
    """Search every method on PRESET (digits, mnist-cpu, mnist, cifar10) with the same budget,
    re-train each one's best configuration (chosen on validation) on fresh seeds, evaluate them on
    the same test points, and write the leaderboard with 95% intervals and paired verdicts
    against madry (benchmark.md, benchmark.csv, benchmark.html, figures; MLflow)."""
    # Lazy (see the module docstring): torch, Ray and MLflow.
    import dataclasses

    from orchestrator.report import benchmark as board
    from orchestrator.report import reproduce
    from orchestrator.sweep import benchmark as stages
    from orchestrator.sweep import campaign
    from orchestrator.tracking.benchmark import log_leaderboard
    from orchestrator.tracking.store import default_tracking_uri

    if preset not in board.BENCHMARKS:
        raise BadInput(f"unknown preset {preset!r}; known: {', '.join(board.BENCHMARKS)}")
    overrides = {"trials": trials, "seeds": seeds, "epochs": epochs, "test_examples": test_examples}
    for flag, value in overrides.items():
        if value is not None and value < (0 if flag == "test_examples" else 1):
            raise BadInput(f"--{flag.replace('_', '-')} must be at least {0 if flag == 'test_examples' else 1} (got {value})")
    chosen = chosen_methods(methods, reproduce.methods())
    settings = dataclasses.replace(board.BENCHMARKS[preset], **{k: v for k, v in overrides.items() if v is not None})
    if settings.needs_data_dir and given["data_dir"] is None:
        raise BadInput(f"preset {preset} needs --data-dir (the .npz file of the digits)")
    root = campaign.campaign_root(results_dir, name, f"benchmark-{preset}", resume)
    given = {**given, "tracking_uri": tracking_uri or default_tracking_uri(),
             "surrogate_cache": given["surrogate_cache"] or str(Path(results_dir) / "surrogates")}
    if not resume:  # every search checked (data, cluster, tracking) before anything is written
        campaign.plan((stages.search_dir(root, m), lambda m=m: stages.search_settings(settings, m, root, given))
                      for m in chosen)
    if continue_from and not Path(continue_from).is_dir():
        raise BadInput(f"--continue-from {continue_from}: no such folder (a benchmark folder or its committed records)")
    if continue_from and not resume:  # refused before the benchmark's folder is made
        stages.searches_to_adopt(root, settings, chosen, given, Path(continue_from))
    settings, chosen = stages.saved_preset(root, settings, chosen, resume)
    if continue_from:
        stages.continue_from(root, settings, chosen, given, Path(continue_from))
    click.echo(f"[orch] benchmark {preset} into {root}: {', '.join(chosen)}; {settings.trials} trials, "
               f"{settings.seeds} fresh seeds, {settings.epochs} epochs, "
               f"{settings.test_examples or 'all'} test points per method")
    started = time.time()
    stages.run(root, settings, chosen, given, campaign_resume_command(root))
    written, merged = write_leaderboard([root], root, f"`orch benchmark {preset}` ({root.name}): {settings.why}")
    log_leaderboard(given["tracking_uri"], root.name, merged, written)
    click.echo(f"[orch] done in {time.time() - started:.0f} s: " + ", ".join(str(p) for p in written[:3]))


@main.command()
@click.argument("benchmark_dirs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for benchmark.md, benchmark.csv, benchmark.html and the figures.")
@click.option("--reference", default=None, metavar="METHOD",
              help="The method every other is compared with (paired difference in worst-case accuracy, "
                   "McNemar's p, verdict), e.g. to ask whether trades is better than tla. Default: madry.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="Also log the merged leaderboard to this MLflow store, as `orch benchmark` logs its own: a "
                   "parent run (the tables and figures as artifacts) with one child run per method (its "
                   "numbers, verdict and flags). Default: not logged.")
@click.option("--name", default=None,
              help="The MLflow parent run's name (with --tracking-uri); logging again under the same name "
                   "updates its runs. Default: the output folder's name.")
def leaderboard(benchmark_dirs: tuple[str, ...], output: str, reference: str | None, tracking_uri: str | None,
                name: str | None) -> None:
    """One leaderboard from several benchmark folders' per-example records (e.g. one method per
    machine or day), refused when they were measured on different test points or ε."""
    # Lazy (see the module docstring): MLflow.
    from orchestrator.tracking.benchmark import log_leaderboard
    from orchestrator.tracking.runs import experiment_name

    if name is not None and tracking_uri is None:
        raise BadInput("--name names the MLflow run: give --tracking-uri too")
    run_name = name or Path(output).resolve().name
    if tracking_uri:
        options.check_name("--name" if name else "--output", run_name)
    written, merged = write_leaderboard([Path(d) for d in benchmark_dirs], Path(output),
                                        "orch leaderboard of " + ", ".join(benchmark_dirs), reference)
    if tracking_uri:
        log_leaderboard(tracking_uri, run_name, merged, written)
        click.echo(f"[orch] logged to MLflow: {tracking_uri} (experiment {experiment_name(merged.dataset)!r}, "
                   f"parent run {run_name!r}, compared with {merged.reference})")


def write_leaderboard(dirs: list[Path], out: Path, title: str,
                      reference: str | None = None) -> tuple[list[Path], Leaderboard]:
    """Writes and prints the leaderboard of `dirs` into `out`, every method compared with
    `reference` (default madry): (files written, the report.benchmark.Leaderboard); BadInput when
    they cannot merge."""
    # Lazy (see the module docstring): pandas, scipy, matplotlib.
    from orchestrator.report import benchmark as board
    from orchestrator.report.leaderboard import RecordsMismatch

    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise BadInput(f"{missing[0]} is not a folder")
    try:
        merged = board.build(dirs, reference)
    except (board.BenchmarkError, RecordsMismatch) as error:
        raise BadInput(str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    title += f" ({merged.data_text()}, target ε {merged.target_eps:g})"
    written = board.write(out, title, merged)
    click.echo("\n" + written[0].read_text())
    return written, merged


def campaign_resume_command(root: Path) -> str:
    """The command that continues this reproduce or benchmark run: its flags as the user gave
    them, with the run's --name and --resume (not a sweep's own --resume, which would continue
    one stage and leave the others undone)."""
    ctx = click.get_current_context()
    words = ["orch", ctx.info_name]
    for param in ctx.command.params:
        if param.name in ("name", "resume") or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0])
        else:
            words += [w for v in (value if param.multiple else [value]) for w in (param.opts[0], str(v))]
    return shlex.join([*words, "--name", root.name, "--resume"])


def chosen_methods(flag: str | None, known: list[str]) -> list[str]:
    """`--methods a,b` checked against the registered methods; all of them when not given."""
    chosen = flag.split(",") if flag else list(known)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise BadInput(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


@main.command()
@click.argument("target")
@shared("eval_profile", "eval_examples", eval_profile={"help": "quick, standard or full (see `orch sweep --help`)."},
        eval_examples={"help": "Test points to attack (0: the whole test split)."})
@shared("tracking_uri", tracking_uri={"help": "MLflow tracking URI (for a run id). Default: "
                                              "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."})
@click.option("--surrogate", default=None, metavar="CHECKPOINT|RUN_ID",
              help="The model the transfer attack is crafted on (standard and full profiles): a checkpoint "
                   "folder or MLflow run id, e.g. another seed of the same configuration. Default: a "
                   "PGD-trained model of the trial's architecture, trained here as a sweep does.")
def evaluate(target: str, eval_profile: str, eval_examples: int, tracking_uri: str | None,
             surrogate: str | None) -> None:
    """Re-evaluate a finished trial without retraining. TARGET is a trial's checkpoint folder or
    its MLflow run id; for a run id the results are logged to that run under eval/<profile>/."""
    # Lazy (see the module docstring): torch and MLflow.
    from orchestrator.tracking import evaluate as reevaluation
    from orchestrator.tracking.store import default_tracking_uri

    for name, value in (("eval_profile", eval_profile), ("eval_examples", eval_examples)):
        if problem := options.BY_NAME[name].problem(value):
            raise BadInput(problem)
    try:
        state, run_id = reevaluation.load(target, tracking_uri)
        surrogate_state = reevaluation.load(surrogate, tracking_uri)[0] if surrogate else None
    except reevaluation.LoadFailed as error:
        raise BadInput(str(error)) from None
    click.echo(f"[orch] evaluating {target} ({state['config']['method']}, {eval_profile} profile, "
               f"{eval_examples or 'all'} test points)")
    evaluation, target_eps = reevaluation.reevaluate(state, eval_profile, eval_examples, surrogate_state)
    click.echo(reevaluation.evaluation_text(evaluation, target_eps))
    if run_id is not None:
        reevaluation.log_to_run(tracking_uri or default_tracking_uri(), run_id, eval_profile, evaluation)
        click.echo(f"[orch] logged to MLflow run {run_id} under eval/{eval_profile}/")


@main.command()
def methods() -> None:
    """Every method, its search space and its paper defaults."""
    # Lazy (see the module docstring): torch.
    from orchestrator.sweep.space import describe_methods

    click.echo("\n".join(describe_methods()))


@main.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
def collate(sweep_dirs: tuple[str, ...], output: str) -> None:
    """Merge the curves of several sweeps into one Parquet file."""
    # Lazy (see the module docstring): pyarrow.
    from orchestrator.records.parquet import collate as collate_curves

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
    # Lazy (see the module docstring): matplotlib, pandas, torch.
    from orchestrator.report.load import ReportError
    from orchestrator.report.write import HTML_FILE, write_report

    if latent_examples < 0:
        raise BadInput(f"--latent-examples must be at least 0 (got {latent_examples})")
    if Path(output).exists() and not Path(output).is_dir():
        raise BadInput(f"-o {output} is a file, not a folder")
    try:
        written = write_report([Path(d) for d in sweep_dirs], Path(output), latent_examples)  # checks all first
    except ReportError as error:
        raise BadInput(str(error)) from None
    for note in written.notes:
        click.echo(f"[orch] note: {note}")
    click.echo(f"[orch] wrote {len(written.figures)} figures (PNG + PDF) and {Path(output) / HTML_FILE}")


@main.command()
@click.argument("sweep_dirs", nargs=-1, required=True, type=click.Path())
def compare(sweep_dirs: tuple[str, ...]) -> None:
    """Print the ranking table of one or more sweeps: each method's best configuration."""
    # Lazy (see the module docstring): pandas.
    from orchestrator.report.load import ReportError
    from orchestrator.report.ranking import compare_text

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
    # Lazy (see the module docstring): Ray's autoscaler schema.
    from orchestrator.cluster.launcher import validate_cluster_file

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

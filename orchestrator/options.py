"""Every option of `orch sweep`, defined once.

An `Option` is a flag's whole story: its click declaration (flag, default, type, help), the simple
rule its value must meet (a minimum, a list of choices), and where its value lands (`to`: a field
of the trial config, a field of the `SweepRequest`, or the command itself). The click options of
`orch sweep`, `orch reproduce` and `orch benchmark`, the settings saved for `--resume`, and the
settings a reproduction or benchmark passes to each of its sweeps are all derived from `SWEEP`;
`sweep.request.build_request` turns the settings into a checked `SweepRequest`.
`tests/test_options.py` walks every option from the command line to where `to` says it lands, so
an option that is not wired (or has no example value there) fails a test.

This module imports only click: `orch --help` and a bad flag answer at once.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import click


class BadInput(click.ClickException):
    """One line on stderr, exit code 2, and nothing written."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"orch: error: {self.format_message()}", err=True)


@dataclass(frozen=True)
class Option:
    name: str  # the settings key (click's parameter name)
    flag: str
    default: Any
    help: str
    type: Any = None  # click type; None: click infers it from the default
    to: str = "command"  # "config:<TrialConfig key>", "request:<SweepRequest field>" or "command"
    minimum: float | None = None  # the smallest value allowed (checked with the flag's name)
    choices: Sequence[str] = ()  # allowed values (checked with the flag's name)
    is_flag: bool = False
    multiple: bool = False
    metavar: str | None = None
    show_default: bool = True

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this option, as one line; None if nothing."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f"{self.flag} {value!r}: choose one of {', '.join(self.choices)}"
        # `not value >= minimum` also refuses nan.
        if self.minimum is not None and not value >= self.minimum:
            unit = " seconds" if self.name.endswith("_s") else ""
            return f"{self.flag} must be at least {self.minimum:g}{unit} (got {value:g})"
        return None

    def click_option(self) -> Callable:
        extra: dict[str, Any] = {"is_flag": True} if self.is_flag else {"multiple": self.multiple}
        if self.type is not None:
            extra["type"] = self.type
        return click.option(self.flag, self.name, default=self.default, help=self.help,
                            show_default=self.show_default and self.default not in (None, ()),
                            metavar=self.metavar, **extra)


# The evaluation profiles (trainables.evaluate.PROFILES), spelled here so that click stays light;
# tests/test_options.py checks they agree.
EVAL_PROFILES = ("quick", "standard", "full")

SWEEP = (
    Option("dataset", "--dataset", "digits", to="config:dataset",
           help="digits (embedded, offline), npz (with --data-dir FILE.npz), mnist, fashion-mnist, "
                "cifar10, cifar100, svhn (downloaded into --data-dir)."),
    Option("data_dir", "--data-dir", None, to="config:data_dir",
           help="Folder torchvision downloads into (default ./data), or the .npz file for --dataset "
                "npz. Must exist; a relative path is made absolute before any trial starts."),
    Option("model", "--model", "small-cnn", to="config:model",
           help="Model architecture (see `orch methods`)."),
    Option("trials", "--trials", 8, to="request:trials", minimum=1,
           help="Number of Optuna trials (configurations)."),
    Option("epochs", "--epochs", 10, to="config:epochs", minimum=1,
           help="Training epochs per trial."),
    Option("gpus", "--gpus", None, type=float, to="request:gpus",
           help="GPUs the sweep may use; bounds concurrency. Default: all this machine has (0 on CPU)."),
    Option("gpus_per_trial", "--gpus-per-trial", 1.0, to="request:gpus_per_trial",
           help="GPUs per trial; fractions (0.5, 0.25) share a GPU."),
    Option("cpus_per_trial", "--cpus-per-trial", None, type=int, to="config:threads", minimum=1,
           help="CPU cores (and torch threads) per trial. Default: on this machine, its cores shared "
                "by the trials that run at once (a lone trial gets them all; seeds of one configuration "
                "that outnumber the cores all run at once, one thread each); 1 on a cluster."),
    Option("name", "--name", None, to="request:name",
           help="Sweep name (folder under --results-dir, MLflow parent run). Default: METHOD-YYYYmmdd-HHMMSS."),
    Option("results_dir", "--results-dir", "./results", to="request:results_dir",
           help="Where sweep folders (Parquet, Ray checkpoints) are written."),
    Option("surrogate_cache", "--surrogate-cache", None, to="config:eval_surrogate_cache",
           help="Folder where the transfer attack's surrogate (a PGD-trained model, standard and full "
                "profiles) is kept once trained and loaded by every later trial of the same setup. "
                "Default: RESULTS_DIR/surrogates."),
    Option("evaluations_dir", "--evaluations-dir", None, to="config:eval_progress_dir",
           help="Folder where each trial's final evaluation keeps every attack it finished, so a trial "
                "killed during it continues from there. Inside, an evaluation's folder is named by a hash "
                "of the weights attacked, the test points and the attack plan, so sweeps (and machines, "
                "once it is copied) may share one: a model trained to the same weights is not attacked "
                "again. Default: RESULTS_DIR/NAME/evaluations."),
    Option("tracking_uri", "--tracking-uri", None, to="request:tracking_uri",
           help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."),
    Option("seed", "--seed", 0, to="config:seed",
           help="Seed of training and of the Optuna sampler."),
    Option("sets", "--set", (), to="request:fixed", multiple=True, metavar="KEY=VALUE",
           help="Fix a searched hyperparameter or set a knob, e.g. --set train_eps=8/255 --set "
                "prior=cauchy. Repeatable; see `orch methods`."),
    Option("address", "--address", None, to="request:address",
           help="A running Ray cluster: host:port or auto. Default: $RAY_ADDRESS (set under `ray job "
                "submit`), else a local Ray on this machine."),
    Option("storage", "--storage", None, to="request:storage",
           help="Tune's storage for checkpoints (and a copy of the Parquet files): s3://..., gs://... "
                "or a path every node sees. Default: <results-dir>/<name>/ray, one machine only."),
    Option("max_failures", "--max-failures", 0, to="request:max_failures", minimum=0,
           help="Retries of a trial that dies (exception, killed worker, lost node), each from its "
                "last checkpoint."),
    Option("checkpoint_every_s", "--checkpoint-every", 10.0, type=float, to="request:checkpoint_every_s",
           minimum=0,
           help="Seconds between a trial's checkpoints (its last epoch is always saved): what a crash "
                "may cost in training, against the per-epoch cost of saving. 0: every epoch."),
    Option("scheduler", "--scheduler", None, to="request:scheduler", choices=("fifo", "asha"),
           help="fifo (every trial runs all epochs) or asha (stop weak trials early on val_robust_acc). "
                "Default: asha above 3 epochs, else fifo."),
    Option("resume", "--resume", False, is_flag=True, to="request:resume",
           help="Continue sweep --name whose driver died: finished trials stay, the rest continue "
                "from their checkpoints."),
    Option("objective", "--objective", "robust", to="request:objective", choices=("robust", "clean+robust"),
           help="robust: maximise the validation robust accuracy at the target ε. clean+robust: "
                "multi-objective Optuna on validation clean and robust accuracy; the Pareto front is kept."),
    Option("seeds", "--seeds", 1, to="request:seeds", minimum=1,
           help="Train every configuration with K seeds (--seed, --seed+1, ...): --trials x K trials; "
                "Optuna sees the mean, results show mean ± std."),
    Option("eval_profile", "--eval", "standard", to="config:eval_profile", choices=EVAL_PROFILES,
           help="Final test evaluation. standard: clean, FGSM, PGD, CW-L∞ and a transfer attack over "
                "the ε grid; at the target ε PGD and CW with restarts, then AutoAttack on the points "
                "still robust. quick: no CW, no restarts, no AutoAttack (its robust accuracy is "
                "labelled an upper bound). full: adds PGD-L2, MIM, Square (and transfer) over the "
                "grid. Sanity checks run in every profile."),
    Option("eval_examples", "--eval-examples", 1000, to="config:eval_examples", minimum=0,
           help="Test points attacked for the final curve (0: the whole test split)."),
    Option("compile_model", "--compile", False, is_flag=True, to="config:compile",
           help="torch.compile every trial's model on CUDA (its first batches compile it); no effect on CPU."),
    Option("final_checkpoint", "--final-checkpoint", "last", to="config:final_checkpoint",
           choices=("last", "best"),
           help="Weights the final test evaluation attacks: last (the last epoch's) or best (the epoch "
                "with the best validation robust accuracy). Recorded per trial."),
)
BY_NAME = {option.name: option for option in SWEEP}


def sweep_options(func: Callable) -> Callable:
    """`orch sweep`'s click options, in the order of `SWEEP` (help lists them in that order)."""
    for option in reversed(SWEEP):
        func = option.click_option()(func)
    return func


def shared(*names: str, **changed: dict[str, Any]) -> Callable:
    """The click options `names` of `SWEEP` for another command; `changed[name]` replaces some of
    an option's fields there (its help, its default)."""
    def decorate(func: Callable) -> Callable:
        for name in reversed(names):
            func = replace(BY_NAME[name], **changed.get(name, {})).click_option()(func)
        return func
    return decorate


def check_name(flag: str, name: str) -> None:
    """A run's name becomes a folder and is matched in MLflow's search filters, where a quote ends
    the string: BadInput for a path, a hidden name or a quote."""
    if any(c in name for c in "/\\'\"`") or name.startswith(".") or not name.strip():
        raise BadInput(f"{flag} {name!r} must be a plain folder name (no /, \\, quotes or leading .)")


def defaults() -> dict[str, Any]:
    """Every sweep setting at its default, as `orch sweep` would parse an empty command line."""
    return {option.name: option.default for option in SWEEP}


def check(settings: dict[str, Any]) -> None:
    """BadInput for the first setting that breaks its option's rule."""
    for option in SWEEP:
        problem = option.problem(settings.get(option.name))
        if problem:
            raise BadInput(problem)

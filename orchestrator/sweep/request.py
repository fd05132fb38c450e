"""A sweep's request: the command's settings, every one checked before anything is written or a
trial runs, turned into the `SweepRequest` that `sweep.run` runs.

The simple rules (a minimum, a list of choices) are the options' own (`orchestrator.options`);
what needs the method, the data, the tracking store or the cluster is checked here. A local Ray is
started later (by run_sweep); a cluster given by --address is connected to here, to check what it
has. Paths are made absolute here: a trial runs in its own folder, not the command's.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from ray import tune

from orchestrator import options
from orchestrator.cluster.connect import (
    ClusterError, check_storage, concurrency, connect, disconnect, local_cluster, plan_gpus, resolve_address)
from orchestrator.options import BadInput, check_name
from orchestrator.records.results import NO_TEST_EVALUATION, SweepInfo
from orchestrator.records.storage import default_storage, experiment_path, normalise
from orchestrator.sweep.preconditions import (
    PreconditionFailed, check_data_dir, check_local_storage, check_output_folder, check_tune_state_trusted)
from orchestrator.sweep.resume import SavedSweep
from orchestrator.sweep.space import check_fixed
from orchestrator.tracking.store import TrackingUnreachable, check_tracking_uri, default_tracking_uri
from search_spaces import SPACES
from trainables.config import ConfigError, TrialConfig, coerce, field_types, is_eps_key
from trainables.data import DATASETS, DatasetUnavailable, eps_scale, load_dataset
from trainables.methods import METHODS
from trainables.models import MODELS
from trainables.selection import SEARCH_METRIC
from trainables.trial import build_method

# Validation robust accuracy at the target ε that Optuna maximises: at a trial's last epoch the
# per-example worst case of PGD-CE and APGD-DLR with restarts (trainables.selection), so the search
# does not reward gradient masking. ASHA compares trials at the same epoch on RUNG_METRIC, PGD-CE
# with one restart and val_steps steps: cheap, and no more than a first cut.
OBJECTIVE = SEARCH_METRIC
# --objective: the metrics Optuna maximises. Robust accuracy comes last in both, so a report
# reads it as a study's last objective value.
OBJECTIVES = {"robust": [OBJECTIVE], "clean+robust": ["val_clean_acc", OBJECTIVE]}
SCHEDULERS = ("fifo", "asha")
FEW_EPOCHS = 3  # longer sweeps stop weak trials early (ASHA) unless --scheduler fifo


@dataclass(frozen=True)
class SweepRequest:
    method: str
    name: str
    results_dir: Path
    tracking_uri: str
    trials: int
    base: dict[str, Any]  # the flat trial config every trial shares
    fixed: dict[str, Any]  # --set values: constants for every trial, never searched
    family: str
    gpus: float  # 0: CPU only
    gpus_per_trial: float
    cpus_per_trial: int
    seed: int
    storage: str = ""  # Tune's storage_path; "" = default_storage(sweep_dir)
    address: str | None = None  # a running Ray cluster; None = a local Ray started here
    max_failures: int = 0  # retries of a trial that dies, each from its last checkpoint
    checkpoint_every_s: float = 10.0  # a trial saves its state at most this often (0: every epoch)
    scheduler: str = "fifo"
    resume: SavedSweep | None = None  # set: continue this sweep (its driver died)
    settings: dict[str, Any] = field(default_factory=dict)  # the command's options, for --resume
    where: str = "this machine"  # for messages: this machine or the cluster at ADDRESS
    objective: str = "robust"  # a key of OBJECTIVES
    seeds: int = 1  # seed replicates per configuration (sweep.searchers)
    # Ray CPUs each trial reserves, when not cpus_per_trial: replicates of one configuration that
    # outnumber this machine's cores all run at once on a share of them (_seed_share).
    cpu_share: float | None = None

    @property
    def sweep_dir(self) -> Path:
        return self.results_dir / self.name

    @property
    def storage_path(self) -> str:
        return self.storage or default_storage(self.sweep_dir)

    @property
    def eps_scale(self) -> float:
        """The dataset's target ε over its family's: scales the searched training ε."""
        return eps_scale(self.base["dataset"], self.family)

    @property
    def resources_line(self) -> str:
        if self.cpu_share is not None:
            return (f"on {self.where}: CPU only, all {self.seeds} seeds at once, one thread and "
                    f"{self.cpu_share:.2g} of a CPU each")
        if not self.concurrency:
            return f"on {self.where}: CPU only, {self.cpus_per_trial} CPU per trial"
        return (f"on {self.where}: up to {self.concurrency} trials at once, {self.gpus_per_trial:g} GPU + "
                f"{self.cpus_per_trial} CPU each, {self.gpus:g} GPUs in all")

    @property
    def concurrency(self) -> int | None:
        return concurrency(self.gpus, self.gpus_per_trial)

    @property
    def info(self) -> SweepInfo:
        return SweepInfo(self.name, self.method, self.base["dataset"], self.base["model"],
                         self.seed, self.base["epochs"], self.trials * self.seeds, self.objective,
                         self.eval_profile)

    @property
    def eval_profile(self) -> str:
        """The final evaluation's profile; NO_TEST_EVALUATION for a sweep whose trials never read
        the test split (a benchmark's search), whatever --eval says, so no table shows a profile
        that did not run."""
        fixed = {**self.base, **self.fixed}
        return fixed["eval_profile"] if fixed.get("evaluate_test", True) else NO_TEST_EVALUATION


def default_scheduler(epochs: int) -> str:
    return "asha" if epochs > FEW_EPOCHS else "fifo"


def build_request(settings: dict[str, Any], saved: SavedSweep | None = None) -> SweepRequest:
    """The checked request of `settings` (every option of `options.SWEEP` plus `method`); BadInput
    (one line) for the first problem. `saved`: the sweep --resume continues."""
    s = {**options.defaults(), **settings}
    method, dataset, model = s["method"], s["dataset"], s["model"]
    if method not in METHODS or method not in SPACES:
        raise BadInput(f"unknown method {method!r}; known: {', '.join(n for n in METHODS if n in SPACES)}")
    if dataset not in DATASETS:
        raise BadInput(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if model not in MODELS:
        raise BadInput(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    cpu_share = None
    if s["cpus_per_trial"] is None:
        cpu_share = _seed_share(s["address"], s["trials"], s["seeds"], s["gpus"])
        s["cpus_per_trial"] = _default_cpus_per_trial(s["address"], s["trials"] * s["seeds"], s["gpus"],
                                                      s["gpus_per_trial"])
    options.check(s)
    try:
        check_data_dir(dataset, s["data_dir"])
        check_output_folder("--results-dir", s["results_dir"])
        check_local_storage(s["storage"])
    except PreconditionFailed as error:
        raise BadInput(str(error)) from None
    # ASHA would judge each seed replicate alone, which is what --seeds is there to avoid.
    scheduler = s["scheduler"] or ("fifo" if s["seeds"] > 1 else default_scheduler(s["epochs"]))
    name = s["name"] or f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_name("--name", name)
    sweep_dir = Path(s["results_dir"]) / name
    if sweep_dir.exists() and saved is None:
        raise BadInput(f"{sweep_dir} already exists; pick another --name (or continue it with --resume)")
    if saved is not None:
        _check_tune_state(s["storage"], sweep_dir, name)
    tracking_uri = s["tracking_uri"] or default_tracking_uri()
    base, fixed, family = _trial_config(s, tracking_uri)
    # A trial killed during its final evaluation continues from the attacks it finished.
    base["eval_progress_dir"] = os.path.abspath(s["evaluations_dir"] or sweep_dir / "evaluations")
    address, gpus, storage, where = _placement(s["address"], s["gpus"], s["gpus_per_trial"], s["cpus_per_trial"],
                                               s["storage"], sweep_dir, name, saved is not None)
    return SweepRequest(
        method=method, name=name, results_dir=Path(s["results_dir"]), tracking_uri=tracking_uri,
        trials=s["trials"], base=base, fixed=fixed, family=family, gpus=gpus,
        gpus_per_trial=s["gpus_per_trial"], cpus_per_trial=s["cpus_per_trial"], seed=s["seed"],
        storage=storage, address=address, max_failures=s["max_failures"],
        checkpoint_every_s=s["checkpoint_every_s"], scheduler=scheduler, resume=saved, where=where,
        objective=s["objective"], seeds=s["seeds"], cpu_share=cpu_share,
        # What --resume restores: the options as given, with the name and tracking URI resolved.
        settings={**settings, "sets": list(s["sets"]), "name": name, "tracking_uri": tracking_uri},
    )


def _trial_config(s: dict[str, Any], tracking_uri: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(the flat config every trial shares, the --set constants, the dataset's family). The
    config is built from the options whose `to` is `config:<key>`; the data is loaded and the
    method built once here, so what they refuse fails once, not in every trial."""
    method, dataset = s["method"], s["dataset"]
    flat = {"method": method}
    for option in options.SWEEP:
        kind, _, key = option.to.partition(":")
        if kind == "config":
            flat[key] = s[option.name]
    flat["data_dir"] = s["data_dir"] or ""  # errors below name the path as it was typed
    # One transfer surrogate for every trial under --results-dir, unless --surrogate-cache says;
    # absolute, as a trial runs in its own folder.
    flat["eval_surrogate_cache"] = os.path.abspath(s["surrogate_cache"] or os.path.join(s["results_dir"], "surrogates"))
    flat["eval_progress_dir"] = s["evaluations_dir"] or ""  # build_request adds the sweep's own folder
    try:
        fixed = parse_sets(tuple(s["sets"]), method)
        check_fixed(method, DATASETS.get(dataset)[1], fixed)
        base = TrialConfig.from_flat(flat).to_flat()
        fixed_config = TrialConfig.from_flat({**base, **fixed})  # a method's dataclass refuses here
        check_tracking_uri(tracking_uri)
        data = load_dataset(TrialConfig.from_flat(base).data)  # offline downloads fail here, once
        # What a method's constructor refuses (an unknown optimizer, ATLD's smoothing for this
        # many classes) fails here, once, rather than in every trial: built on the CPU and dropped.
        build_method(fixed_config, data, torch.device("cpu"))
    except (ConfigError, ValueError, TrackingUnreachable, DatasetUnavailable) as error:
        raise BadInput(str(error)) from None
    if base["data_dir"]:  # a trial runs in its own folder, not this one
        base["data_dir"] = os.path.abspath(base["data_dir"])
    return base, fixed, data.family


def _check_tune_state(storage: str | None, sweep_dir: Path, name: str) -> None:
    """Before Ray starts and Tune unpickles the sweep's saved state: could anyone else have written it?"""
    try:
        check_tune_state_trusted(normalise(storage or default_storage(sweep_dir)), name)
    except PreconditionFailed as error:
        raise BadInput(str(error)) from None


def _default_cpus_per_trial(address: str | None, trials: int, gpus: float | None,
                            gpus_per_trial: float) -> int:
    """On this machine, its cores shared by the trials that can run at once: a lone trial (or
    fewer trials than cores) gets the cores no other trial could use. On a cluster, 1."""
    if resolve_address(address) is not None:
        return 1
    machine = local_cluster()
    gpus = machine.max_gpus if gpus is None else gpus
    slots = concurrency(gpus, gpus_per_trial) if gpus > 0 and gpus_per_trial > 0 else None
    return max(1, int(machine.largest_node_cpus) // max(1, min(trials, slots or trials)))


def _seed_share(address: str | None, trials: int, seeds: int, gpus: float | None) -> float | None:
    """On this machine's CPUs, the K seeds of one configuration (a benchmark's fresh seeds) that
    outnumber its cores: each reserves cores/K, so all run at once, one thread each. In rounds of
    one per core, the last round would leave cores idle for a whole trial (mnist-cpu: 3 seeds on 2
    cores, the third alone for 80 minutes); at once, the seeds end together, a third sooner. None
    otherwise (a search keeps its trials apart: ASHA compares them as they go)."""
    if trials != 1 or resolve_address(address) is not None:
        return None
    machine = local_cluster()
    cores = machine.largest_node_cpus
    if (machine.max_gpus if gpus is None else gpus) > 0 or seeds <= cores:
        return None
    # Ray counts resources in units of 1/10,000: 2/3 would round up, and three would not fit in 2.
    return math.floor(cores / seeds * 10_000) / 10_000


def _placement(address, gpus, gpus_per_trial, cpus_per_trial, storage, sweep_dir, name, resume):
    """(address, GPUs to use, storage, where): the cluster is connected to (or this machine
    measured) and asked whether it can give what was asked for."""
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
    if not tune.Tuner.can_restore(path):
        raise ClusterError(f"--resume: Tune saved no state at {path}; start the sweep again under a new --name")


def parse_number(text: str) -> float:
    """'0.03', '3e-2' or a fraction such as '8/255'."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{text!r} is not a number or a fraction like 8/255") from None


def parse_value(key: str, text: str, annotation: Any) -> Any:
    if key == "eps_grid":
        return coerce(key, [parse_number(t) for t in text.split(",") if t.strip()], annotation)
    if is_eps_key(key):
        return coerce(key, parse_number(text), annotation)
    return coerce(key, text, annotation)


def parse_sets(items: tuple[str, ...], method: str) -> dict[str, Any]:
    """`("train_eps=8/255", "prior=cauchy")` -> `{"train_eps": 0.0313..., "prior": "cauchy"}`."""
    types = field_types(method)
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        if key not in types:
            raise ConfigError(
                f"--set {key}: unknown hyperparameter for {method}; known: {', '.join(sorted(types))}"
            )
        parsed[key] = parse_value(key, text.strip(), types[key])
    return parsed

"""`run_trial`: everything one trial does, with no knowledge of Ray, MLflow or Optuna.

It builds data, model and method from the registries, trains for `epochs`, reports after each
epoch (metrics + a checkpointable state), and after the last epoch attacks the test split for the
robustness curve. Given the state of an earlier report it resumes after that epoch.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from trainables.augment import crop_and_flip
from trainables.config import AttackConfig, EvalConfig, ModelConfig, TrainConfig, TrialConfig
from trainables.data import Dataset, ResidentSplit, load_dataset
from trainables.evaluate import accuracy, evaluate_trial, pgd_accuracy
from trainables.final_weights import BestEpoch, collapsed
from trainables.methods import METHODS, Method, TrainSettings
from trainables.models import ModelSpec, build_model
from trainables.protocol import CurvePoint, Protocol_, resolve_protocol
from trainables.provenance import dataset_record
from trainables.sanity import gap_metrics, measured_metrics
from trainables.selection import RUNG_METRIC, SEARCH_METRIC, STRONG_METRIC, strong_robust_accuracy


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        """Called once per epoch; `state` is what `run_trial(resume=...)` accepts back."""


class NonFiniteLoss(FloatingPointError):
    """Training diverged; the trial fails with this message."""


@dataclass
class TrialResult:
    clean_acc: float  # test split
    robust_acc: float  # test split, worst case over attacks at the target ε
    val_robust_acc: float
    target_eps: float
    curve: list[CurvePoint] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    # trainables.sanity.CHECKS plus "trusted": True/False, None where the check did not run.
    sanity: dict[str, bool | None] = field(default_factory=dict)
    autoattack_acc: float | None = None  # AutoAttack alone, test split, at the target ε; None in quick
    # AutoAttack's stage -> the test points it broke at the target ε (first stage to break each).
    autoattack_broken: dict[str, int] = field(default_factory=dict)
    final_checkpoint: str = "last"  # which weights were evaluated: last | best (on validation)
    evaluated_epoch: int = 0  # the epoch whose weights were evaluated
    collapsed: bool = False  # validation clean accuracy collapsed (trainables.final_weights)
    # The numbers behind the sanity flags: the black-box gaps of `whitebox_le_blackbox` (shares of
    # the white-box survivors, 95% intervals, counts: sanity.gap_metrics) and the measured values
    # of the other checks (sanity.measured_metrics).
    diagnostics: dict[str, float] = field(default_factory=dict)
    val_strong_robust_acc: float | None = None  # what the search selected on (trainables.selection)
    examples: dict[str, Any] = field(default_factory=dict)  # per test point and attack (evaluate.per_example)
    eval_earlier_cpu_s: float = 0.0  # evaluate.Evaluation.earlier_cpu_s


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn("CUDA was requested but this process sees no GPU: running on CPU", stacklevel=2)
        return torch.device("cpu")
    return torch.device(requested)


def build_method(config: TrialConfig, data: Dataset, device: torch.device) -> Method:
    protocol = resolve_protocol(config, data.family)
    spec = ModelSpec(data.input_shape, data.num_classes, config.model.embed_dim, data.mean, data.std)
    model = build_model(config.model.model, spec)
    if device.type == "cuda":
        model = model.to(device, memory_format=torch.channels_last)  # faster convs under bf16
        if config.train.compile:
            model.compile()  # in place: state_dict keys stay those of the plain model
    settings = TrainSettings(
        lr=config.train.lr,
        optimizer=config.train.optimizer,
        weight_decay=config.train.weight_decay,
        train_eps=protocol.train_eps,
        train_steps=config.attack.train_steps,
        train_step_size=config.attack.train_step_size,
        num_classes=data.num_classes,
        fused=device.type == "cuda",
    )
    return METHODS.get(config.method)(model, config.hparams, settings).to(device)


def train_one_epoch(method: Method, train: ResidentSplit, batch_size: int,
                    generator: torch.Generator, augment: bool = False) -> dict[str, float]:
    """One pass over a shuffled train split that lives on the device; returns the mean of each
    train_step output. On CUDA the step runs under bf16 autocast with channels_last inputs."""
    method.train()
    device = train.y.device
    cuda = device.type == "cuda"
    order = torch.randperm(len(train), generator=generator).to(device)
    sums: dict[str, torch.Tensor] = {}
    batches = 0
    for start in range(0, len(train), batch_size):
        idx = order[start:start + batch_size]
        x = crop_and_flip(train.images(idx)) if augment else train.images(idx)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            outputs = method.train_step(x, train.y[idx])
        for name, value in outputs.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()
        batches += 1
    # One host sync per epoch, not per step.
    return {name: float(total) / batches for name, total in sums.items()}


def augments(train: TrainConfig, family: str) -> bool:
    """Random crop + flip: as configured, by default on CIFAR-like data only."""
    return train.augment if train.augment is not None else family == "cifar-like"


def shuffle(seed: int, epoch: int) -> torch.Generator:
    """The epoch's shuffle depends only on (seed, epoch): a resumed trial sees the same batches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def run_trial(config: TrialConfig, reporter: Reporter | None = None,
              resume: dict[str, Any] | None = None) -> TrialResult:
    if config.train.epochs < 1:
        raise ValueError("epochs must be >= 1")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    started_cpu = time.process_time()  # CPU-seconds of every thread of this process
    started_wall = time.monotonic()
    device = pick_device(config.train.device)
    data = load_dataset(config.data)
    protocol = resolve_protocol(config, data.family)
    method = build_method(config, data, device)
    train = ResidentSplit.of(data.train, device)
    val = data.val.head(config.eval.val_examples).to(device)
    augment = augments(config.train, data.family)

    first_epoch, history, best = 0, [], BestEpoch()
    keep_best = config.eval.final_checkpoint == "best"
    # What the runs this one continues spent (train_cpu_s and trial_wall_s count every run)
    carried_cpu = carried_wall = 0.0
    if resume is not None:
        method.load_state(resume["method"])
        first_epoch, history = resume["epoch"], list(resume["history"])
        # Absent in checkpoints written before they were kept
        carried_cpu, carried_wall = resume.get("train_cpu_s", 0.0), resume.get("trial_wall_s", 0.0)
        torch.set_rng_state(resume["torch_rng"])
        best = BestEpoch.from_state(resume["best"]) if keep_best else best

    for epoch in range(first_epoch, config.train.epochs):
        metrics = train_one_epoch(method, train, config.train.batch_size,
                                  shuffle(config.train.seed, epoch), augment)
        if not math.isfinite(metrics["loss"]):
            raise NonFiniteLoss(f"training loss became {metrics['loss']} in epoch {epoch + 1}")
        metrics["val_clean_acc"] = accuracy(method, val)
        metrics[RUNG_METRIC] = metrics[SEARCH_METRIC] = pgd_accuracy(
            method, val, protocol.target_eps, config.eval.val_steps)
        metrics["epoch"] = epoch + 1
        history.append(dict(metrics))
        if keep_best:
            best.offer(metrics, method)
        if epoch == first_epoch:  # once per run of this trial: what it trains and is tested on
            metrics["data"] = dataset_record(config.data)
        result = None
        if epoch + 1 == config.train.epochs:
            evaluated_epoch = best.load_into(method) if keep_best else epoch + 1
            # What the search selects on: a strong attack, once, on the weights evaluated
            # (trainables.selection).
            metrics[STRONG_METRIC] = metrics[SEARCH_METRIC] = strong_robust_accuracy(
                method, val, protocol.target_eps, config.eval.val_strong_steps,
                config.eval.val_strong_restarts)
            history[-1].update({STRONG_METRIC: metrics[STRONG_METRIC], SEARCH_METRIC: metrics[SEARCH_METRIC]})
            trained_cpu = time.process_time()
            metrics.update(train_cpu_s=carried_cpu + trained_cpu - started_cpu, target_eps=protocol.target_eps,
                           final_checkpoint=config.eval.final_checkpoint, evaluated_epoch=evaluated_epoch,
                           collapsed=collapsed(history, data.num_classes),
                           data_digest=dataset_record(config.data)["digest"])
            if config.eval.evaluate_test:
                result = final_evaluation(config, method, data, protocol, history, evaluated_epoch)
                metrics.update(test_metrics(result, method.extra_evaluation(data, config.eval, protocol.target_eps)),
                               eval_cpu_s=time.process_time() - trained_cpu + result.eval_earlier_cpu_s)
            else:  # validation only: the test split stays unread
                result = validation_only(config, history, protocol.target_eps, evaluated_epoch)
        if reporter is not None:
            # After the last epoch `method` holds the evaluated weights, so the trial's final
            # checkpoint is the model its numbers belong to.
            metrics["trial_wall_s"] = carried_wall + time.monotonic() - started_wall
            spent = {"train_cpu_s": carried_cpu + time.process_time() - started_cpu,
                     "trial_wall_s": metrics["trial_wall_s"]}
            reporter.report(metrics, _state(config, method, epoch, history, best, keep_best, spent))
    if result is None:  # resumed after its last epoch: `method` holds the weights evaluated then
        evaluated_epoch = best.epoch if keep_best else len(history)
        result = (final_evaluation(config, method, data, protocol, history, evaluated_epoch) if config.eval.evaluate_test
                  else validation_only(config, history, protocol.target_eps, evaluated_epoch))
    return result


def say_progress(line: str) -> None:
    """A line on stdout (in a sweep, Ray forwards a trial's stdout to the sweep's console): what
    a long final evaluation is doing."""
    print(f"[orch] evaluation: {line}", flush=True)


def test_metrics(result: TrialResult, extra: dict[str, float]) -> dict[str, Any]:
    """What a trial reports of its test evaluation; `extra`: the method's own evaluation step
    (e.g. ER's detector)."""
    metrics = dict(test_clean_acc=result.clean_acc, test_robust_acc=result.robust_acc,
                   curve=[p.as_dict() for p in result.curve], sanity=result.sanity, examples=result.examples,
                   **result.diagnostics, **{f"test_{name}": value for name, value in extra.items()})
    if result.autoattack_acc is not None:
        metrics["test_autoattack_acc"] = result.autoattack_acc
        metrics.update({f"test_autoattack_broken/{stage}": float(count)
                        for stage, count in result.autoattack_broken.items()})
    return metrics


def _state(config: TrialConfig, method: Method, epoch: int, history: list[dict[str, Any]], best: BestEpoch,
           keep_best: bool, spent: dict[str, float]) -> dict[str, Any]:
    """What a checkpoint holds: enough to continue the trial after `epoch` (0-based), and the
    CPU- and wall-seconds spent so far (`train_cpu_s`, `trial_wall_s`), so a resumed trial's counts
    cover every run of it."""
    state = {"method": method.state(), "epoch": epoch + 1, "history": history,
             "torch_rng": torch.get_rng_state(), "config": config.to_flat(), **spent}
    if keep_best:
        state["best"] = best.state()
    return state


def validation_only(config: TrialConfig, history: list[dict[str, Any]], target_eps: float,
                    evaluated_epoch: int) -> TrialResult:
    """A trial that never read the test split (`evaluate_test=False`): NaN test numbers."""
    return TrialResult(clean_acc=math.nan, robust_acc=math.nan,
                       val_robust_acc=history[evaluated_epoch - 1][RUNG_METRIC],
                       val_strong_robust_acc=history[-1].get(STRONG_METRIC), target_eps=target_eps,
                       history=history, final_checkpoint=config.eval.final_checkpoint,
                       evaluated_epoch=evaluated_epoch)


SURROGATE_SEED = 104_729  # the default surrogate's seed (another if a trial uses this one)


def surrogate_config(config: TrialConfig) -> TrialConfig:
    """The default transfer surrogate: a Madry (PGD-trained) model, since an undefended one
    rarely transfers to an adversarially trained target. The trial's architecture (default
    width), data, epochs, training adversary and target ε; the default optimiser and a seed other
    than the trial's. Nothing a sweep searches, so one surrogate serves every trial of a sweep
    (an independently seeded copy of the trial's own method and configuration can be given to
    `evaluate_trial` instead)."""
    train = config.train
    seed = SURROGATE_SEED if train.seed != SURROGATE_SEED else SURROGATE_SEED + 1
    return TrialConfig(
        method="madry", data=config.data, model=ModelConfig(model=config.model.model),
        train=TrainConfig(epochs=train.epochs, batch_size=train.batch_size, seed=seed,
                          device=train.device, threads=train.threads, augment=train.augment),
        attack=AttackConfig(train_steps=config.attack.train_steps,
                            train_step_size=config.attack.train_step_size),
        eval=EvalConfig(target_eps=config.eval.target_eps, eps_grid=config.eval.eps_grid))


@functools.lru_cache(maxsize=1)
def trained_surrogate(config: TrialConfig, cache_dir: str = "") -> nn.Module:
    """The surrogate `config` describes (see `surrogate_config`), trained once per process: the
    trials of a sweep that a reused actor runs share it. With `cache_dir`, trained once per
    folder: its weights are kept there under a hash of `config` and loaded by the next trial
    (every fresh seed of a benchmark evaluates against the same surrogate, which costs as much as
    a madry training: on mnist-cpu about 16 of a seed's 63 evaluation CPU-minutes); trials that
    need it at once wait for the one that trains it. Returned as its base classifier in eval mode."""
    kept = _surrogate_file(config, cache_dir)
    if kept is None:
        return _surrogate(config, None)
    kept.parent.mkdir(parents=True, exist_ok=True)
    with open(kept.with_name(kept.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        return _surrogate(config, kept)


def _surrogate(config: TrialConfig, kept: Path | None) -> nn.Module:
    """Loaded from `kept` if it is there, else trained (in a forked random state, so the trial's
    own stream is untouched) and kept there."""
    device = pick_device(config.train.device)
    dataset = load_dataset(config.data)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.train.seed)
        surrogate = build_method(config, dataset, device)
        if kept is not None and kept.is_file():
            say_progress(f"the transfer attack's surrogate: loaded from {kept}")
            surrogate.model.load_state_dict(torch.load(kept, map_location=device, weights_only=True))
            return surrogate.model.eval()
        say_progress(f"the transfer attack's surrogate: training a {config.method} model for "
                     f"{config.train.epochs} epochs" + (f" (kept in {kept.parent})" if kept else ""))
        train_split = ResidentSplit.of(dataset.train, device)
        for epoch in range(config.train.epochs):
            train_one_epoch(surrogate, train_split, config.train.batch_size,
                            shuffle(config.train.seed, epoch), augments(config.train, dataset.family))
    if kept is not None:
        partial = kept.with_name(f"{kept.name}.{os.getpid()}.partial")
        torch.save(surrogate.model.state_dict(), partial)
        os.replace(partial, kept)  # whole or absent: a trial killed mid-write leaves no torn file
    return surrogate.model.eval()


def _surrogate_file(config: TrialConfig, cache_dir: str) -> Path | None:
    """Where the weights of the surrogate `config` describes are kept in `cache_dir`: named by a
    hash of its whole config (data, model, training, device, threads: what the same weights
    need), so a different surrogate is never read. The data enter by their content digest, not
    their path, so kept weights serve the same data read from another folder or machine.
    None: no cache."""
    if not cache_dir:
        return None
    key = {**config.to_flat(), "data_dir": dataset_record(config.data)["digest"]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"surrogate-{config.method}-{digest[:16]}.pt"


def final_evaluation(config: TrialConfig, method: Method, data: Dataset, protocol: Protocol_,
                     history: list[dict[str, Any]], evaluated_epoch: int) -> TrialResult:
    """The only place the test split is read: the eval profile's curve and sanity flags, for the
    weights of `evaluated_epoch` (which `method` holds). The standard and full profiles add a
    transfer attack from `trained_surrogate`."""
    points = min(config.eval.eval_examples or len(data.test.y), len(data.test.y))
    say_progress(f"evaluating the epoch-{evaluated_epoch} weights on {points} test points "
                 f"({config.eval.eval_profile} profile)")
    surrogate = None
    if config.eval.eval_profile != "quick":
        surrogate = trained_surrogate(surrogate_config(config), config.eval.eval_surrogate_cache)
    evaluation = evaluate_trial(method, data.test, protocol, config.eval, data.family, surrogate,
                                say=say_progress)
    return TrialResult(
        clean_acc=evaluation.clean_acc,
        robust_acc=evaluation.robust_acc,
        val_robust_acc=history[evaluated_epoch - 1][RUNG_METRIC],
        val_strong_robust_acc=history[-1].get(STRONG_METRIC),
        target_eps=protocol.target_eps,
        curve=evaluation.curve,
        history=history,
        sanity=evaluation.sanity,
        autoattack_acc=evaluation.autoattack_acc,
        autoattack_broken=evaluation.autoattack_broken,
        final_checkpoint=config.eval.final_checkpoint,
        evaluated_epoch=evaluated_epoch,
        collapsed=collapsed(history, data.num_classes),
        diagnostics={**gap_metrics(evaluation.measurements.blackbox_gaps),
                     **measured_metrics(evaluation.measurements)},
        examples=evaluation.examples,
        eval_earlier_cpu_s=evaluation.earlier_cpu_s,
    )

"""The attacks of a final evaluation that finished, kept on disk so that a trial killed during
its evaluation continues where it stopped instead of attacking again from the first ε (on
mnist-cpu an evaluation takes over an hour, most of it AutoAttack).

An evaluation is a fixed sequence of attacks (`trainables.evaluate.plan`); what each one found
and the evaluation's state after it (the random state the next attack starts from, the largest
ball excess so far, AutoAttack's warnings) are kept under the attack's place in the sequence, and
AutoAttack's cascade also after each of its stages. Restoring that state makes the continued
evaluation compute exactly what the uninterrupted one would have.

Each kept state also carries the CPU-seconds the evaluation had spent when it was kept, so a
continued evaluation reports the cost of the whole evaluation (the work a kill cut short after the
last kept state is lost and not counted).

The folder is named by a hash of everything the results depend on (the weights attacked, the
test points, the attack plan and budgets, the surrogate's weights), so a different model or
evaluation never reads another's results.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import astuple
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from trainables.outcomes import Job

CPU_KEY = "evaluation_cpu_s"  # kept beside each state (absent in folders kept before it was)


class KeptAttacks:
    """One evaluation's folder of finished attacks; `folder=None` keeps nothing."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._started_cpu = time.process_time()
        # CPU-seconds the interrupted run(s) had spent up to the latest kept state this run read.
        self.earlier_cpu_s = 0.0

    @classmethod
    def of(cls, root: str, nets: Iterable[nn.Module | None], tensors: Iterable[torch.Tensor],
           plan: Any) -> "KeptAttacks":
        """The folder under `root` ("": none) for attacking `nets` (the method, its surrogate)
        on `tensors` (the test points and labels) with `plan` (anything `repr` describes fully:
        the jobs, budgets and settings)."""
        if not root:
            return cls(None)
        sha = hashlib.sha256(json.dumps(plan, sort_keys=True, default=repr).encode())
        for net in nets:
            for name, value in sorted(net.state_dict().items()) if net is not None else ():
                sha.update(name.encode())
                sha.update(_bytes(value))
        for tensor in tensors:
            sha.update(_bytes(tensor))
        return cls(Path(root) / sha.hexdigest()[:16])

    def load(self, name: str) -> dict[str, Any] | None:
        """What `save(name, ...)` kept (plain data: tensors, numbers, strings), or None."""
        if self.folder is None or not (self.folder / f"{name}.pt").is_file():
            return None
        kept = torch.load(self.folder / f"{name}.pt", map_location="cpu", weights_only=True)
        self.earlier_cpu_s = max(self.earlier_cpu_s, float(kept.pop(CPU_KEY, 0.0)))
        return kept

    def spent_cpu_s(self) -> float:
        """CPU-seconds of the whole evaluation so far: the interrupted runs' and this process's."""
        return self.earlier_cpu_s + time.process_time() - self._started_cpu

    def save(self, name: str, kept: dict[str, Any]) -> None:
        """Whole or absent: a process killed mid-write leaves no torn file."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f"{name}.pt.{os.getpid()}.partial"
        torch.save({**kept, CPU_KEY: self.spent_cpu_s()}, partial)
        os.replace(partial, self.folder / f"{name}.pt")

    def save_stages(self, name: str, state: dict[str, Any]) -> None:
        """Where AutoAttack's cascade stands after a stage, its adversarial examples kept for the
        rows a stage broke only (`compact_stages`)."""
        self.save(name, compact_stages(state))

    def load_stages(self, name: str, x: torch.Tensor) -> dict[str, Any] | None:
        """AutoAttack's state kept by `save_stages(name, state)` on inputs `x`, with its full
        `x_adv` again; None if nothing was kept."""
        kept = self.load(name)
        if kept is None or "x_adv" in kept:  # kept whole (by an orch before 2026-12-04)
            return kept
        x_adv = x.detach().clone()
        x_adv[kept.pop("adv_rows").to(x.device)] = kept.pop("adv_values").to(x.device)
        return {**kept, "x_adv": x_adv}

    def keep_attack(self, name: str, found: dict[Job, torch.Tensor], excess: dict[bool, torch.Tensor],
                    warned: frozenset[str] | None) -> None:
        """An attack that finished: what it `found` (per job, still correct), and the evaluation's
        state after it (the random state, the largest ball `excess` so far, AutoAttack's `warned`
        checks), as plain data."""
        self.save(name, {"found": [(astuple(job), still_correct) for job, still_correct in found.items()],
                         "random": random_state(), "excess": excess,
                         "warned": None if warned is None else sorted(warned)})

    def resume_attack(self, name: str, device: torch.device) -> tuple[dict[Job, torch.Tensor], dict[bool, torch.Tensor],
                                                                     frozenset[str] | None] | None:
        """What `keep_attack(name, ...)` kept, with torch's random state set to the one after it;
        None if it was not kept."""
        kept = self.load(name)
        if kept is None:
            return None
        set_random_state(kept["random"])
        found = {Job(*job): still_correct.to(device) for job, still_correct in kept["found"]}
        excess = {projects: value.to(device) for projects, value in kept["excess"].items()}
        return found, excess, None if kept["warned"] is None else frozenset(kept["warned"])


def compact_stages(state: dict[str, Any]) -> dict[str, Any]:
    """Where AutoAttack's cascade stands, its adversarial examples kept only for the points a stage
    broke: every other row of `x_adv` is the input itself (the cascade starts from a copy of the
    inputs and replaces the rows it breaks), and a full copy of 500 MNIST images is 1.5 MB, too
    much for the records committed to carry an evaluation to another machine."""
    rows = torch.stack(list(state["broken_by"].values())).any(0).nonzero().squeeze(1) if state["broken_by"] \
        else torch.zeros(0, dtype=torch.long)
    compact = {key: value for key, value in state.items() if key != "x_adv"}
    return {**compact, "adv_rows": rows.cpu(), "adv_values": state["x_adv"][rows.to(state["x_adv"].device)].detach().cpu()}


def random_state() -> dict[str, Any]:
    """torch's global random state (CPU, and every CUDA device when there is one)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()

"""What the attacks of an evaluation found, per test point: each job (an attack at an ε on an
inference path, in a role), the per-example worst case across attacks and smaller ε, the black-box
gaps, and every point's outcome as plain data (what a benchmark ranks from)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping

import torch

from trainables.attacks import ATTACKS
from trainables.protocol import CurvePoint
from trainables.sanity import Gap


@dataclass(frozen=True)
class Job:
    """One attack at one ε (in the attack's norm) on one inference path. `role` "curve" is a curve
    point; any other role is a result that only counts in the worst case: a sanity measurement
    ("unnested", "doubled", ...) or a stage of AutoAttack ("autoattack")."""

    attack: str
    eps: float
    path: str = "predict"
    role: str = "curve"


def worst_case(results: Mapping[Job, torch.Tensor], clean: torch.Tensor,
               kinds: Collection[str] | None = None) -> dict[float, torch.Tensor]:
    """Per L∞ ε of `results`: correct clean and not broken by any L∞ attack (only attacks of
    `kinds`, if given) at any ε' ≤ ε, whatever its role. Per example: robust only if every
    attack failed on it."""
    fooled_at: dict[float, torch.Tensor] = {}
    for job, still_correct in results.items():
        attack = ATTACKS.get(job.attack)
        if attack.norm == "Linf" and (kinds is None or attack.kind in kinds):
            fooled_at[job.eps] = fooled_at.get(job.eps, ~clean) | ~still_correct
    worst, fooled = {}, ~clean
    for eps in sorted(fooled_at):
        fooled = fooled | fooled_at[eps]
        worst[eps] = ~fooled
    return worst


def worst_at(points: list[CurvePoint], eps: float) -> float:
    """The worst-case accuracy of a curve at ε (the point closest to it)."""
    worst = [p for p in points if p.attack == "worst"]
    return min(worst, key=lambda p: abs(p.eps - eps)).accuracy


def per_example(clean: torch.Tensor, results: Mapping[Job, torch.Tensor]) -> dict[str, Any]:
    """Every point's outcome under every job, as plain data: the test points' indices (the first
    `eval_examples` of the test split) and, per job, '1' (still correct) or '0' per point. A job
    other than a curve point is named `<attack>/<role>` (e.g. pgd/doubled, apgd-ce/autoattack)."""
    def bits(flags: torch.Tensor) -> str:
        return "".join("1" if f else "0" for f in flags.tolist())

    series = [{"attack": "clean", "path": "predict", "eps": 0.0, "correct": bits(clean)}]
    series += [{"attack": job.attack if job.role == "curve" else f"{job.attack}/{job.role}", "path": job.path,
                "eps": float(job.eps), "correct": bits(still_correct)} for job, still_correct in results.items()]
    return {"indices": list(range(len(clean))), "series": series}


def blackbox_gaps(results: Mapping[Job, torch.Tensor], clean: torch.Tensor) -> tuple[Gap, ...]:
    """Per black-box attack (query or transfer, any role) and L∞ ε: of the examples that every
    gradient attack left robust at ε, how many it broke."""
    whitebox = worst_case(results, clean, kinds={"gradient"})
    fooled: dict[tuple[str, float], torch.Tensor] = {}
    for job, still_correct in results.items():
        if ATTACKS.get(job.attack).kind in ("query", "transfer") and job.eps in whitebox:
            key = (job.attack, job.eps)
            fooled[key] = fooled.get(key, torch.zeros_like(clean)) | ~still_correct
    return tuple(Gap(attack, eps, int((whitebox[eps] & broken).sum()), int(whitebox[eps].sum()))
                 for (attack, eps), broken in fooled.items())


def square_stage_gain(results: Mapping[Job, torch.Tensor], eps: float) -> Gap | None:
    """What AutoAttack's Square stage broke at ε (the points its earlier stages left), of all the
    points; None when AutoAttack did not run there."""
    stage = results.get(Job("square", eps, role="autoattack"))
    return None if stage is None else Gap("square/autoattack", eps, int((~stage).sum()), len(stage))


def pad(still_correct: torch.Tensor, n: int) -> torch.Tensor:
    """A subset's result over all n points: the points past the subset were not attacked."""
    padded = torch.ones(n, dtype=torch.bool, device=still_correct.device)
    padded[:len(still_correct)] = still_correct
    return padded


def fraction(flags: torch.Tensor) -> float:
    return flags.float().mean().item() if len(flags) else float("nan")

"""TLA, triplet loss adversarial training (Mao et al., seeds/tla.txt, Eq. 1):

    L = CE(f(x'_a), y) + λ1·[D(h(x'_a), h(x_p)) − D(h(x'_a), h(x_n)) + α]₊
        + λ2·(‖h(x'_a)‖₂ + ‖h(x_p)‖₂ + ‖h(x_n)‖₂),   D(a, b) = 1 − |a·b| / (‖a‖‖b‖),

with x'_a the PGD example of x (anchor), x_p a clean image of its class (positive) and x_n the
clean image of another class whose code is nearest to the anchor's in the mini-batch (negative).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainables.methods import METHODS
from trainables.methods.base import Method, TrainSettings, cross_entropy
from trainables.models import EmbedHeadModel

ANCHORS = ("adversarial", "clean")
NEGATIVES = ("hard", "random")


@dataclass(frozen=True)
class TLAHparams:
    lambda_: float = 2.0  # λ1, triplet weight (authors' CIFAR config: lamda_triplet 2)
    lambda_norm: float = 1e-3  # λ2, feature-norm decay (regularize_lambda)
    margin: float = 0.03  # α, in units of angular distance (margin_list)
    negative: str = "hard"  # hard: nearest other-class code in the batch | random: TLA-RN
    anchor: str = "adversarial"  # clean: TLA-SA, anchor and positive switched

    def __post_init__(self) -> None:
        if self.negative not in NEGATIVES:
            raise ValueError(f"negative={self.negative!r}; known: {', '.join(NEGATIVES)}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor={self.anchor!r}; known: {', '.join(ANCHORS)}")


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise D(a_i, b_i) = 1 − |cos(a_i, b_i)|: blind to the norm and the sign of the codes."""
    return 1.0 - F.cosine_similarity(a, b, dim=1).abs()


def pairwise_angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a), len(b)] matrix of D(a_i, b_j)."""
    return 1.0 - (F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).abs()


def pick_positives(y: torch.Tensor) -> torch.Tensor:
    """For each i, a random j ≠ i with y_j = y_i ("another sample a_2 in the correct class",
    Sec. 1; the authors' A1 image); i itself when the batch holds no other image of its class."""
    same = y[:, None] == y[None, :]
    same.fill_diagonal_(False)
    scores = torch.rand(same.shape, device=y.device).masked_fill(~same, -1.0)
    return torch.where(same.any(1), scores.argmax(1), torch.arange(len(y), device=y.device))


def pick_negatives(anchors: torch.Tensor, candidates: torch.Tensor, y_anchors: torch.Tensor,
                   y_candidates: torch.Tensor,
                   hard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into `candidates` of each anchor's negative, and whether it has one at all.

    hard: the candidate of another class nearest to the anchor by D, within the mini-batch
    (Sec. 4, "Negative Sample Selection": the semi-hard negative); otherwise a uniformly random
    candidate of another class (TLA-RN). No gradient flows through the choice.
    """
    other = y_anchors[:, None] != y_candidates[None, :]
    if hard:
        scores = pairwise_angular_distance(anchors.detach(), candidates.detach())
    else:
        scores = torch.rand(other.shape, device=anchors.device)
    return scores.masked_fill(~other, float("inf")).argmin(1), other.any(1)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float) -> torch.Tensor:
    """Per-triplet hinge [D(a, p) − D(a, n) + α]₊."""
    return F.relu(angular_distance(anchor, positive) - angular_distance(anchor, negative) + margin)


@METHODS.register("tla")
class TLA(Method):
    Hparams = TLAHparams
    description = "triplet loss on codes: adversarial anchor, clean positive, nearest negative"
    paper = "Mao et al., Metric Learning for Adversarial Robustness (seeds/tla.txt)"

    def __init__(self, model: EmbedHeadModel, hp: TLAHparams, settings: TrainSettings):
        super().__init__(model, hp, settings)
        self.optimizers["model"] = self.make_optimizer(model.parameters())

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hp
        # PGD on CE alone: the paper keeps the triplet term out of the attack (no convergence).
        x_adv = self.adversary(x, y)
        z_adv = self.model.embed(x_adv)
        z_clean = self.model.embed(x)
        ce = cross_entropy(self.model.head(z_adv), y)

        z_pos = z_clean[pick_positives(y)]
        anchor, positive = (z_adv, z_pos) if hp.anchor == "adversarial" else (z_pos, z_adv)
        # Negatives are clean images (Sec. 4: "the other elements in the triplet data are clean
        # images"; the authors' code mines them from a clean batch), nearest to the anchor.
        neg_idx, has_negative = pick_negatives(anchor, z_clean, y, y, hp.negative == "hard")
        negative = z_clean[neg_idx]

        triplet = (triplet_loss(anchor, positive, negative, hp.margin) * has_negative).mean()
        # Eq. 1's L2 norms (the authors' code decays the mean square instead).
        norm = (anchor.norm(dim=1) + positive.norm(dim=1) + negative.norm(dim=1)).mean()
        loss = ce + hp.lambda_ * triplet + hp.lambda_norm * norm
        self.descend(self.optimizers["model"], loss)
        return {"loss": loss.detach(), "ce": ce.detach(), "triplet": triplet.detach(),
                "norm": norm.detach()}

"""ADR, Adversary Divergence Reduction (Bui et al., seeds/adr.txt; formulas from the authors' TF
code, since the text lost them). With z = g(x), z_a = g(x_a), x_a from the base adversary:

    L = ½·CE(f(x), y) + ½·CE(f(x_a), y)                      label supervision (Eq. 4)
      + λ_lc · mean_i |sg(z_i) − z_a,i|                        local compactness (Eq. 1)
      + λ_gc · mean_ij w_ij |sg(z_j) − z_a,i|                  global compactness (Eqs. 2-3)
      + λ_ent · H(softmax f(x_a))                             conditional entropy (Eq. 5)
      + λ_vat · CE(softmax sg(f(x)), f(x_a))                   smoothness, VAT-style (Eq. 6)

where sg is stop-gradient, |·| is the L1 distance averaged over the code's coordinates (the code's
reduce_mean, which keeps λ comparable across embed_dim), and w_ij = 1 for y_i = y_j, 1 − 1/β
otherwise (β = 0.99: same-class pairs pulled together, other pairs pushed apart).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainables.methods import METHODS
from trainables.methods.base import Method, TrainSettings, cross_entropy
from trainables.methods.trades import trades_adversary
from trainables.models import EmbedHeadModel

BASES = ("pgd", "trades")


@dataclass(frozen=True)
class ADRHparams:
    lambda_: float = 1.0  # λ_lc, local compactness
    lambda_gc: float = 1.0  # global compactness
    lambda_ent: float = 1.0  # conditional entropy of the adversarial prediction
    lambda_vat: float = 1.0  # smoothness (paper Table 3: 0 on MNIST and CIFAR-ResNet)
    base: str = "pgd"  # adversary: pgd (ADR-ADV, worst-case CE) | trades (ADR-TRADES, max KL)
    gc_scale: float = 0.99  # β of Eq. 2: different-label pairs weigh 1 − 1/β

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base={self.base!r}; known: {', '.join(BASES)}")
        if not 0.0 < self.gc_scale <= 1.0:
            raise ValueError(f"gc_scale={self.gc_scale} must be in (0, 1]")


def pair_weights(y: torch.Tensor, scale: float = 0.99) -> torch.Tensor:
    """w_ij = (β − 1[y_i ≠ y_j]) / β: 1 for same-label pairs, 1 − 1/β ≤ 0 otherwise (Eq. 2)."""
    same = (y[:, None] == y[None, :]).float()
    return (scale - (1.0 - same)) / scale


def local_compactness(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """mean_i |sg(z_i) − z_a,i|: the adversarial code moves to its clean code, not the reverse."""
    return (z.detach() - z_adv).abs().mean()


def global_compactness(z: torch.Tensor, z_adv: torch.Tensor, y: torch.Tensor,
                       scale: float = 0.99) -> torch.Tensor:
    """mean_ij w_ij |sg(z_j) − z_a,i| over all batch pairs (i = j included, as in the code)."""
    distances = torch.cdist(z_adv, z.detach(), p=1) / z.shape[1]
    return (pair_weights(y, scale) * distances).mean()


def conditional_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean H(softmax(logits)), gradient through both factors (the code's two-logit CE)."""
    return -(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum(1).mean()


def soft_cross_entropy(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """mean CE(softmax(sg(target_logits)), logits)."""
    return -(F.softmax(target_logits.detach(), dim=1) * F.log_softmax(logits, dim=1)).sum(1).mean()


@METHODS.register("adr")
class ADR(Method):
    Hparams = ADRHparams
    description = "adversarial training + local/global compactness of codes + clustering assumption"
    paper = ("Bui et al., Improving Adversarial Robustness by Enforcing Local and Global "
             "Compactness (seeds/adr.txt)")

    def __init__(self, model: EmbedHeadModel, hp: ADRHparams, settings: TrainSettings):
        super().__init__(model, hp, settings)
        self.optimizers["model"] = self.make_optimizer(model.parameters())

    def base_adversary(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.hp.base == "trades":
            s = self.settings
            return trades_adversary(self.model, x, s.train_eps, s.train_steps, s.train_step_size)
        return self.adversary(x, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hp
        x_adv = self.base_adversary(x, y)
        z, z_adv = self.model.embed(x), self.model.embed(x_adv)
        logits, logits_adv = self.model.head(z), self.model.head(z_adv)

        label = 0.5 * cross_entropy(logits, y) + 0.5 * cross_entropy(logits_adv, y)
        lc = local_compactness(z, z_adv)
        gc = global_compactness(z, z_adv, y, hp.gc_scale)
        ent = conditional_entropy(logits_adv)
        vat = soft_cross_entropy(logits, logits_adv)
        loss = (label + hp.lambda_ * lc + hp.lambda_gc * gc
                + hp.lambda_ent * ent + hp.lambda_vat * vat)
        self.descend(self.optimizers["model"], loss)
        return {"loss": loss.detach(), "label": label.detach(), "local": lc.detach(),
                "global": gc.detach(), "entropy": ent.detach(), "vat": vat.detach()}

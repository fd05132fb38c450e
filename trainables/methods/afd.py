"""AFD (Bashivan et al., seeds/afd.txt): adversarial feature desensitization.

Encoder E = model.embed (optionally L2-normalised, as the authors' `resnet18norm` default),
decoder Dc = model.head, and an adversarial discriminator Da(z, y): three spectrally normalised FC
layers with LeakyReLU(0.2) and a projection term ⟨V_y, h⟩ on the label (Miyato & Koyama, 2018).
Per batch, Algorithm 1 in its order (S = softplus):

1. x' = PGD-L∞ on CE, the model in eval mode;
2. (E, Dc) descend L_EDc = CE(Dc(E(x)), y) on *clean* x            (lr α = settings.lr);
3. Da descends L_Da = S(−Da(E(x), y)) + S(Da(E(x'), y))           (lr β = lr_disc);
4. E descends L_E = S(−Da(E(x'), y))                                (lr γ = λ·α).

What λ means here: the paper weights L_E by λ, but step 4 has its own optimizer, and Adam (the
authors' MNIST setting) normalises its step, so a weight on L_E is inert — in the earlier version
of this file λ from 0.1 to 10 changed the encoder's update by < 1%. Algorithm 1 already has a knob
that acts, the step size γ of step 4; λ is that step relative to the classification step,
γ = λ·α. The paper's defaults (λ = 1, γ = α in the code's Adam setting) are λ = 1 here as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from trainables.attacks import pgd
from trainables.methods import METHODS
from trainables.methods.base import Method, cross_entropy


@dataclass(frozen=True)
class AFDHparams:
    # γ / α: step 4's learning rate relative to step 2's (see the module docstring). The code's
    # Adam setting (MNIST) has γ = α, so 1.
    lambda_: float = 1.0
    # Optimizer of all three steps is settings.optimizer, so `lr` means the same in every method
    # of a sweep. Default as the code's Adam setting (MNIST): β = 10·α at α = 1e-3.
    lr_disc: float = 1e-2  # β, step 3
    disc_width: int = 64  # hidden units of Da (paper: 64 MNIST, 512 CIFAR)
    normalize: bool = True  # L2-normalise z = E(x) (authors' default encoder `resnet18norm`)

    def __post_init__(self) -> None:
        if self.lambda_ < 0:
            raise ValueError(f"lambda={self.lambda_} must be >= 0")
        if self.disc_width < 1:
            raise ValueError(f"disc_width={self.disc_width} must be >= 1")


class ProjectionDiscriminator(nn.Module):
    """Da(z, y) = w·h + ⟨V_y, h⟩, h = φ(W₂ φ(W₁ z)), φ = LeakyReLU(0.2); every weight spectrally
    normalised (the authors' SNPDFC3)."""

    def __init__(self, embed_dim: int, width: int, num_classes: int):
        super().__init__()
        self.hidden = nn.Sequential(
            spectral_norm(nn.Linear(embed_dim, width)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(width, width)), nn.LeakyReLU(0.2),
        )
        self.out = spectral_norm(nn.Linear(width, 1))
        self.label_embed = spectral_norm(nn.Embedding(num_classes, width))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.hidden(z)
        return self.out(h).squeeze(1) + (self.label_embed(y) * h).sum(1)


@METHODS.register("afd")
class AFD(Method):
    Hparams = AFDHparams
    description = "adversarial feature desensitization: a label-conditioned discriminator on z"
    paper = "Bashivan et al., AFD (seeds/afd.txt)"

    def __init__(self, model, hp: AFDHparams, settings):
        super().__init__(model, hp, settings)
        self.discriminator = ProjectionDiscriminator(model.embed_dim, hp.disc_width, settings.num_classes)
        # As in the code, only the classification step (E, Dc) has weight decay.
        self.optimizers["classifier"] = self.make_optimizer(model.parameters())
        self.optimizers["discriminator"] = self._gan_optimizer(self.discriminator.parameters(), hp.lr_disc)
        self.optimizers["encoder_adv"] = self._gan_optimizer(model.encoder.parameters(),
                                                          hp.lambda_ * settings.lr)

    def _gan_optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """The code's GAN-step optimizers: SGD momentum 0.9, or Adam with β₁ = 0.5; no decay."""
        return self.make_optimizer(params, lr=lr, weight_decay=0.0, adam_beta1=0.5)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = E(x), on the unit sphere when `normalize`."""
        z = self.model.embed(x)
        return F.normalize(z, dim=1) if self.hp.normalize else z

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.encode(x))

    def adversary(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PGD-L∞ on CE through Dc(E(x)) (with the normalisation), every module in eval mode."""
        s = self.settings
        return pgd(self, x, y, s.train_eps, s.train_steps, s.train_step_size,
                   keep_best=False)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x_adv = self.adversary(x, y)

        ce = cross_entropy(self.predict(x), y)
        self.descend(self.optimizers["classifier"], ce)

        with torch.no_grad():
            z, z_adv = self.encode(x), self.encode(x_adv)
        d_loss = (F.softplus(-self.discriminator(z, y)).mean()
                  + F.softplus(self.discriminator(z_adv, y)).mean())
        self.descend(self.optimizers["discriminator"], d_loss)

        e_loss = F.softplus(-self.discriminator(self.encode(x_adv), y)).mean()
        self.descend(self.optimizers["encoder_adv"], e_loss)
        # Da's grads from step 4 are stale; drop them so they never leak into its next step.
        self.discriminator.zero_grad(set_to_none=True)
        return {"loss": ce.detach() + e_loss.detach(), "ce": ce.detach(),
                "d_loss": d_loss.detach(), "e_loss": e_loss.detach()}

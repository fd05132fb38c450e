"""ER-Classifier (Li et al., seeds/er-classifier.txt): a WGAN critic in the embedding space pulls
the distribution of adversarial codes Q(x_adv) towards a prior P_Z (Algorithm 1)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainables.methods import METHODS
from trainables.methods.base import Method, cross_entropy
from trainables.models import mlp

PRIORS = ("gaussian", "uniform", "cauchy")


@dataclass(frozen=True)
class ERHparams:
    lambda_: float = 0.1  # weight of the Wasserstein term (authors' code: 0.1; 5e-4 on MNIST)
    prior: str = "gaussian"  # gaussian N(0,I) | uniform(-3,3) | cauchy(0,1)
    minmax: bool = True  # False: ER-Classifier⁻, trained on clean inputs
    critic_clip: float = 0.01  # WGAN weight clipping
    critic_steps: int = 1
    critic_width: int = 512
    critic_depth: int = 4  # hidden layers of the critic MLP
    critic_lr_ratio: float = 0.5  # critic lr = ratio * lr (lr is the encoder's)
    head_lr_ratio: float = 0.05  # classifier lr = ratio * lr (authors' code)
    attack_label: str = "predicted"  # the training PGD attacks the predicted (code) or true label

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"prior={self.prior!r}; known: {', '.join(PRIORS)}")
        if self.attack_label not in ("predicted", "true"):
            raise ValueError(f"attack_label={self.attack_label!r}; known: predicted, true")


def sample_prior(prior: str, n: int, dim: int, device: torch.device) -> torch.Tensor:
    if prior == "gaussian":
        return torch.randn(n, dim, device=device)
    if prior == "uniform":
        return torch.empty(n, dim, device=device).uniform_(-3.0, 3.0)
    if prior == "cauchy":
        return torch.empty(n, dim, device=device).cauchy_(0.0, 1.0)
    raise ValueError(f"unknown prior {prior!r}; known: {', '.join(PRIORS)}")


@METHODS.register("er-classifier")
class ERClassifier(Method):
    Hparams = ERHparams
    description = "embedding regularized classifier: WGAN critic pulls codes to a prior"
    paper = "Li et al., ER-Classifier (seeds/er-classifier.txt)"

    def __init__(self, model, hp: ERHparams, settings):
        super().__init__(model, hp, settings)
        self.critic = mlp([model.embed_dim] + [hp.critic_width] * hp.critic_depth + [1])
        lr = settings.lr
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr * hp.critic_lr_ratio, "adam")
        self.optimizers["encoder"] = self.make_optimizer(model.encoder.parameters(), lr, "adam")
        self.optimizers["head"] = self.make_optimizer(model.classifier.parameters(), lr * hp.head_lr_ratio, "adam")
        # Step 9 is its own one-step Adam on the encoder, so its moments do not mix with CE's.
        self.optimizers["encoder_reg"] = self.make_optimizer(model.encoder.parameters(), lr, "adam")
        self.clip_critic()

    def clip_critic(self) -> None:
        with torch.no_grad():
            for p in self.critic.parameters():
                p.clamp_(-self.hp.critic_clip, self.hp.critic_clip)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        hp, lam = self.hp, self.hp.lambda_
        x_in = x
        if hp.minmax:
            if hp.attack_label == "predicted":
                with torch.no_grad():
                    target = self.model(x).argmax(1)
            else:
                target = y
            x_in = self.adversary(x, target)

        # Critic ascends λ·mean(D(z_prior) − D(Q(x_adv))), then its weights are clipped.
        with torch.no_grad():
            z_code = self.model.embed(x_in)
        for _ in range(hp.critic_steps):
            z_prior = sample_prior(hp.prior, len(x), self.model.embed_dim, x.device)
            w_estimate = self.critic(z_prior).mean() - self.critic(z_code).mean()
            self.descend(self.optimizers["critic"], -lam * w_estimate)
            self.clip_critic()

        # Encoder and classifier descend the cross-entropy on the (adversarial) batch.
        ce = cross_entropy(self.model(x_in), y)
        self.optimizers["encoder"].zero_grad(set_to_none=True)
        self.optimizers["head"].zero_grad(set_to_none=True)
        ce.backward()
        self.optimizers["encoder"].step()
        self.optimizers["head"].step()

        # Encoder ascends λ·mean(D(Q(x_adv))): its codes move where the critic says "prior".
        reg = -lam * self.critic(self.model.embed(x_in)).mean()
        self.descend(self.optimizers["encoder_reg"], reg)
        # The critic's grads from `reg` are stale now; drop them so they never leak into a step.
        self.critic.zero_grad(set_to_none=True)
        return {"loss": ce.detach() + reg.detach(), "ce": ce.detach(), "w_estimate": w_estimate.detach()}

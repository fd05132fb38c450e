"""ER-Detector (Li et al., seeds/er-classifier.txt, section 3.3 and Algorithm 2): flag inputs whose
code is unlikely under the class-conditional density of the training codes.

API:
    detector = fit_detector(method, train_split, calib_split, eps)
    metrics = detector_metrics(detector, method, test_split, eps)
    # {"acc_nadv", "acc_com", "acc_adv", "acc_cla", "n_natural", "n_adversarial"}
    flags = detector.is_adversarial(method, x)  # bool tensor [N]

Fitting (Algorithm 2):
1. code z' = [hidden means ‖ z] of every training input ("ER2"; `code="z"` keeps z only, "ER1").
   A hidden mean is the mean output of one hidden layer of the encoder: we take each activation
   module of `model.encoder` (ReLU, LeakyReLU, ...) in order, one scalar per layer (an encoder
   with only functional activations contributes none: the code is z). Codes are
   standardised with the training codes' mean and std, so one bandwidth suits every coordinate.
2. one Gaussian KDE per class t on the training codes labelled t (bandwidth: Scott's rule unless
   given), K_σ(z₁, z₂) ∝ exp(−‖z₁ − z₂‖² / σ²);
3. on a calibration split (the paper: 20% of test, "set I"; here a split the caller holds out,
   e.g. validation), each input x scores d = log KDE_ŷ(z'(x)), ŷ the method's prediction for x.
   Natural inputs and noisy ones (Gaussian noise with the L2 norm of the adversarial perturbation,
   the convention of Feinman et al.'s KD detector the paper compares with) are negatives,
   PGD-L∞ examples at ε through the method's `predict` are positives, for a logistic regression G_β.

Metrics (Table 4; N adversarial and M natural test inputs, every attacked input counts as one of
the N): ACC-NADV = m_nadv / M (natural inputs not flagged), ACC-ADV = n_adv / N (adversarial
inputs flagged), ACC-CLA = n_cla / (N − n_adv) (unflagged adversarial inputs still classified
correctly), ACC-COM = (n_adv + n_cla) / N.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KernelDensity
from torch import nn

from trainables.attacks import eval_mode, pgd
from trainables.data import Split
from trainables.methods import Method

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus)
CODES = ("combined", "z")
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (net, x, y) -> x_adv


@dataclass
class Detector:
    """Per-class KDEs on standardised codes and a logistic regression on their log densities."""

    code: str
    mean: np.ndarray
    std: np.ndarray
    kdes: dict[int, KernelDensity]
    classifier: LogisticRegression

    def log_density(self, method: Method, x: torch.Tensor) -> np.ndarray:
        """d(x) = log KDE_ŷ(z'(x)), ŷ the method's predicted class."""
        codes, predicted = _codes_and_predictions(method, x, self.code)
        codes = (codes - self.mean) / self.std
        scores = np.full(len(codes), -1e6)  # a class absent from training: as unlikely as possible
        for label, kde in self.kdes.items():
            rows = predicted == label
            if rows.any():
                scores[rows] = kde.score_samples(codes[rows])
        return scores

    def is_adversarial(self, method: Method, x: torch.Tensor) -> torch.Tensor:
        flags = self.classifier.predict(self.log_density(method, x)[:, None]).astype(bool)
        return torch.from_numpy(flags)


def hidden_means(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example mean output of each activation module of model.encoder [N, L], z [N, k])."""
    means: list[torch.Tensor] = []

    def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        means.append(output.flatten(1).mean(1))

    hooks = [m.register_forward_hook(record) for m in model.encoder.modules() if isinstance(m, ACTIVATIONS)]
    try:
        z = model.embed(x)
    finally:
        for hook in hooks:
            hook.remove()
    hidden = torch.stack(means, 1) if means else z.new_zeros(len(z), 0)
    return hidden, z


@torch.no_grad()
def _codes_and_predictions(method: Method, x: torch.Tensor, code: str,
                           batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    codes, predicted = [], []
    with eval_mode(method):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            hidden, z = hidden_means(method.model, batch)
            codes.append(torch.cat([hidden, z], 1) if code == "combined" else z)
            predicted.append(method(batch).argmax(1))
    return torch.cat(codes).double().cpu().numpy(), torch.cat(predicted).cpu().numpy()


def pgd_attack(eps: float, steps: int = 20) -> Attack:
    """PGD-L∞ on CE (random start) through the net's full inference path."""
    return lambda net, x, y: pgd(net, x, y, eps, steps)


def _attack_batched(method: Method, split: Split, attack: Attack, batch_size: int = 512) -> torch.Tensor:
    parts = [attack(method, split.x[i:i + batch_size], split.y[i:i + batch_size])
             for i in range(0, len(split), batch_size)]
    return torch.cat(parts)


def noisy_like(x: torch.Tensor, x_adv: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """x + Gaussian noise whose per-example L2 norm equals ‖x_adv − x‖₂, clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    target = (x_adv - x).flatten(1).norm(dim=1)
    noise = noise * (target / noise.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *[1] * (x.dim() - 1))
    return (x + noise).clamp(0.0, 1.0)


def fit_detector(method: Method, train_split: Split, calib_split: Split, eps: float,
                 attack: Attack | None = None, code: str = "combined",
                 bandwidth: float | str = "scott", seed: int = 0) -> Detector:
    """Algorithm 2: class KDEs on the training codes, a logistic regression on calibration scores
    (natural and noisy: negative; adversarial from `attack`, default PGD-20 at eps: positive)."""
    if code not in CODES:
        raise ValueError(f"code={code!r}; known: {', '.join(CODES)}")
    codes, _ = _codes_and_predictions(method, train_split.x, code)
    mean, std = codes.mean(0), codes.std(0) + 1e-8
    standard = (codes - mean) / std
    labels = train_split.y.cpu().numpy()
    kdes = {int(t): KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(standard[labels == t])
            for t in np.unique(labels)}
    detector = Detector(code, mean, std, kdes, LogisticRegression())

    x_adv = _attack_batched(method, calib_split, attack or pgd_attack(eps))
    x_noisy = noisy_like(calib_split.x, x_adv, torch.Generator().manual_seed(seed))
    negatives = [detector.log_density(method, calib_split.x), detector.log_density(method, x_noisy)]
    positives = detector.log_density(method, x_adv)
    scores = np.concatenate([*negatives, positives])[:, None]
    targets = np.concatenate([np.zeros(2 * len(calib_split)), np.ones(len(calib_split))])
    detector.classifier.fit(scores, targets)
    return detector


def detector_metrics(detector: Detector, method: Method, test_split: Split, eps: float,
                     attack: Attack | None = None) -> dict[str, float]:
    """Table 4's criteria on `test_split` (natural) and its attacked copy (adversarial)."""
    x_adv = _attack_batched(method, test_split, attack or pgd_attack(eps))
    flagged_natural = detector.is_adversarial(method, test_split.x)
    flagged_adv = detector.is_adversarial(method, x_adv)
    with torch.no_grad(), eval_mode(method):
        correct_adv = (method(x_adv).argmax(1) == test_split.y).cpu()
    n, m = len(x_adv), len(test_split)
    n_adv = int(flagged_adv.sum())
    n_cla = int((~flagged_adv & correct_adv).sum())
    return {
        "acc_nadv": float((~flagged_natural).sum()) / m,
        "acc_com": (n_adv + n_cla) / n,
        "acc_adv": n_adv / n,
        "acc_cla": n_cla / (n - n_adv) if n > n_adv else float("nan"),
        "n_natural": float(m),
        "n_adversarial": float(n),
    }

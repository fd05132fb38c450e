"""The papers' analyses of the latent space z = E(x) of a trained method, clean vs adversarial.

- Representation sensitivity (AFD, Fig. 4): ‖E(x) − E(x')‖₂ / ‖E(x)‖₂ per test example, x' the
  PGD-L∞ adversary at ε; summarised by median, mean and std (AFD plots median ± std).
- Separation ratio r (TLA, Table 2): for class k, σ_ntrl = mean pairwise distance between natural
  embeddings of k, σ_adv = mean distance between adversarial examples misclassified *into* k and
  the natural embeddings of k; r = mean over classes of σ_adv / σ_ntrl. D is TLA's angular
  distance 1 − |a·b| / (‖a‖‖b‖). r > 1: adversaries stay away from their false class.
- kNN accuracy (TLA, Table 3): a K = 50 nearest-neighbour classifier fitted on clean training
  embeddings, scored on clean and on adversarial test embeddings.
- t-SNE (ER-Classifier, Figs. 5-6): one joint 2-D embedding of clean and adversarial codes, so
  the two panels share coordinates.

E is the representation the method's head reads: `method.encode` where a method defines one
(AFD normalises z), else `method.model.embed`. The adversary attacks the full `predict` path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from trainables.attacks import eval_mode, pgd
from trainables.data import Dataset, Split

KNN_K = 50  # TLA Table 3
KNN_TRAIN_EXAMPLES = 5000  # enough neighbours for K = 50, bounded cost on large datasets
EXACT_TSNE_MAX_POINTS = 1000
ANALYSIS_SEED = 0  # the same PGD random starts and t-SNE layout for every method


@dataclass(frozen=True)
class LatentAnalysis:
    eps: float
    n_examples: int
    adv_acc: float  # accuracy of `predict` under the PGD used here
    sensitivity_median: float
    sensitivity_mean: float
    sensitivity_std: float
    separation_ratio: float  # NaN when no adversarial example was misclassified
    knn_clean_acc: float
    knn_adv_acc: float
    tsne: np.ndarray  # [2m, 2]: m clean points, then their m adversarial counterparts
    tsne_label: np.ndarray  # [2m] true class
    tsne_adversarial: np.ndarray  # [2m] bool


def representation(method: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder E whose output the head reads."""
    return getattr(method, "encode", None) or method.model.embed


@torch.no_grad()
def _embed(encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).flatten(1)


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """TLA's D(a, b) = 1 − |a·b| / (‖a‖‖b‖), all pairs: [len(a), len(b)]."""
    cos = nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T
    return 1.0 - cos.abs()


def sensitivity(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    return (z - z_adv).norm(dim=1) / z.norm(dim=1).clamp_min(1e-12)


def separation_ratio(z: torch.Tensor, y: torch.Tensor, z_adv: torch.Tensor,
                     pred_adv: torch.Tensor) -> float:
    """TLA's r, averaged over the classes that received misclassified adversaries."""
    ratios = []
    for k in y.unique():
        natural = z[y == k]
        fooled_into_k = z_adv[(pred_adv == k) & (y != k)]
        if len(natural) < 2 or len(fooled_into_k) == 0:
            continue
        within = angular_distance(natural, natural)
        n = len(natural)
        sigma_ntrl = within.triu(diagonal=1).sum() / (n * (n - 1) / 2)
        sigma_adv = angular_distance(fooled_into_k, natural).mean()
        ratios.append((sigma_adv / sigma_ntrl.clamp_min(1e-12)).item())
    return float(np.mean(ratios)) if ratios else float("nan")


def knn_accuracies(train_z: torch.Tensor, train_y: torch.Tensor, z: torch.Tensor,
                   z_adv: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    knn = KNeighborsClassifier(n_neighbors=min(KNN_K, len(train_y)))
    knn.fit(train_z.cpu().numpy(), train_y.cpu().numpy())
    labels = y.cpu().numpy()
    return (float((knn.predict(z.cpu().numpy()) == labels).mean()),
            float((knn.predict(z_adv.cpu().numpy()) == labels).mean()))


def tsne_2d(z: torch.Tensor, z_adv: torch.Tensor) -> np.ndarray:
    points = torch.cat([z, z_adv]).cpu().numpy()
    perplexity = min(30.0, (len(points) - 1) / 3)  # t-SNE needs perplexity < n
    # Exact gradients are O(n²) but several times faster than Barnes-Hut at a few hundred points.
    method = "exact" if len(points) <= EXACT_TSNE_MAX_POINTS else "barnes_hut"
    return TSNE(n_components=2, init="pca", perplexity=perplexity, method=method,
                random_state=ANALYSIS_SEED).fit_transform(points)


def analyse(method: nn.Module, data: Dataset, eps: float, steps: int, n_examples: int = 500,
            n_tsne: int = 300) -> LatentAnalysis:
    """All four analyses on the first `n_examples` test points (t-SNE on the first `n_tsne`),
    x' = PGD-L∞(ε, `steps`) through `predict` with a fixed seed."""
    device = next(method.parameters()).device
    test = data.test.head(n_examples).to(device)
    train = data.train.head(KNN_TRAIN_EXAMPLES).to(device)
    encode = representation(method)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(method):
        torch.manual_seed(ANALYSIS_SEED)
        x_adv = _adversarial(method, test, eps, steps)
        z, z_adv, train_z = _embed(encode, test.x), _embed(encode, x_adv), _embed(encode, train.x)
        with torch.no_grad():
            pred_adv = method(x_adv).argmax(1)
    sens = sensitivity(z, z_adv)
    knn_clean, knn_adv = knn_accuracies(train_z, train.y, z, z_adv, test.y)
    m = min(n_tsne, len(test))
    return LatentAnalysis(
        eps=eps,
        n_examples=len(test),
        adv_acc=(pred_adv == test.y).float().mean().item(),
        sensitivity_median=sens.median().item(),
        sensitivity_mean=sens.mean().item(),
        sensitivity_std=sens.std().item() if len(sens) > 1 else 0.0,
        separation_ratio=separation_ratio(z, test.y, z_adv, pred_adv),
        knn_clean_acc=knn_clean,
        knn_adv_acc=knn_adv,
        tsne=tsne_2d(z[:m], z_adv[:m]),
        tsne_label=np.concatenate([test.y[:m].cpu().numpy()] * 2),
        tsne_adversarial=np.repeat([False, True], m),
    )


def _adversarial(method: nn.Module, split: Split, eps: float, steps: int,
                 batch_size: int = 512) -> torch.Tensor:
    return torch.cat([pgd(method, split.x[i:i + batch_size], split.y[i:i + batch_size], eps, steps)
                      for i in range(0, len(split), batch_size)])

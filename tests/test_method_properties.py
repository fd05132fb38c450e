"""The defining properties of TLA and ADR, checked against brute force or geometry rather than
against numbers these tests wrote."""
from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from trainables.methods import METHODS, Method, TrainSettings
from trainables.methods.adr import ADRHparams, global_compactness, pair_weights
from trainables.methods.tla import TLAHparams, pick_negatives, pick_positives
from trainables.models import ModelSpec, build_model


# --- TLA ------------------------------------------------------------------------------------
def brute_force_nearest(anchor: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor,
                        label: int) -> int:
    """The paper's D(a, b) = 1 - |a.b| / (|a||b|), minimised over codes of another class."""
    best, best_d = -1, math.inf
    for j, (code, lab) in enumerate(zip(codes.tolist(), labels.tolist())):
        if lab == label:
            continue
        dot = sum(p * q for p, q in zip(anchor.tolist(), code))
        d = 1 - abs(dot) / (math.hypot(*anchor.tolist()) * math.hypot(*code))
        if d < best_d:
            best, best_d = j, d
    return best


def hand_made_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    candidates = torch.tensor([
        [1.0, 0.0, 0.0],    # class 0
        [0.9, 0.1, 0.0],    # class 0: closest to anchor 0 of all, but its own class
        [0.0, 5.0, 0.1],    # class 1: long code, small angle to anchor 1
        [-3.0, -0.3, 0.0],  # class 2: antiparallel to anchor 0, so D ~ 0 (D ignores sign)
        [0.5, 0.5, 0.7],    # class 1
        [0.0, 0.0, 1.0],    # class 2
    ])
    labels = torch.tensor([0, 0, 1, 2, 1, 2])
    anchors = torch.tensor([[1.0, 0.12, 0.0], [0.05, 0.2, 0.0], [0.3, 0.3, 0.9]])
    anchor_labels = torch.tensor([0, 2, 1])
    return anchors, candidates, anchor_labels, labels


def test_tla_hard_negative_is_the_nearest_other_class_code() -> None:
    anchors, candidates, y_anchor, y_cand = hand_made_batch()
    idx, valid = pick_negatives(anchors, candidates, y_anchor, y_cand, hard=True)
    expected = [brute_force_nearest(a, candidates, y_cand, int(label))
                for a, label in zip(anchors, y_anchor)]
    assert idx.tolist() == expected
    assert valid.all()
    assert expected[0] == 3  # the antiparallel code wins: D uses |a.b|


def test_tla_hard_negative_on_random_codes_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(40, 8, generator=gen)
    labels = torch.randint(0, 5, (40,), generator=gen)
    idx, _ = pick_negatives(codes, codes, labels, labels, hard=True)
    assert idx.tolist() == [brute_force_nearest(a, codes, labels, int(lab))
                            for a, lab in zip(codes, labels)]


def test_tla_random_negative_is_another_class_but_not_always_the_nearest() -> None:
    anchors, candidates, y_anchor, y_cand = hand_made_batch()
    torch.manual_seed(0)
    draws = torch.stack([pick_negatives(anchors, candidates, y_anchor, y_cand, hard=False)[0]
                         for _ in range(300)])  # [300, anchors]
    hard, _ = pick_negatives(anchors, candidates, y_anchor, y_cand, hard=True)
    for a in range(len(anchors)):
        others = {j for j in range(len(candidates)) if y_cand[j] != y_anchor[a]}
        chosen = draws[:, a]
        assert set(chosen.tolist()) == others  # every other-class code is drawn, no same-class
        share_hard = (chosen == hard[a]).float().mean().item()
        assert abs(share_hard - 1 / len(others)) < 0.1


def test_tla_negative_is_flagged_missing_when_the_batch_has_one_class() -> None:
    codes = torch.randn(4, 3)
    _, valid = pick_negatives(codes, codes, torch.zeros(4, dtype=torch.long),
                              torch.zeros(4, dtype=torch.long))
    assert not valid.any()


def test_tla_positive_is_another_image_of_the_class_when_there_is_one() -> None:
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    torch.manual_seed(0)
    for _ in range(20):
        pos = pick_positives(y)
        for i, j in enumerate(pos.tolist()):
            assert y[j] == y[i]
            assert j != i or (y == y[i]).sum() == 1
    assert pick_positives(y)[3] == 3  # the only image of class 2 is its own positive


# --- ADR ------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [3, 12])
def test_adr_pair_weights_pull_same_labels_and_push_others(num_classes: int) -> None:
    y = torch.arange(2 * num_classes) % num_classes
    w = pair_weights(y, 0.99)
    for i, j in itertools.product(range(len(y)), repeat=2):
        if y[i] == y[j]:
            assert w[i, j] == pytest.approx(1.0)
        else:
            assert w[i, j] == pytest.approx(1 - 1 / 0.99)
            assert w[i, j] < 0


def mean_distances(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean L1 distance within classes, mean L1 distance between class means."""
    d = torch.cdist(z, z, p=1)
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    means = torch.stack([z[y == c].mean(0) for c in y.unique()])
    between = torch.cdist(means, means, p=1)
    off_diagonal = ~torch.eye(len(means), dtype=torch.bool)
    return d[same].mean().item(), between[off_diagonal].mean().item()


@pytest.mark.parametrize("num_classes", [3, 12])
def test_adr_global_compactness_step_tightens_classes_and_separates_them(num_classes: int) -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(4 * num_classes) % num_classes
    centres = 3 * torch.randn(num_classes, 6, generator=gen)
    z = (centres[y] + torch.randn(len(y), 6, generator=gen)).requires_grad_(True)
    within, between = mean_distances(z.detach(), y)
    # The adversarial codes are the ones that move (the clean codes are stop-gradient targets).
    loss = global_compactness(z, z, y, 0.99)
    (grad,) = torch.autograd.grad(loss, z)
    z_next = z.detach() - 0.5 * grad / grad.abs().max()
    within_next, between_next = mean_distances(z_next, y)
    assert within_next < within
    assert between_next > between


def test_adr_global_compactness_pushes_apart_when_all_labels_differ() -> None:
    # Only different-label pairs: the loss must fall as the codes spread out.
    z = torch.randn(12, 4)
    y = torch.arange(12)
    assert global_compactness(2 * z, 2 * z, y) < global_compactness(z, z, y) < 0


def small_method(name: str, hp: Any, num_classes: int) -> Method:
    torch.manual_seed(0)
    spec = ModelSpec((1, 8, 8), num_classes, 8, (0.5,), (0.3,))
    settings = TrainSettings(lr=1e-3, optimizer="adam", weight_decay=0.0, train_eps=0.3,
                             train_steps=2, train_step_size=None, num_classes=num_classes)
    return METHODS.get(name)(build_model("small-cnn", spec), hp, settings)


VARIANTS = {
    "tla-random-negative": ("tla", TLAHparams(negative="random")),
    "tla-switched-anchor": ("tla", TLAHparams(anchor="clean")),
    "adr-pgd": ("adr", ADRHparams()),
    "adr-trades": ("adr", ADRHparams(base="trades")),
}


@pytest.mark.parametrize("num_classes", [3, 12])
@pytest.mark.parametrize("name, hp", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_train_for_any_number_of_classes(name: str, hp: Any, num_classes: int) -> None:
    method = small_method(name, hp, num_classes)
    x, y = torch.rand(24, 1, 8, 8), torch.arange(24) % num_classes
    before = [p.detach().clone() for p in method.model.parameters()]
    out = method.train_step(x, y)
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.model.parameters()))
    assert method.predict(x).shape == (24, num_classes)


@pytest.mark.parametrize("hp_class, field, bad", [
    (TLAHparams, "negative", "hardest"),
    (TLAHparams, "anchor", "positive"),
    (ADRHparams, "base", "madry"),
])
def test_categorical_knobs_are_checked(hp_class: type, field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=field):
        hp_class(**{field: bad})

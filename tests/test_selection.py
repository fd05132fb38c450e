"""What the search selects on: the strong validation attack sees through a masked model that the
per-epoch PGD on cross-entropy does not (trainables.selection)."""
import torch
from torch import nn

from conftest import train_method
from trainables.evaluate import pgd_accuracy
from trainables.selection import strong_robust_accuracy

EPS = 0.1


class SaturatedSoftmax(nn.Module):
    """The same classifier with its logits scaled by 1e4: the same predictions, but the softmax
    saturates, so cross-entropy's input gradient underflows to zero on confident points (gradient
    masking). A margin loss such as DLR is scale-free and still has a gradient."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e4 * self.net(x)


def test_the_strong_value_sees_through_a_saturated_softmax_that_masks_pgd(digits, one_thread):
    honest = train_method(digits, "standard", epochs=3)
    masked = SaturatedSoftmax(honest).eval()
    val = digits.val
    honest_strong = strong_robust_accuracy(honest, val, EPS, steps=10, restarts=1)
    masked_pgd = pgd_accuracy(masked, val, EPS, steps=10)
    masked_strong = strong_robust_accuracy(masked, val, EPS, steps=10, restarts=1)
    # PGD on CE is fooled by the masking: the masked model looks far more robust than it is.
    assert masked_pgd > honest_strong + 0.2, (masked_pgd, honest_strong)
    # The strong value is not: about what the same classifier gets without the masking.
    assert abs(masked_strong - honest_strong) < 0.1, (masked_strong, honest_strong)

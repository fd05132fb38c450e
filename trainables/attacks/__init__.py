"""Attacks in [0, 1] pixel units. A threat model (random_init / step / project) is kept apart from
the attack loop; loops differentiate a per-example loss w.r.t. the input only
(`torch.autograd.grad`), run the model in eval mode and restore its mode afterwards."""
from trainables.attacks.core import (
    LinfBall,
    ce_loss,
    eval_mode,
    fgsm,
    pgd,
)

__all__ = ["LinfBall", "ce_loss", "eval_mode", "fgsm", "pgd"]

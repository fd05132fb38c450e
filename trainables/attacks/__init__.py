"""Attacks in [0, 1] pixel units. A threat model (random_init / step / project) is kept apart from
the attack loop; loops differentiate a per-example loss w.r.t. the input only
(`torch.autograd.grad`), run the model in eval mode and restore its mode afterwards.

`ATTACKS` names the evaluation attacks (see `trainables.attacks.evaluation`); `bpda` is for
defenses whose `predict` has a non-differentiable step."""
from trainables.attacks.core import (
    THREAT_MODELS,
    L2Ball,
    LinfBall,
    ball_excess,
    bpda,
    ce_loss,
    correct,
    cw_linf,
    eval_mode,
    fgsm,
    input_grad,
    margin_loss,
    mim,
    pgd,
    pgd_ball,
    pgd_l2,
    restart_until_fooled,
)
from trainables.attacks.evaluation import ATTACKS, AttackSettings, EvalAttack, grid_attacks, label

__all__ = [
    "ATTACKS",
    "AttackSettings",
    "EvalAttack",
    "L2Ball",
    "LinfBall",
    "THREAT_MODELS",
    "ball_excess",
    "bpda",
    "ce_loss",
    "correct",
    "cw_linf",
    "eval_mode",
    "fgsm",
    "grid_attacks",
    "input_grad",
    "label",
    "margin_loss",
    "mim",
    "pgd",
    "pgd_ball",
    "pgd_l2",
    "restart_until_fooled",
]

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (output, y) -> per-example loss


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


class LinfBall:
    """The L∞ ball of radius eps around x, intersected with the [0, 1] image box."""

    norm = "Linf"

    def __init__(self, eps: float):
        self.eps = eps

    def random_init(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0.0, 1.0)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        return x_adv + step_size * grad.sign()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode (BatchNorm uses running stats, dropout off), then restore."""
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)


def input_grad(net: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_x of the summed per-example loss; parameters' .grad are never touched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(net(x), y).sum()
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         loss_fn: LossFn = ce_loss) -> torch.Tensor:
    """One signed-gradient step of size eps. `net` maps x to what loss_fn reads (its full
    inference path); it runs in eval mode and gets its mode back."""
    ball = LinfBall(eps)
    with eval_mode(net):
        return ball.project(ball.step(x, input_grad(net, loss_fn, x, y), eps), x).detach()


def pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
        step_size: float | None = None, restarts: int = 1, random_start: bool = True,
        loss_fn: LossFn = ce_loss) -> torch.Tensor:
    """PGD-L∞ maximising loss_fn. With several restarts, keeps per example the restart with the
    highest final loss. step_size None: 2.5 * eps / steps (Madry et al.). `net` runs in eval
    mode and gets its mode back."""
    if eps == 0 or steps == 0:
        return x.detach().clone()
    with eval_mode(net):
        return _pgd_loop(net, x, y, LinfBall(eps), steps, step_size, restarts, random_start, loss_fn)


def _pgd_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ball: LinfBall, steps: int,
              step_size: float | None, restarts: int, random_start: bool,
              loss_fn: LossFn) -> torch.Tensor:
    eps = ball.eps
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    best_x, best_loss = x.detach().clone(), None
    for _ in range(restarts):
        x_adv = ball.random_init(x) if random_start else x.detach().clone()
        for _ in range(steps):
            grad = input_grad(net, loss_fn, x_adv, y)
            x_adv = ball.project(ball.step(x_adv, grad, alpha), x).detach()
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            loss = loss_fn(net(x_adv), y)
        if best_loss is None:
            best_x, best_loss = x_adv, loss
        else:
            better = loss > best_loss
            best_x = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_adv, best_x)
            best_loss = torch.maximum(loss, best_loss)
    return best_x

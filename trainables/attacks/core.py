"""Threat models, losses and attack loops, all in [0, 1] pixel units.

A threat model (`random_init` / `step` / `project`) is kept apart from the loop that ascends a
per-example loss. Loops differentiate w.r.t. the input only (`torch.autograd.grad`), so the
parameters' `.grad` are never touched, and run the model in eval mode, restoring its mode.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (output, y) -> per-example loss
Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> x_adv
Transform = Callable[[torch.Tensor], torch.Tensor]  # x -> x' of the same shape


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The CW margin max_{j≠y} z_j − z_y: positive exactly when x is misclassified, and unlike CE
    it does not saturate when the softmax does."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.amax(1) - true


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape [N] to [N, 1, 1, ...] so it broadcasts against a batch shaped like `like`."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _norms(delta: torch.Tensor, p: float) -> torch.Tensor:
    return delta.flatten(1).norm(p=p, dim=1)


class ThreatModel(Protocol):
    """Where an attack may go: the ε-ball of `norm` around x, intersected with [0, 1]."""

    norm: str
    eps: float

    def random_init(self, x: torch.Tensor) -> torch.Tensor: ...
    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor: ...
    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...
    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


class LinfBall:
    """The L∞ ball of radius eps around x, intersected with the [0, 1] image box."""

    norm = "Linf"

    def __init__(self, eps: float):
        self.eps = eps

    def random_init(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0.0, 1.0)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        """Steepest ascent for the L∞ norm: step_size · sign(∇)."""
        return x_adv + step_size * grad.sign()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _norms(x_adv - x, float("inf"))


class L2Ball:
    """The L2 ball of radius eps around x, intersected with the [0, 1] image box."""

    norm = "L2"

    def __init__(self, eps: float):
        self.eps = eps

    def random_init(self, x: torch.Tensor) -> torch.Tensor:
        """Uniform in the ball: a uniform direction at radius eps·u^(1/d), u ~ U(0, 1)."""
        direction = torch.randn_like(x)
        direction = direction / _per_example(_norms(direction, 2) + 1e-12, x)
        radius = self.eps * torch.rand(len(x), device=x.device) ** (1.0 / x[0].numel())
        return (x + direction * _per_example(radius, x)).clamp_(0.0, 1.0)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        """Steepest ascent for the L2 norm: step_size · ∇ / ‖∇‖₂ (a zero gradient stays put)."""
        return x_adv + step_size * grad / _per_example(_norms(grad, 2) + 1e-12, grad)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Shrink δ = x_adv − x to ‖δ‖₂ ≤ eps, then clamp to the box; clamping only shrinks
        |δ_i| (x itself is in the box), so the result stays in the ball."""
        delta = x_adv - x
        scale = (self.eps / (_norms(delta, 2) + 1e-12)).clamp(max=1.0)
        return (x + delta * _per_example(scale, x)).clamp_(0.0, 1.0)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _norms(x_adv - x, 2)


THREAT_MODELS: dict[str, Callable[[float], ThreatModel]] = {"Linf": LinfBall, "L2": L2Ball}


def ball_excess(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """How far x_adv lies outside the ε-ball around x or the [0, 1] box (0 inside), over the
    worst example."""
    distance = THREAT_MODELS[norm](eps).distance(x_adv, x)
    outside_box = (x_adv - x_adv.clamp(0.0, 1.0)).abs().flatten(1).amax(1)
    excess = torch.maximum(distance - eps, outside_box)
    return torch.cat([excess.new_zeros(1), excess]).max()  # 0 inside the ball, and for no example


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


def input_grad(net: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
               eot: int = 1) -> torch.Tensor:
    """∇_x of the summed per-example loss; parameters' .grad are never touched.

    With eot > 1 (Expectation over Transformation, Athalye et al. 2018) the gradient is averaged
    over `eot` forward passes: for a randomised defense this estimates ∇_x E[loss]."""
    return _probe(net, loss_fn, x, y, eot).grad


@dataclass(frozen=True)
class _Probe:
    """What one gradient evaluation at x learns: per-example loss and misclassification (both
    averaged over the EOT samples: the logits are) and ∇_x of the summed loss."""

    loss: torch.Tensor
    fooled: torch.Tensor
    grad: torch.Tensor


def _probe(net: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
           eot: int) -> _Probe:
    x = x.detach().requires_grad_(True)
    grad, logits = torch.zeros_like(x), 0.0
    for _ in range(eot):
        with torch.enable_grad():
            sample = net(x)
            loss = loss_fn(sample, y).sum()
            # A defense that cuts x out of the graph (a hard threshold) has a zero gradient:
            # return it as such, for the attack to fail and the sanity checks to see it.
            if loss.requires_grad:
                (step_grad,) = torch.autograd.grad(loss, x, allow_unused=True)
                if step_grad is not None:
                    grad += step_grad
        logits = logits + sample.detach()
    logits = logits / eot
    # y is a label per example for the evaluation attacks; a training adversary may pass another
    # target (TRADES: the clean probabilities), for which "misclassified" has no meaning.
    fooled = logits.argmax(1) != y if y.dim() == 1 else torch.zeros(len(x), dtype=torch.bool, device=x.device)
    return _Probe(loss_fn(logits, y), fooled, grad / eot)


class _BestIterate:
    """Per example, the best point an attack has visited: a misclassified one over a correctly
    classified one, then the one with the higher loss. The last iterate of PGD is not it: a
    fixed step size overshoots and oscillates, so a point fooled at step 7 may be classified
    correctly again at step 20."""

    def __init__(self, x: torch.Tensor):
        self.x = x.detach().clone()
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.full((len(x),), float("-inf"), device=x.device)

    def offer(self, x: torch.Tensor, loss: torch.Tensor, fooled: torch.Tensor) -> None:
        better = (fooled & ~self.fooled) | ((fooled == self.fooled) & (loss > self.loss))
        self.x[better] = x[better].detach()
        self.fooled = self.fooled | fooled
        self.loss = torch.where(better, loss, self.loss)


class _IdentityBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, forward_fn: Transform):
        return forward_fn(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


def bpda(forward_fn: Transform) -> Transform:
    """BPDA (Athalye et al., 2018) with the identity as the approximation: the forward pass
    computes g(x), the backward pass treats ∂g/∂x as I.

    Wrap each non-differentiable step of a defense's `predict` (quantisation, a signed step, an
    argmax or threshold) so that gradient attacks through `predict` see a useful gradient instead
    of zero. g must return a tensor shaped like x; it runs without autograd (use
    `torch.enable_grad()` inside g if it needs gradients of its own, e.g. a purification step)."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        return _IdentityBackward.apply(x, forward_fn)

    return apply


def fgsm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         loss_fn: LossFn = ce_loss, eot: int = 1) -> torch.Tensor:
    """One signed-gradient step of size eps. `net` maps x to what loss_fn reads (its full
    inference path); it runs in eval mode and gets its mode back."""
    ball = LinfBall(eps)
    with eval_mode(net):
        return ball.project(ball.step(x, input_grad(net, loss_fn, x, y, eot), eps), x).detach()


def pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
        step_size: float | None = None, restarts: int = 1, random_start: bool = True,
        loss_fn: LossFn = ce_loss, eot: int = 1, keep_best: bool = True) -> torch.Tensor:
    """PGD-L∞ maximising loss_fn. Per example it returns the best iterate of every step and
    restart (restarts run as one batch; see `_BestIterate`), or with keep_best=False the last
    iterate of the best restart (Madry et al.'s training adversary: no extra forward pass).
    step_size None: 2.5 * eps / steps (Madry et al.). `net` runs in eval mode and gets its mode
    back."""
    return pgd_ball(net, x, y, LinfBall(eps), steps, step_size, restarts, random_start, loss_fn,
                    eot, keep_best)


def pgd_l2(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
           step_size: float | None = None, restarts: int = 1, random_start: bool = True,
           loss_fn: LossFn = ce_loss, eot: int = 1) -> torch.Tensor:
    """PGD-L2 (normalised-gradient steps, projection onto the L2 ball); otherwise as `pgd`."""
    return pgd_ball(net, x, y, L2Ball(eps), steps, step_size, restarts, random_start, loss_fn, eot)


def pgd_ball(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ball: ThreatModel, steps: int,
             step_size: float | None = None, restarts: int = 1, random_start: bool = True,
             loss_fn: LossFn = ce_loss, eot: int = 1, keep_best: bool = True) -> torch.Tensor:
    """PGD in any threat model, all restarts as one batch of restarts·N examples; see `pgd`."""
    if ball.eps == 0 or steps == 0 or len(x) == 0:
        return x.detach().clone()
    alpha = step_size if step_size is not None else 2.5 * ball.eps / steps
    n = len(x)
    x_rep = x.repeat(restarts, *[1] * (x.dim() - 1))
    y_rep = y.repeat(restarts, *[1] * (y.dim() - 1))
    with eval_mode(net):
        start = ball.random_init(x_rep) if random_start else x_rep.detach().clone()
        best = _BestIterate(start)
        last = _ascend(net, x_rep, y_rep, ball, start, steps, alpha, loss_fn, 0.0, eot,
                       best if keep_best else None)
        if not keep_best and restarts == 1:
            return last
        best.offer(last, *_score(net, loss_fn, last, y_rep))
    return _best_restart(best, n)


def _best_restart(best: _BestIterate, n: int) -> torch.Tensor:
    """Per example, the best of its restarts (rows k·n + i of the batch), by `_BestIterate`'s
    order."""
    merged = _BestIterate(best.x[:n])
    for k in range(len(best.x) // n):
        rows = slice(k * n, (k + 1) * n)
        merged.offer(best.x[rows], best.loss[rows], best.fooled[rows])
    return merged.x


@torch.no_grad()
def _score(net: nn.Module, loss_fn: LossFn, x: torch.Tensor,
           y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example loss, misclassified) at x: one forward pass."""
    logits = net(x)
    return loss_fn(logits, y), logits.argmax(1) != y


def ascend(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ball: ThreatModel,
           start: torch.Tensor, steps: int, step_size: float, loss_fn: LossFn,
           momentum: float = 0.0, eot: int = 1) -> torch.Tensor:
    """`steps` projected ascent steps on loss_fn from `start`; per example the best iterate
    (`_BestIterate`). With momentum μ > 0 (MIM, Dong et al. 2018) the step direction is
    g_t = μ·g_{t−1} + ∇/‖∇‖₁. The caller sets eval mode."""
    best = _BestIterate(start)
    last = _ascend(net, x, y, ball, start, steps, step_size, loss_fn, momentum, eot, best)
    best.offer(last, *_score(net, loss_fn, last, y))
    return best.x


def _ascend(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ball: ThreatModel,
            start: torch.Tensor, steps: int, step_size: float, loss_fn: LossFn,
            momentum: float, eot: int, best: _BestIterate | None) -> torch.Tensor:
    """The ascent loop: returns the last iterate, and offers every earlier one to `best` (their
    loss comes from the forward pass the gradient needs anyway)."""
    x_adv, velocity = start.detach(), torch.zeros_like(x)
    for _ in range(steps):
        probe = _probe(net, loss_fn, x_adv, y, eot)
        if best is not None:
            best.offer(x_adv, probe.loss, probe.fooled)
        grad = probe.grad
        if momentum:
            velocity = momentum * velocity + grad / _per_example(_norms(grad, 1) + 1e-12, grad)
            grad = velocity
        x_adv = ball.project(ball.step(x_adv, grad, step_size), x).detach()
    return x_adv


def cw_linf(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
            step_size: float | None = None, eot: int = 1) -> torch.Tensor:
    """CW-L∞: PGD-L∞ on the margin loss max_{j≠y} z_j − z_y (Carlini & Wagner's objective)."""
    return pgd(net, x, y, eps, steps, step_size, loss_fn=margin_loss, eot=eot)


def mim(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
        decay: float = 1.0, eot: int = 1) -> torch.Tensor:
    """MIM (Dong et al., 2018): L∞ steps of eps/steps along sign(g_t), g_t = μ·g_{t−1} +
    ∇/‖∇‖₁, from x itself (no random start), on CE."""
    if eps == 0 or steps == 0:
        return x.detach().clone()
    with eval_mode(net):
        return ascend(net, x, y, LinfBall(eps), x, steps, eps / steps, ce_loss, decay, eot)


@torch.no_grad()
def correct(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example bool: does `net` classify x as y."""
    return net(x).argmax(1) == y


def restart_until_fooled(attack: Attack, judge: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         restarts: int) -> torch.Tensor:
    """Run `attack` up to `restarts` times, each time only on the examples `judge` still
    classifies correctly (a cascade, as in AutoAttack): per example the first x_adv that fools
    `judge`, else the last attempt. So an example counts as robust only if every restart failed."""
    x_adv = x.detach().clone()
    with eval_mode(judge):
        robust = correct(judge, x, y)
        for _ in range(restarts):
            todo = robust.nonzero().squeeze(1)
            if len(todo) == 0:
                break
            x_adv[todo] = attack(x[todo], y[todo])
            robust[todo] = correct(judge, x_adv[todo], y[todo])
    return x_adv

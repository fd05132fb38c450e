"""The defining properties of ATLD, AFD, ER-Classifier (with ER-Trades) and the ER-Detector, each
checked on tiny random data with the small CNN."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import trainables.methods.er_classifier as er_module
from trainables.attacks import LinfBall
from trainables.data import Split
from trainables.er_detector import detector_metrics, fit_detector, hidden_means, noisy_like, pgd_attack
from trainables.methods import METHODS, Method, TrainSettings
from trainables.methods.atld import ATLDHparams
from trainables.methods.er_classifier import PRIORS, ERHparams, sample_prior
from trainables.models import ModelSpec, build_model

NUM_CLASSES = 7  # not 10: nothing may assume ten classes
EPS = 0.2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors here are tiny: one thread is fastest and never oversubscribes a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str, seed: int = 0, embed_dim: int = 8, **knobs) -> Method:
    torch.manual_seed(seed)
    spec = ModelSpec((1, 8, 8), NUM_CLASSES, embed_dim, (0.5,), (0.3,))
    settings = TrainSettings(lr=1e-3, optimizer="adam", weight_decay=0.0, train_eps=EPS,
                             train_steps=2, train_step_size=None, num_classes=NUM_CLASSES)
    method_cls = METHODS.get(name)
    return method_cls(build_model("small-cnn", spec), method_cls.Hparams(**knobs), settings)


def batch(n: int = 28, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % NUM_CLASSES


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


# --- ATLD ------------------------------------------------------------------------------------
def manifold(method: Method, x: torch.Tensor) -> torch.Tensor:
    """D⁰(f(x)): higher means "more natural" to the discriminator."""
    with torch.no_grad():
        return method.manifold_logit(method.model(x))


def set_manifold_bias(method: Method, bias: float) -> None:
    """Push σD⁰ towards 0 (bias ≪ 0: every input looks adversarial) or 1 (bias ≫ 0)."""
    with torch.no_grad():
        method.discriminator[-1].bias[0] = bias


def test_atld_lmae_reads_no_labels() -> None:
    x, y = batch()
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    assert not torch.equal(shuffled, y)
    first, second = make("atld"), make("atld")
    recorded = {}
    for key, method, labels in [("y", first, y), ("shuffled", second, shuffled)]:
        original = method.lmae
        method.lmae = lambda inputs, key=key, original=original: recorded.setdefault(key, original(inputs))
        torch.manual_seed(5)
        method.train_step(x, labels)
    assert not torch.equal(recorded["y"], x)
    torch.testing.assert_close(recorded["y"], recorded["shuffled"], rtol=0, atol=0)


def test_atld_lmae_moves_away_from_the_natural_manifold() -> None:
    method = make("atld")
    x, _ = batch()
    torch.manual_seed(2)
    x_adv = method.lmae(x)
    torch.manual_seed(2)
    x_start = LinfBall(EPS).random_init(x)  # the same uniform start the LMAE step took
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert manifold(method, x_adv).mean() < manifold(method, x_start).mean()


def test_atld_discriminator_has_one_plus_c_outputs() -> None:
    method = make("atld")
    x, _ = batch()
    with torch.no_grad():
        out = method.discriminator(method.model(x))
    assert out.shape == (len(x), 1 + NUM_CLASSES)


def test_atld_without_imt_predicts_with_the_model() -> None:
    method = make("atld", imt="off").eval()
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(method.predict(x), method.model(x))


def test_atld_full_imt_moves_flagged_inputs_towards_natural_within_the_ball() -> None:
    method = make("atld", imt="full").eval()
    x, _ = batch()
    set_manifold_bias(method, -20.0)  # all flagged adversarial
    x_t = method.imt_purify(x)
    assert ((x_t - x).flatten(1).abs().amax(1) > 0).all()
    assert (x_t - x).abs().max() <= EPS + 1e-6
    assert x_t.min() >= 0 and x_t.max() <= 1
    assert manifold(method, x_t).mean() > manifold(method, x).mean()

    set_manifold_bias(method, 20.0)  # none flagged: inputs pass unchanged
    torch.testing.assert_close(method.imt_purify(x), x, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(method.predict(x), method.model(x))


def test_atld_limited_imt_halves_the_step_where_the_discriminator_is_unsure() -> None:
    method = make("atld", imt="limited").eval()
    x, _ = batch()
    set_manifold_bias(method, 0.0)
    with torch.no_grad():
        method.discriminator[-1].weight[0].fill_(1e-3)  # σD⁰ ≈ 0.5 everywhere, a non-zero direction
    step = (method.imt_purify(x) - x).abs()
    assert step.max() <= EPS / 2 + 1e-6
    assert step.max() >= EPS / 2 - 1e-6


def test_atld_predict_backward_is_straight_through_imt() -> None:
    method = make("atld", imt="full").eval()
    set_manifold_bias(method, -20.0)
    x, _ = batch()
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(method.predict(x).logsumexp(1).sum(), x)
    assert all(p.grad is None for p in method.parameters())  # IMT never writes parameter grads
    # BPDA: ∂x_t/∂x = I everywhere, also on pixels IMT's clamp puts at 0 or 1, so no pixel of the
    # attack's gradient is masked by the purification step.
    x_t = method.imt_purify(x.detach()).requires_grad_(True)
    (grad_at_x_t,) = torch.autograd.grad(method.model(x_t).logsumexp(1).sum(), x_t)
    clamped = (x_t == 0) | (x_t == 1)
    assert clamped.any()
    torch.testing.assert_close(grad, grad_at_x_t)
    assert (grad[clamped] != 0).float().mean() > 0.9


def test_atld_clean_target_is_frozen_only_when_asked() -> None:
    x, _ = batch()
    assert not make("atld", detach_clean=True).train().clean_logits(x).requires_grad  # authors' copy
    assert make("atld").train().clean_logits(x).requires_grad  # the default: eq. 7 moves both


def test_atld_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="imt"):
        ATLDHparams(imt="half")
    with pytest.raises(ValueError, match="smoothing"):
        make("atld", smoothing=0.9)  # 7 classes: the true class would get less than the others


# --- AFD -------------------------------------------------------------------------------------
def test_afd_discriminator_is_conditioned_on_the_label() -> None:
    method = make("afd").eval()  # eval: no power iteration, so the weights are the same each call
    z = torch.randn(5, method.model.embed_dim)
    with torch.no_grad():
        scores = torch.stack([method.discriminator(z, torch.full((5,), c)) for c in range(NUM_CLASSES)])
        torch.testing.assert_close(method.discriminator(z, torch.zeros(5, dtype=torch.long)), scores[0])
    assert (scores - scores[0]).abs().amax() > 1e-2


def test_afd_spectral_norm_is_active_on_every_discriminator_layer() -> None:
    method = make("afd")
    layers = [m for m in method.discriminator.modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    assert len(layers) == 4  # three FC layers and the label projection
    with torch.no_grad():
        for layer in layers:
            assert parametrize.is_parametrized(layer, "weight")
            layer.parametrizations.weight.original.mul_(100.0)  # raw weights far above norm 1
        z, y = torch.randn(16, method.model.embed_dim), torch.arange(16) % NUM_CLASSES
        for _ in range(20):  # power iterations run on forward passes in train mode
            method.discriminator(z, y)
        for layer in layers:
            assert torch.linalg.matrix_norm(layer.weight, ord=2) == pytest.approx(1.0, abs=0.05)


def test_afd_train_step_updates_encoder_decoder_and_discriminator() -> None:
    method = make("afd")
    x, y = batch()
    parts = {"E": method.model.encoder, "Dc": method.model.classifier, "Da": method.discriminator}
    before = {name: params(module) for name, module in parts.items()}
    out = method.train_step(x, y)
    assert {"loss", "ce", "d_loss", "e_loss"} <= out.keys()
    for name, module in parts.items():
        assert changed(before[name], module), f"{name} was not updated"


def test_afd_predicts_from_the_normalised_code() -> None:
    method = make("afd", normalize=True).eval()
    x, _ = batch()
    with torch.no_grad():
        z = method.encode(x)
        torch.testing.assert_close(z.norm(dim=1), torch.ones(len(x)))
        torch.testing.assert_close(method.predict(x), method.model.head(z))


# --- ER-Classifier ---------------------------------------------------------------------------
def test_er_critic_weights_stay_within_the_clip() -> None:
    method = make("er-classifier", critic_width=32, critic_depth=2)
    x, y = batch()
    for _ in range(3):
        method.train_step(x, y)
    clip = method.hp.critic_clip
    largest = max(float(p.detach().abs().max()) for p in method.critic.parameters())
    assert largest <= clip + 1e-9
    assert largest == pytest.approx(clip)  # the clip is binding, not vacuous


@pytest.mark.parametrize("prior", PRIORS)
def test_er_prior_samples_have_the_right_shape_and_spread(prior: str) -> None:
    torch.manual_seed(0)
    z = sample_prior(prior, 20_000, 4, torch.device("cpu"))
    assert z.shape == (20_000, 4)
    if prior == "gaussian":
        assert z.mean().abs() < 0.03 and z.std() == pytest.approx(1.0, abs=0.03)
    elif prior == "uniform":
        assert z.abs().max() <= 3.0 and z.std() == pytest.approx(3 / 3 ** 0.5, abs=0.03)
    else:  # Cauchy(0, 1): heavy tails, median |z| = 1
        assert z.abs().median() == pytest.approx(1.0, abs=0.05) and z.abs().max() > 100


def test_er_critic_separates_the_prior_from_a_collapsed_encoder() -> None:
    # A small critic keeps this fast; weight clipping bounds its scale, so compare the estimate
    # with what it reads between two halves of the prior (≈ 0) and before training.
    method = make("er-classifier", embed_dim=4, critic_width=64, critic_depth=2)
    collapsed = torch.zeros(64, 4)  # every input mapped to one code

    def estimates() -> tuple[float, float]:
        torch.manual_seed(9)
        z_prior, other = (sample_prior("gaussian", 4096, 4, torch.device("cpu")) for _ in range(2))
        with torch.no_grad():
            mean_prior = method.critic(z_prior).mean()
            return (float(mean_prior - method.critic(collapsed).mean()),
                    float(mean_prior - method.critic(other).mean()))

    untrained, _ = estimates()
    for _ in range(200):
        method.critic_step(collapsed)
    separation, null = estimates()
    assert separation > 0
    assert separation > 50 * abs(null) and separation > 50 * abs(untrained)


def test_er_uses_no_critic_at_inference() -> None:
    method = make("er-classifier").eval()
    x, _ = batch()
    with torch.no_grad():
        logits = method.predict(x)
        torch.testing.assert_close(logits, method.model(x))
        for p in method.critic.parameters():
            p.fill_(0.5)
        torch.testing.assert_close(method.predict(x), logits)


def test_er_trades_uses_the_trades_adversary(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = er_module.trades_adversary

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(er_module, "trades_adversary", counting)
    method = make("er-classifier", base="trades", critic_width=32, critic_depth=2)
    x, y = batch()
    before = params(method.model)
    out = method.train_step(x, y)
    assert len(calls) == 1
    assert torch.isfinite(out["loss"]) and changed(before, method.model)


def test_er_base_is_validated() -> None:
    with pytest.raises(ValueError, match="base"):
        ERHparams(base="fgsm")


# --- ER-Detector -----------------------------------------------------------------------------
def test_er_code_concatenates_one_mean_per_hidden_activation_and_z() -> None:
    method = make("er-classifier")
    x, _ = batch(4)
    hidden, z = hidden_means(method.model, x)
    assert hidden.shape == (4, 2)  # the small CNN's two ReLU layers
    torch.testing.assert_close(z, method.model.embed(x))


def test_noisy_examples_match_the_adversarial_l2_norm() -> None:
    x = torch.full((3, 1, 8, 8), 0.5)
    x_adv = x + 0.05 * torch.sign(torch.randn_like(x))
    noisy = noisy_like(x, x_adv, torch.Generator().manual_seed(0))
    torch.testing.assert_close((noisy - x).flatten(1).norm(dim=1), (x_adv - x).flatten(1).norm(dim=1))


def test_er_detector_fits_and_reports_table_4_metrics() -> None:
    method = make("er-classifier", critic_width=32, critic_depth=2)
    x, y = batch(120, seed=4)
    for start in range(0, 80, 40):
        method.train_step(x[start:start + 40], y[start:start + 40])
    train, calib, test = Split(x[:80], y[:80]), Split(x[80:100], y[80:100]), Split(x[100:], y[100:])
    attack = pgd_attack(EPS, steps=2)
    detector = fit_detector(method, train, calib, EPS, attack=attack)
    metrics = detector_metrics(detector, method, test, EPS, attack=attack)
    assert 0.0 <= metrics["acc_nadv"] <= 1.0 and 0.0 <= metrics["acc_com"] <= 1.0
    assert metrics["acc_com"] >= metrics["acc_adv"]
    assert metrics["n_natural"] == metrics["n_adversarial"] == 20

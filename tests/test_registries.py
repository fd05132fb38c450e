"""Contracts checked for everything registered: every method, every model, every search space.
A method, model or space added in a new file is covered without touching this file."""
from __future__ import annotations

import io
import warnings

import optuna
import pytest
import torch

import search_spaces
from trainables.config import TrialConfig
from trainables.methods import METHODS, Method, TrainSettings
from trainables.models import MODELS, EmbedHeadModel, ModelSpec, build_model
from trainables.models.wideresnet import wide_resnet

NUM_CLASSES = 3
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
SHAPE_IDS = ["x".join(map(str, shape)) for shape in SHAPES]
WIDE_PRESETS = {"wrn-28-10": 36.5, "wrn-34-10": 46.2}  # millions of parameters
FAMILIES = ["mnist-like", "cifar-like"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8x8 digits; every class appears several times (TLA and ADR need pairs)."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % NUM_CLASSES


def build_method(name: str, seed: int, optimizer: str = "adam", fused: bool = False) -> Method:
    torch.manual_seed(seed)
    spec = ModelSpec((1, 8, 8), NUM_CLASSES, 4, (0.5,), (0.3,))
    settings = TrainSettings(lr=1e-3, optimizer=optimizer, weight_decay=0.0, train_eps=0.3,
                             train_steps=2, train_step_size=None, num_classes=NUM_CLASSES,
                             fused=fused)
    method_cls = METHODS.get(name)
    return method_cls(build_model("small-cnn", spec), method_cls.Hparams(), settings)


def seeded_step(method: Method, x: torch.Tensor, y: torch.Tensor,
                seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return method.train_step(x, y)


def set_mode(training: bool, *methods: Method) -> None:
    for method in methods:
        method.train(training)


def round_trip(state: dict) -> dict:
    """What a checkpoint goes through: serialised and read back as orch reads it (tensors and
    plain data only), sharing no tensors."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_and_resumes_from_its_state(name: str) -> None:
    x, y = tiny_batch()
    method = build_method(name, seed=0)
    for step in range(2):
        out = seeded_step(method, x, y, seed=step)
        assert "loss" in out
        for key, value in out.items():
            assert not value.requires_grad, f"{name}: {key} is not detached"
            assert torch.isfinite(value).all(), f"{name}: {key}={value} after step {step}"

    resumed = build_method(name, seed=123)  # other initial weights: the state must overwrite them
    resumed.load_state(round_trip(method.state()))
    set_mode(False, method, resumed)
    with torch.no_grad():
        logits = method.predict(x)
        torch.testing.assert_close(resumed.predict(x), logits)
    assert logits.shape == (len(x), NUM_CLASSES)

    set_mode(True, method, resumed)
    expected = seeded_step(method, x, y, seed=7)
    got = seeded_step(resumed, x, y, seed=7)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key],
                                   msg=f"{name}: {key} differs after resume")
    set_mode(False, method, resumed)
    with torch.no_grad():
        torch.testing.assert_close(resumed.predict(x), method.predict(x))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", METHODS.names())
def test_fused_optimizers_take_the_same_steps(name: str, optimizer: str) -> None:
    # On CUDA every optimizer of every method is fused; PyTorch has the same kernels on CPU.
    x, y = tiny_batch()
    plain = build_method(name, seed=0, optimizer=optimizer)
    fused = build_method(name, seed=0, optimizer=optimizer, fused=True)
    assert plain.optimizers and all(g["fused"] for o in fused.optimizers.values() for g in o.param_groups)
    assert not any(g["fused"] for o in plain.optimizers.values() for g in o.param_groups)
    for step in range(3):
        expected, got = seeded_step(plain, x, y, seed=step), seeded_step(fused, x, y, seed=step)
        torch.testing.assert_close(got["loss"], expected["loss"], rtol=1e-4, atol=1e-6)
    if optimizer == "sgd":
        # (Adam moves a parameter whose gradient is ~0 by ±lr either way, so only its losses match.)
        for (key, expected), got in zip(plain.state_dict().items(), fused.state_dict().values()):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")


@pytest.mark.parametrize("name", METHODS.names())
def test_method_declares_itself(name: str) -> None:
    method_cls = METHODS.get(name)
    assert method_cls.description and method_cls.paper
    assert "\n" not in method_cls.description


def spec_for(shape: tuple[int, int, int]) -> ModelSpec:
    return ModelSpec(shape, 5, 6, (0.4,) * shape[0], (0.2,) * shape[0])


def check_embed_and_head(model: EmbedHeadModel, spec: ModelSpec) -> None:
    model.eval()
    x = torch.rand(2, *spec.input_shape)
    with torch.no_grad():
        z = model.embed(x)
        logits = model(x)
        torch.testing.assert_close(model.head(z), logits)
    assert z.shape == (2, spec.embed_dim)
    assert logits.shape == (2, spec.num_classes)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in WIDE_PRESETS])
def test_model_embeds_every_input_shape(name: str, shape: tuple[int, int, int]) -> None:
    spec = spec_for(shape)
    model = build_model(name, spec)
    check_embed_and_head(model, spec)
    assert model.embed_dim == spec.embed_dim


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("depth, width", [(10, 1), (16, 2)])
def test_wide_resnet_of_any_size_embeds_every_input_shape(depth: int, width: int,
                                                          shape: tuple[int, int, int]) -> None:
    # The big presets share this constructor; they are only built (below), to keep tests fast.
    spec = spec_for(shape)
    model = wide_resnet(spec, depth, width)
    check_embed_and_head(model, spec)
    assert model.embed_dim == spec.embed_dim


@pytest.mark.parametrize("name, millions", WIDE_PRESETS.items())
def test_wide_resnet_presets_have_the_published_size(name: str, millions: float) -> None:
    # Zagoruyko & Komodakis / TRADES: 36.5M and 46.2M parameters; z and head replace the final FC.
    model = build_model(name, ModelSpec((3, 32, 32), 10, 16, (0.5,) * 3, (0.25,) * 3))
    trunk = sum(p.numel() for p in model.encoder[:-1].parameters())
    assert abs(trunk / 1e6 - millions) < 0.05


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", sorted(search_spaces.SPACES))
def test_paper_defaults_are_a_point_of_the_space(method: str, family: str) -> None:
    space = search_spaces.get_space(method)
    defaults = space.paper_defaults(family)
    trial = optuna.trial.FixedTrial(defaults)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a fixed value is outside its range
        space.space(trial, family)
    assert set(trial.params) == set(defaults), "paper_defaults must name exactly the searched keys"
    config = TrialConfig.from_flat({"method": method, **trial.params})
    assert config.method == method


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", sorted(search_spaces.SPACES))
def test_sampled_points_are_valid_configs(method: str, family: str) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = search_spaces.get_space(method)
    for _ in range(5):
        trial = study.ask()
        space.space(trial, family)
        flat = {"method": method, **trial.params}
        assert TrialConfig.from_flat(flat).to_flat().items() >= flat.items()


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_has_a_search_space(method: str) -> None:
    assert method in search_spaces.SPACES, f"add search_spaces/{method.replace('-', '_')}.py"


def test_a_registered_method_reaches_orch_methods_and_orch_reproduce(monkeypatch):
    """A ninth method is one registration and one space: `orch methods` lists it and
    `orch reproduce --methods` accepts it (no hand-kept list of methods to forget)."""
    import types

    from click.testing import CliRunner

    from orchestrator.cli import main
    from trainables.methods.baselines import Standard

    class Toy(Standard):
        description = "a toy method registered by a test"

    space = types.ModuleType("toy_space")
    space.METHOD = "toy"
    space.space = search_spaces.SPACES["standard"].space
    space.paper_defaults = search_spaces.SPACES["standard"].paper_defaults
    space.PAPER_CLAIMS = {}
    monkeypatch.setitem(METHODS._entries, "toy", Toy)
    monkeypatch.setitem(search_spaces.SPACES, "toy", space)
    listed = CliRunner().invoke(main, ["methods"])
    assert "toy: a toy method registered by a test" in listed.output
    refused = CliRunner().invoke(main, ["reproduce", "mnist-cpu", "--methods", "toy,nine"])
    assert refused.exit_code == 2
    assert "--methods: unknown nine;" in refused.stderr and "toy" in refused.stderr.split("known:")[1]

import pytest

from orchestrator.sweep.request import parse_number, parse_sets
from trainables.config import ConfigError, TrialConfig, field_types
from trainables.methods import METHODS


@pytest.mark.parametrize("method", METHODS.names())
def test_flat_round_trip_is_lossless(method):
    config = TrialConfig(method=method)
    flat = config.to_flat()
    assert TrialConfig.from_flat(flat) == config
    assert set(flat) == {"method", *field_types(method)}


def test_round_trip_keeps_changed_values():
    config = TrialConfig.from_flat({"method": "er-classifier", "lambda": 0.25, "prior": "cauchy",
                                    "train_eps": 0.1, "eps_grid": [0.1, 0.2], "embed_dim": 3})
    again = TrialConfig.from_flat(config.to_flat())
    assert again.hparams.lambda_ == 0.25 and again.hparams.prior == "cauchy"
    assert again.attack.train_eps == 0.1 and again.eval.eps_grid == (0.1, 0.2)
    assert again.model.embed_dim == 3


def test_unknown_key_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown hyperparameter 'foo'.*lambda"):
        TrialConfig.from_flat({"method": "er-classifier", "foo": 1})


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_eps_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        TrialConfig.from_flat({"method": "madry", "train_eps": bad})


def test_fractions_parse_to_floats():
    assert parse_number("8/255") == pytest.approx(8 / 255)
    parsed = parse_sets(("train_eps=8/255", "prior=cauchy", "embed_dim=8", "eps_grid=0,2/255,4/255"),
                        "er-classifier")
    assert parsed == {"train_eps": pytest.approx(8 / 255), "prior": "cauchy", "embed_dim": 8,
                      "eps_grid": pytest.approx((0.0, 2 / 255, 4 / 255))}


@pytest.mark.parametrize("item", ["lambda", "=3", "lambda=", "embed_dim=2.5", "train_eps=abc"])
def test_malformed_sets_are_rejected(item):
    with pytest.raises(ConfigError):
        parse_sets((item,), "er-classifier")

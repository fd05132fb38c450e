import pytest
import torch
from torch import nn

from trainables.config import DataConfig, TrialConfig
from trainables.data import ResidentSplit, load_dataset
from trainables.trial import build_method, train_one_epoch

# Small budgets so a real sweep takes seconds: 1 epoch, few eval points, short attacks, the quick
# evaluation profile (a test that needs another passes e.g. `--eval standard` after FAST).
FAST = ("--set", "eval_examples=64", "--set", "val_examples=64", "--set", "eval_steps=3",
        "--set", "val_steps=3", "--set", "train_steps=3", "--set", "val_strong_steps=3",
        "--set", "val_strong_restarts=1", "--eval", "quick")


@pytest.fixture(scope="session", autouse=True)
def _stop_ray_at_exit():
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        ray.shutdown()


def train_method(data, method: str, epochs: int, seed: int = 0, **flat) -> nn.Module:
    """A method trained on `data` through the trainables API, in eval mode."""
    torch.manual_seed(seed)
    config = TrialConfig(method=method).replace(lr=3e-3, **flat)
    trained = build_method(config, data, torch.device("cpu"))
    train = ResidentSplit.of(data.train, "cpu")
    for epoch in range(epochs):
        train_one_epoch(trained, train, config.train.batch_size,
                        torch.Generator().manual_seed(100 * seed + epoch))
    return trained.eval()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads contend and run ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    return load_dataset(DataConfig(dataset="digits"))

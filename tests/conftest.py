import pytest

# Small budgets so a real sweep takes seconds: 1 epoch, few eval points, short attacks.
FAST = ("--set", "eval_examples=64", "--set", "val_examples=64", "--set", "eval_steps=3",
        "--set", "val_steps=3", "--set", "train_steps=3")


@pytest.fixture(scope="session", autouse=True)
def _stop_ray_at_exit():
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        ray.shutdown()

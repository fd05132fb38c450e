"""Rebuilding a trained method from the state a trial reported (its checkpoint).

A checkpoint is read with `torch.load(weights_only=True)`: tensors and plain containers only, so
a crafted `state.pt` (from a shared MLflow server, a bucket, a colleague) cannot run code when it
is loaded. The trial's configuration travels inside it as a flat dict of plain values."""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.data import Dataset, load_dataset
from trainables.methods import Method
from trainables.trial import build_method, pick_device

STATE_FILE = "state.pt"
STATE_KEYS = ("method", "epoch", "history", "torch_rng", "config")


class CheckpointRefused(ValueError):
    """A checkpoint that is missing, corrupt, or holds more than tensors and plain data."""


def load_state_file(path: str | Path) -> dict[str, Any]:
    """A checkpoint folder (holding state.pt) or the state.pt file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointRefused(f"{path} not found: expected a trial checkpoint folder with {STATE_FILE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointRefused(_refusal(path, str(error))) from None
    except (RuntimeError, EOFError, OSError):  # torch's zip reader on a truncated or random file
        raise CheckpointRefused(f"{path} is not a readable checkpoint (corrupt or truncated)") from None
    if not isinstance(state, dict) or set(STATE_KEYS) - set(state):
        raise CheckpointRefused(f"{path} is not a trial checkpoint (it lacks {', '.join(STATE_KEYS)})")
    return state


def _refusal(path: Path, error: str) -> str:
    """torch names the first global the file asks for when the file is a pickle of objects."""
    wanted = re.search(r"Unsupported global: GLOBAL (\S+)", error)
    if wanted:
        return (f"{path} asks to run Python code ({wanted.group(1)}) when loaded; refused "
                f"(a checkpoint holds only tensors and plain data)")
    return f"{path} is not a readable checkpoint (corrupt, or not written by orch)"


def restore(state: dict[str, Any], device: str = "auto") -> tuple[TrialConfig, Method, Dataset]:
    """The trial's config, its method with trained weights (eval mode), and its dataset."""
    config = TrialConfig.from_flat(state["config"])
    data = load_dataset(config.data)
    method = build_method(config, data, pick_device(device))
    method.load_state(state["method"])
    return config, method.eval(), data

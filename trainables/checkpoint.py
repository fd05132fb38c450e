"""Rebuilding a trained method from the state a trial reported (its checkpoint)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.data import Dataset, load_dataset
from trainables.methods import Method
from trainables.trial import build_method, pick_device

STATE_FILE = "state.pt"


def load_state_file(path: str | Path) -> dict[str, Any]:
    """A checkpoint folder (holding state.pt) or the state.pt file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a trial checkpoint folder with {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=False)


def restore(state: dict[str, Any], device: str = "auto") -> tuple[TrialConfig, Method, Dataset]:
    """The trial's config, its method with trained weights (eval mode), and its dataset."""
    config = TrialConfig.from_flat(state["config"])
    data = load_dataset(config.data)
    method = build_method(config, data, pick_device(device))
    method.load_state(state["method"])
    return config, method.eval(), data

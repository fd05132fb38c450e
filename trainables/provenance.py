"""What a trial says about its data, for the records: the dataset's name, a digest of its
content, its split sizes. (The driver logs it as the MLflow run's dataset input.)"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

from trainables.config import DataConfig
from trainables.data import Dataset, load_dataset


@functools.lru_cache(maxsize=2)
def dataset_record(cfg: DataConfig) -> dict[str, Any]:
    """Cached like `load_dataset`: a reused worker hashes its dataset once, not per trial."""
    data = load_dataset(cfg)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    return {
        "name": data.name,
        "digest": content_digest(data),
        "source": cfg.data_dir or data.name,
        "splits": {name: len(split) for name, split in splits.items()},
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
    }


def content_digest(data: Dataset) -> str:
    """sha256 of every split's images and labels, in order (16 hex digits): the same digest
    means the same examples in the same splits."""
    sha = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        for tensor in (split.x, split.y):
            sha.update(tensor.contiguous().cpu().numpy().tobytes())
    return sha.hexdigest()[:16]

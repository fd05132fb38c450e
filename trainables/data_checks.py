"""Checks on a dataset's raw arrays, run when it is loaded: by the CLI before Ray starts (so a bad
file is one line and exit 2, with nothing written) and again in each trial (the same code).

Every message names the source (the .npz file, or the dataset and its folder), the array and
the problem, on one line."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

SPLITS = ("train", "test")
ARRAYS = tuple(f"{kind}_{split}" for split in SPLITS for kind in ("x", "y"))


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be read, fetched or used; the message says why and what to do."""


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a user's .npz. numpy's own errors (BadZipFile on a truncated file, a
    pickle refused) become one line; object arrays are never unpickled."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DatasetUnavailable(f"{path}: a single .npy array, not an .npz archive of {', '.join(ARRAYS)}")
        with archive:
            missing = sorted(set(ARRAYS) - set(archive.files))
            if missing:
                raise DatasetUnavailable(f"{path}: lacks arrays {', '.join(missing)}")
            return {name: archive[name] for name in ARRAYS}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
        raise DatasetUnavailable(f"{path}: not a readable .npz archive (truncated or not a zip file)") from None
    except ValueError:  # numpy refuses pickled data: the file or an array holds Python objects
        raise DatasetUnavailable(f"{path}: holds pickled Python objects, which orch does not load; "
                                 f"save plain numeric arrays") from None


def check_arrays(source: str, arrays: Mapping[str, np.ndarray]) -> int:
    """Refuse arrays a trial could not learn from honestly; return the number of classes C.
    Images: uint8, or finite floats in [0, 1]; NHW, NHWC or NCHW. Labels: integers in [0, C),
    C >= 2, every class present in train. Every split non-empty, images and labels paired."""
    for split in SPLITS:
        _check_images(source, f"x_{split}", np.asarray(arrays[f"x_{split}"]))
        _check_labels_shape(source, f"y_{split}", np.asarray(arrays[f"y_{split}"]))
        _check_paired(source, split, arrays)
    _check_same_image_shape(source, arrays["x_train"], arrays["x_test"])
    return _check_classes(source, np.asarray(arrays["y_train"]).reshape(-1),
                          np.asarray(arrays["y_test"]).reshape(-1))


def _check_images(source: str, name: str, x: np.ndarray) -> None:
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DatasetUnavailable(f"{source}: {name} has dtype {x.dtype}; images must be uint8 (0..255) "
                                 f"or float in [0, 1]")
    if x.ndim not in (3, 4) or (x.ndim == 4 and 1 not in (x.shape[1], x.shape[-1])
                                and 3 not in (x.shape[1], x.shape[-1])):
        raise DatasetUnavailable(f"{source}: {name} has shape {x.shape}; expected N×H×W, N×H×W×C or "
                                 f"N×C×H×W with C = 1 or 3")
    if len(x) == 0:
        raise DatasetUnavailable(f"{source}: {name} is empty; every split needs at least one example")
    if x.dtype == np.uint8:
        return
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise DatasetUnavailable(f"{source}: {name} has {bad} NaN or infinite pixels")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise DatasetUnavailable(f"{source}: {name} pixels span [{low:g}, {high:g}]; float images "
                                 f"must lie in [0, 1] (or be uint8 0..255)")


def _check_labels_shape(source: str, name: str, y: np.ndarray) -> None:
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetUnavailable(f"{source}: {name} has dtype {y.dtype}; labels must be integers")
    if y.ndim != 1 and y.shape[1:] != (1,):
        raise DatasetUnavailable(f"{source}: {name} has shape {y.shape}; expected one label per image")


def _check_paired(source: str, split: str, arrays: Mapping[str, np.ndarray]) -> None:
    images, labels = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
    if images != labels:
        raise DatasetUnavailable(f"{source}: x_{split} has {images} images but y_{split} {labels} labels")


def _check_same_image_shape(source: str, x_train: np.ndarray, x_test: np.ndarray) -> None:
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetUnavailable(f"{source}: x_test images are {x_test.shape[1:]} but x_train's "
                                 f"{x_train.shape[1:]}")


def _check_classes(source: str, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """C is one more than the largest training label; every class below it must have examples."""
    if len(y_train) < 2:
        raise DatasetUnavailable(f"{source}: y_train has {len(y_train)} example; at least 2 are needed "
                                 f"(a validation split is carved from train)")
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y.min() < 0:
            raise DatasetUnavailable(f"{source}: {name} holds label {int(y.min())}; labels must be 0..C-1")
    classes = int(y_train.max()) + 1
    if classes < 2:
        raise DatasetUnavailable(f"{source}: y_train has a single class (0); a classifier needs at least 2")
    absent = np.setdiff1d(np.arange(classes), y_train)
    if len(absent):
        raise DatasetUnavailable(
            f"{source}: y_train has labels up to {classes - 1} but no example of {len(absent)} "
            f"class(es) ({_some(absent)}); labels must be 0..C-1 with every class in train")
    if y_test.max() >= classes:
        raise DatasetUnavailable(f"{source}: y_test holds label {int(y_test.max())}, a class y_train "
                                 f"never shows (its labels are 0..{classes - 1})")
    return classes


def _some(values: np.ndarray, shown: int = 3) -> str:
    head = ", ".join(str(int(v)) for v in values[:shown])
    return head + (", ..." if len(values) > shown else "")

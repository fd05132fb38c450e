"""The dataset registry on real data: embedded digits and the shared 10k-MNIST .npz."""
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.config import DataConfig
from trainables.data import DatasetUnavailable, load_dataset

MNIST_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k.npz"


def test_digits_split_is_fixed_disjoint_and_in_unit_range():
    data = load_dataset(DataConfig(dataset="digits"))
    assert (len(data.train), len(data.val), len(data.test)) == (1294, 144, 359)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and 0 <= split.x.min() and split.x.max() <= 1
    rows = {tuple(x.flatten().tolist()) for x in data.val.x}
    assert not any(tuple(x.flatten().tolist()) in rows for x in data.test.x[:50])


@pytest.mark.skipif(not MNIST_NPZ.is_file(), reason="../shared/data/mnist-10k.npz not beside the checkout")
def test_npz_loader_reads_real_mnist():
    data = load_dataset(DataConfig(dataset="npz", data_dir=str(MNIST_NPZ)))
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.train) + len(data.val) == 8000 and len(data.test) == 2000
    with np.load(MNIST_NPZ) as raw:
        expected = torch.from_numpy(raw["x_test"][:5].astype(np.float32) / 255)
    assert torch.equal(data.test.x[:5, 0], expected)


def test_npz_with_missing_arrays_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DatasetUnavailable, match="lacks arrays"):
        load_dataset(DataConfig(dataset="npz", data_dir=str(path)))


def test_digits_read_from_the_wheel_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    from trainables.data import _sklearn_digits

    images, labels = _sklearn_digits()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)

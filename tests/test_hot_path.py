"""The shared training loop's device-side pieces stay correct on CPU."""
import torch
import torch.nn.functional as F

from trainables import TrialConfig, run_trial
from trainables.augment import crop_and_flip
from trainables.data import ResidentSplit, Split


def test_crop_and_flip_returns_a_crop_of_each_padded_image_possibly_flipped():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 8, 8)
    out = crop_and_flip(x, pad=2)
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    flipped_any = False
    for i in range(len(x)):
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], c) for c in crops)
        mirrored = any(torch.equal(out[i], c.flip(2)) for c in crops)
        assert plain or mirrored
        flipped_any |= mirrored and not plain
    assert flipped_any  # p = 0.5 over 32 images: some must be flipped


def test_augmented_training_runs_and_is_deterministic_under_a_seed():
    flat = {"method": "standard", "epochs": 1, "augment": True, "eval_examples": 50,
            "val_examples": 50, "eval_steps": 2, "val_steps": 2, "eval_profile": "quick"}
    first = run_trial(TrialConfig.from_flat(flat))
    second = run_trial(TrialConfig.from_flat(flat))
    assert first.history[-1]["loss"] == second.history[-1]["loss"]
    assert 0.0 <= first.clean_acc <= 1.0


def test_images_stored_as_bytes_on_the_device_decode_to_the_same_floats():
    levels = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    split = Split(levels.float() / 255, torch.arange(64))  # as _to_split makes them from uint8
    resident = ResidentSplit.of(split, "cpu")
    assert resident.pixels.dtype == torch.uint8
    index = torch.tensor([5, 0, 63, 5])
    assert torch.equal(resident.images(index), split.x[index])  # bit for bit
    assert torch.equal(resident.y[index], split.y[index])


def test_images_that_are_not_multiples_of_1_over_255_stay_float():
    sixteenths = Split(torch.randint(0, 17, (32, 1, 8, 8)).float() / 16, torch.arange(32))  # digits
    resident = ResidentSplit.of(sixteenths, "cpu")
    assert resident.pixels.dtype == torch.float32
    assert torch.equal(resident.images(torch.arange(32)), sixteenths.x)

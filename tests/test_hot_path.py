"""The shared training loop's device-side pieces stay correct on CPU."""
import torch
import torch.nn.functional as F

from trainables import TrialConfig, run_trial
from trainables.augment import crop_and_flip


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
            "val_examples": 50, "eval_steps": 2, "val_steps": 2}
    first = run_trial(TrialConfig.from_flat(flat))
    second = run_trial(TrialConfig.from_flat(flat))
    assert first.history[-1]["loss"] == second.history[-1]["loss"]
    assert 0.0 <= first.clean_acc <= 1.0

"""Data augmentation done on the device, batch at a time (no DataLoader workers, no host copies)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_and_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy, and a horizontal flip with p=0.5
    (the standard CIFAR augmentation), as one gather over the batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    flip = (torch.rand(n, device=x.device) < 0.5)[:, None, None, None]
    return torch.where(flip, cropped.flip(3), cropped)

"""Adversarial-training throughput: orch's training loop versus a plain PyTorch reference loop
(fp32, CPU-side DataLoader, per-batch host->device copies, loss.backward() for the input
gradient), the same model, method and PGD steps, measured in one run so the result is a ratio.

    python bench/throughput.py                          # CPU-sized default grid
    python bench/throughput.py --methods madry,tla --models resnet18 --shape 3x32x32 --steps 10

On CUDA it also reports an MFU estimate (FLOPs counted with torch's FlopCounterMode on one
training step, divided by the device's dense bf16 peak) and peak memory per configuration.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402

from trainables.config import TrialConfig  # noqa: E402
from trainables.data import Split  # noqa: E402
from trainables.methods import METHODS, TrainSettings  # noqa: E402
from trainables.models import ModelSpec, build_model  # noqa: E402
from trainables.trial import train_one_epoch  # noqa: E402

# Dense bf16 peak FLOP/s by device name (no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def synthetic(shape: tuple[int, int, int], n: int, classes: int, device: torch.device) -> Split:
    x = torch.rand(n, *shape, device=device)
    y = torch.randint(0, classes, (n,), device=device)
    return Split(x, y)


def make_method(name: str, model_name: str, shape, classes: int, steps: int, device):
    spec = ModelSpec(shape, classes, 64, (0.5,) * shape[0], (0.25,) * shape[0])
    model = build_model(model_name, spec)
    hp = TrialConfig(method=name).hparams
    eps = 8 / 255 if shape[0] == 3 else 0.3
    settings = TrainSettings(lr=1e-3, optimizer="sgd", weight_decay=0.0, train_eps=eps,
                             train_steps=steps, train_step_size=None, num_classes=classes)
    return METHODS.get(name)(model, hp, settings).to(device)


def orch_images_per_s(method, split: Split, batch: int, epochs: int) -> float:
    generator = torch.Generator().manual_seed(0)
    train_one_epoch(method, split.head(batch * 2), batch, generator)  # warm-up (and compile)
    _sync(split.x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        train_one_epoch(method, split, batch, generator)
    _sync(split.x.device)
    return epochs * len(split) / (time.perf_counter() - start)


def reference_images_per_s(model, split: Split, batch: int, epochs: int, steps: int, eps: float,
                           device) -> float:
    """What a plain loop does: CPU DataLoader, fp32, autograd .backward() on the input in PGD."""
    cpu = torch.utils.data.TensorDataset(split.x.cpu(), split.y.cpu())
    loader = torch.utils.data.DataLoader(cpu, batch_size=batch, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    alpha = 2.5 * eps / steps

    def one_epoch():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            model.eval()
            delta = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
            for _ in range(steps):
                loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
                loss.backward()
                delta.data = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
                delta.grad.zero_()
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model((x + delta.detach()).clamp(0, 1)), y).backward()
            optimizer.step()

    one_epoch()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        one_epoch()
    _sync(device)
    return epochs * len(split) / (time.perf_counter() - start)


def flops_per_image(method, split: Split, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        method.train_step(split.x[:batch], split.y[:batch])
    return counter.get_total_flops() / batch


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_flops(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--methods", default="madry,er-classifier,trades")
    parser.add_argument("--models", default="resnet18" if cuda else "small-cnn")
    parser.add_argument("--shape", default="3x32x32" if cuda else "1x28x28")
    parser.add_argument("--images", type=int, default=10_000 if cuda else 1024)
    parser.add_argument("--batch", type=int, default=512 if cuda else 128)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the training adversary")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    shape = tuple(int(v) for v in args.shape.split("x"))
    split = synthetic(shape, args.images, 10, device)
    rows = []
    for model_name in args.models.split(","):
        for name in args.methods.split(","):
            torch.manual_seed(0)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            method = make_method(name, model_name, shape, 10, args.steps, device)
            ours = orch_images_per_s(method, split, args.batch, args.epochs)
            row = {"method": name, "model": model_name, "shape": args.shape, "pgd_steps": args.steps,
                   "orch_img_s": ours}
            if name == "madry":  # the reference loop is PGD-AT, so compare like with like
                ref_model = make_method(name, model_name, shape, 10, args.steps, device).model
                reference = reference_images_per_s(ref_model, split, args.batch, args.epochs, args.steps,
                                                   method.settings.train_eps, device)
                row.update(reference_img_s=reference, ratio=ours / reference)
            peak = peak_flops(device)
            if peak:
                row["mfu"] = ours * flops_per_image(method, split, args.batch) / peak
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
    madry = {r["model"]: r["orch_img_s"] for r in rows if r["method"] == "madry"}
    for row in rows:
        if row["model"] in madry:
            row["epoch_time_vs_madry"] = madry[row["model"]] / row["orch_img_s"]
    columns = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    print(table([{c: r.get(c, "") for c in columns} for r in rows]))
    print("targets (GPU): ratio >= 3 for madry resnet18, mfu >= 0.30, epoch_time_vs_madry <= 1.5")
    print(f"saved {save('throughput', {'device': str(device), 'args': vars(args), 'results': rows})}")


if __name__ == "__main__":
    main()

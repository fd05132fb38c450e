"""Adversarial-training throughput: orch's training loop versus a plain PyTorch reference loop
(fp32, CPU-side DataLoader, per-batch host->device copies, loss.backward() for the input
gradient), the same model, method and PGD steps, measured in one run so the result is a ratio.

    python bench/throughput.py                          # CPU-sized default grid
    python bench/throughput.py --methods madry,tla --models resnet18 --shapes 3x32x32 --steps 10

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
from trainables.data import ResidentSplit, Split  # noqa: E402
from trainables.methods import METHODS, TrainSettings  # noqa: E402
from trainables.models import ModelSpec, build_model  # noqa: E402
from trainables.trial import train_one_epoch  # noqa: E402

# Dense bf16 peak FLOP/s by device name (no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def synthetic(shape: tuple[int, int, int], n: int, classes: int) -> Split:
    """Random 8-bit images, like every real image dataset (so they live on the device as uint8)."""
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8).float() / 255
    return Split(x, torch.randint(0, classes, (n,)))


def make_method(name: str, model_name: str, shape, classes: int, steps: int, device):
    spec = ModelSpec(shape, classes, 64, (0.5,) * shape[0], (0.25,) * shape[0])
    model = build_model(model_name, spec)
    hp = TrialConfig(method=name).hparams
    eps = 8 / 255 if shape[0] == 3 else 0.3
    settings = TrainSettings(lr=1e-3, optimizer="sgd", weight_decay=0.0, train_eps=eps,
                             train_steps=steps, train_step_size=None, num_classes=classes,
                             fused=torch.device(device).type == "cuda")
    return METHODS.get(name)(model, hp, settings).to(device)


def orch_images_per_s(method, split: Split, batch: int, epochs: int, device) -> float:
    """What run_trial does: the split resident on the device, then train_one_epoch."""
    generator = torch.Generator().manual_seed(0)
    train_one_epoch(method, ResidentSplit.of(split.head(batch * 2), device), batch, generator)  # warm-up
    _sync(device)
    start = time.perf_counter()
    resident = ResidentSplit.of(split, device)  # the one host-to-device copy, timed
    for _ in range(epochs):
        train_one_epoch(method, resident, batch, generator)
    _sync(device)
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


def flops_per_image(method, split: Split, batch: int, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        method.train_step(split.x[:batch].to(device), split.y[:batch].to(device))
    return counter.get_total_flops() / batch


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_flops(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def measure(name: str, model_name: str, shape, split: Split, args, device) -> dict:
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method = make_method(name, model_name, shape, 10, args.steps, device)
    ours = orch_images_per_s(method, split, args.batch, args.epochs, device)
    row = {"method": name, "model": model_name, "shape": "x".join(map(str, shape)),
           "pgd_steps": args.steps, "orch_img_s": ours}
    if device.type == "cuda":  # orch's loop alone, before the reference loop allocates its own
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if name == "madry":  # the reference loop is PGD-AT, so compare like with like
        ref_model = make_method(name, model_name, shape, 10, args.steps, device).model
        reference = reference_images_per_s(ref_model, split, args.batch, args.epochs, args.steps,
                                           method.settings.train_eps, device)
        row.update(reference_img_s=reference, ratio=ours / reference)
    peak = peak_flops(device)
    if peak:
        try:
            row["mfu"] = ours * flops_per_image(method, split, args.batch, device) / peak
        except RuntimeError as error:  # some torch versions cannot count through autograd.grad
            print(f"{name}: no MFU ({str(error).splitlines()[0]})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--methods", default=",".join(METHODS.names()), help="comma-separated")
    parser.add_argument("--models", default="resnet18" if cuda else "small-cnn", help="comma-separated")
    parser.add_argument("--shapes", default="3x32x32" if cuda else "1x28x28",
                        help="comma-separated CxHxW, e.g. 1x28x28,3x32x32")
    parser.add_argument("--images", type=int, default=10_000 if cuda else 1024)
    parser.add_argument("--batch", type=int, default=512 if cuda else 128)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the training adversary")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    rows = []
    for shape_name in args.shapes.split(","):
        shape = tuple(int(v) for v in shape_name.split("x"))
        split = synthetic(shape, args.images, 10)
        for model_name in args.models.split(","):
            for name in args.methods.split(","):
                rows.append(measure(name, model_name, shape, split, args, device))
                print(f"{name} {model_name} {shape_name}: {rows[-1]['orch_img_s']:.0f} img/s", flush=True)
    madry = {(r["model"], r["shape"]): r["orch_img_s"] for r in rows if r["method"] == "madry"}
    for row in rows:
        if (row["model"], row["shape"]) in madry:
            row["epoch_time_vs_madry"] = madry[row["model"], row["shape"]] / row["orch_img_s"]
    columns = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    print(table([{c: r.get(c, "") for c in columns} for r in rows]))
    print("targets (GPU): ratio >= 3 for madry resnet18, mfu >= 0.30, epoch_time_vs_madry <= 1.5")
    print(f"saved {save('throughput', {'device': str(device), 'args': vars(args), 'results': rows})}")


if __name__ == "__main__":
    main()

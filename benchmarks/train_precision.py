"""Training step time in fp32 and with bf16 autocast on this machine's CPU (or GPU), and
what `training.device` would choose here. Batch 8, 128 x 128 crops, UNet++ Lite0.

    .venv/bin/python benchmarks/train_precision.py [--steps 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from training.device import cpu_has_native_bf16, resolve_device, use_bf16
from training.losses import bce_dice_loss
from training.model import build_model, normalize


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs it asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(bf16: bool, steps: int, device: torch.device) -> float:
    """Median seconds of one training step after two warm-up steps."""
    torch.manual_seed(0)
    model = build_model().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(8, 3, 128, 128, device=device)
    y = (torch.rand(8, 1, 128, 128, device=device) > 0.9).float()
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(normalize(x, "tu-tf_efficientnet_lite0"))
        loss = bce_dice_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times[2:])[len(times[2:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    device = resolve_device()
    fp32 = step_seconds(False, args.steps, device)
    bf16 = step_seconds(True, args.steps, device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, native bf16: "
        f"{cpu_has_native_bf16() if device.type == 'cpu' else 'n/a'}"
    )
    print(
        f"median step: fp32 {fp32:.3f} s, bf16 autocast {bf16:.3f} s (bf16/fp32 {bf16 / fp32:.2f})"
    )
    print(f"default chosen here: {'bf16' if use_bf16(device) else 'fp32'}")


if __name__ == "__main__":
    main()

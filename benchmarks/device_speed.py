"""A device (a GPU when present) against this host's CPU, in one run: feature extraction
images/s at 448 px, the crack mask of one 12 MP photo at full resolution, one training step
(batch 8, 128 px) in fp32 and with bf16 autocast; with --train, the base model trained on
DeepCrack in the default budget on the device (validation ODS, steps, seconds).

Timings synchronise the device before reading the clock. The CPU lines use torch on all of
this host's cores (the backend serves CPU masks on onnxruntime: benchmarks/onnx_inference.py).

    python benchmarks/device_speed.py [--device cuda] [--data ../shared/data] [--train]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from train_precision import step_seconds, sync  # beside this script

from selection.extractors import imagenet_extractor
from selection.images import list_images, read_rgb
from training.device import resolve_device
from training.model import DEFAULT_ENCODER, build_model
from training.predict import predict_probs

MP12 = (4000, 3000)  # W x H


def features_per_second(device: torch.device, images: list[np.ndarray]) -> float:
    extractor = imagenet_extractor(448, device=device)
    extractor(images[: 2 * extractor.forward_batch])  # warm-up: kernels for full batches
    sync(device)
    t0 = time.perf_counter()
    extractor(images)
    sync(device)
    return len(images) / (time.perf_counter() - t0)


def mask_seconds(device: torch.device, photo: np.ndarray) -> float:
    model = build_model(DEFAULT_ENCODER).to(device).eval()
    predict_probs(model, photo[:512, :512], DEFAULT_ENCODER)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    probs = predict_probs(model, photo, DEFAULT_ENCODER)
    sync(device)
    assert probs.shape == photo.shape[:2]
    return time.perf_counter() - t0


def train_base(device: torch.device, data: Path) -> None:
    from training.data import find_samples, load
    from training.fit import fit_version
    from training.registry import Registry
    from training.train import TrainConfig

    items = load(find_samples(data / "deepcrack" / "train"), desc="load train")
    val = load(find_samples(data / "deepcrack" / "val"), desc="load val")
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig.base()
        outcome = fit_version(Registry(tmp), items, val, config=config, progress=False)
    r = outcome.result
    print(
        f"base training on {device}: val ODS {r.val_ods:.4f} (threshold {r.threshold:.2f}) "
        f"after {r.steps} of {config.steps} steps, {r.seconds:.0f} s, stopped by {r.stopped}"
    )
    for h in r.history:
        print(
            f"  step {h['step']:5.0f}  val ODS {h['val_ods']:.4f}  threshold {h['threshold']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="auto (default), cuda, cpu ...")
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--images", type=int, default=256, help="images for the feature rate")
    parser.add_argument("--train", action="store_true", help="also train the base model")
    args = parser.parse_args()
    device = resolve_device(args.device)
    os.environ["CRACKAL_DEVICE"] = str(device)  # --train's fit_version follows it
    cpu = torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}); host CPU threads {torch.get_num_threads()}")

    paths = [
        p for s in ("cfd", "crack500", "gaps384") for p in list_images(args.data / s / "images")
    ]
    images = [read_rgb(p) for p in (paths * (1 + args.images // len(paths)))[: args.images]]
    large = list_images(args.data / "large" / "images")[0]
    photo = np.asarray(Image.open(large).convert("RGB").resize(MP12, Image.Resampling.BICUBIC))

    rows = []
    for what, fn in (
        ("features at 448 px, images/s", lambda d: features_per_second(d, images)),
        ("mask of a 12 MP photo, s", lambda d: mask_seconds(d, photo)),
        ("training step fp32, s", lambda d: step_seconds(False, 10, d)),
        ("training step bf16 autocast, s", lambda d: step_seconds(True, 10, d)),
    ):
        on_device = fn(device)
        on_cpu = fn(cpu) if device != cpu else on_device
        rows.append((what, on_device, on_cpu))
        print(f"{what:34s} {device.type}: {on_device:9.3f}   cpu: {on_cpu:9.3f}", flush=True)
    fp32, bf16 = rows[2][1], rows[3][1]
    print(f"bf16 autocast / fp32 step time on {device.type}: {bf16 / fp32:.2f}")
    if args.train:
        train_base(device, args.data)


if __name__ == "__main__":
    main()

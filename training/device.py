"""Where and in which precision the model runs: CUDA when present, else the CPU; bf16
autocast only where the hardware computes bf16 natively.

CPUs of one machine kind differ: with AMX or AVX512_BF16, bf16 autocast trained ~1.2-2.3x
faster than fp32; without them it was slower (1.9x on one machine; 18x a step on an EPYC
measured by `benchmarks/train_precision.py`, see the README). So the CPU's flags decide, and
`CRACKAL_BF16=0/1` overrides them.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger("crackal.device")

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str | None = None) -> torch.device:
    """`auto` (or None, or CRACKAL_DEVICE) picks CUDA when available, else the CPU."""
    name = name or os.environ.get("CRACKAL_DEVICE") or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"not a device: {name!r} (auto, cpu, cuda, cuda:1 ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU flags name AMX-BF16 or AVX512-BF16."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def use_bf16(device: torch.device) -> bool:
    """Whether training on `device` should autocast to bf16 (logged once per answer)."""
    override = os.environ.get("CRACKAL_BF16")
    if override is not None and override != "":
        return override.lower() not in ("0", "false", "no")
    if device.type == "cuda":  # native bf16 from compute capability 8 (Ampere) on
        return torch.cuda.get_device_capability(device)[0] >= 8
    return _logged_cpu_choice()


@functools.cache
def _logged_cpu_choice() -> bool:
    native = cpu_has_native_bf16()
    log.info(
        "CPU %s native bf16: training in %s",
        "has" if native else "lacks",
        "bf16 autocast" if native else "fp32",
    )
    return native

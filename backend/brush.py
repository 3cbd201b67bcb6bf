"""Crack masks as Label Studio BrushLabels results, both ways (label-studio-sdk's RLE)."""

from __future__ import annotations

from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from backend.label_config import BrushTarget


def mask_result(mask: np.ndarray, target: BrushTarget) -> dict[str, Any]:
    """One BrushLabels result painting `mask` (H x W bool) at the image's original size."""
    h, w = mask.shape
    return {
        "from_name": target.from_name,
        "to_name": target.to_name,
        "type": "brushlabels",
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": {
            "format": "rle",
            "rle": [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)],
            "brushlabels": [target.crack_label],
        },
    }


def result_mask(result: dict[str, Any]) -> np.ndarray:
    """The H x W bool mask of one brushlabels result (its alpha channel is the paint)."""
    h, w = int(result["original_height"]), int(result["original_width"])
    flat = decode_rle(result["value"]["rle"])
    if flat.size != h * w * 4:
        raise ValueError(f"RLE holds {flat.size} values, expected {h}x{w}x4")
    return flat.reshape(h, w, 4)[:, :, 3] > 0


def annotation_mask(
    results: list[dict[str, Any]], target: BrushTarget, shape: tuple[int, int]
) -> np.ndarray:
    """Union of an annotation's brush strokes of `target`; empty when it has none (an image
    labelled as crack-free)."""
    mask = np.zeros(shape, dtype=bool)
    for r in results:
        if r.get("type") != "brushlabels" or r.get("from_name") != target.from_name:
            continue
        if r.get("value", {}).get("format") != "rle":
            continue
        part = result_mask(r)
        if part.shape != shape:
            raise ValueError(f"brush mask {part.shape} does not fit the image {shape}")
        mask |= part
    return mask

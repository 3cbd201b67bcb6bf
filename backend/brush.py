"""Crack masks as Label Studio BrushLabels results, both ways (label-studio-sdk's RLE)."""

from __future__ import annotations

from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import decode_rle

from backend.brush_rle import encode_mask
from backend.label_config import BrushTarget


class BrushError(ValueError):
    """A brush result that cannot be read; str() is the reason."""


def mask_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of an H x W bool mask (painted pixels opaque): the bytes of
    label-studio-sdk's `mask2rle(mask.astype(np.uint8) * 255)`, written with numpy."""
    return encode_mask(mask).tolist()


def mask_result(mask: np.ndarray, target: BrushTarget) -> dict[str, Any]:
    """One BrushLabels result painting `mask` (H x W bool) at the image's original size."""
    return rle_result(mask_rle(mask), mask.shape, target)


def rle_result(rle: list[int], shape: tuple[int, int], target: BrushTarget) -> dict[str, Any]:
    """One brush result of an RLE painted on an image of `shape` (H, W), labelled with the
    crack label when the config has labels."""
    h, w = shape
    value: dict[str, Any] = {"format": "rle", "rle": rle}
    if target.result_type == "brushlabels":
        value["brushlabels"] = [target.crack_label]
    return {
        "from_name": target.from_name,
        "to_name": target.to_name,
        "type": target.result_type,
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": value,
    }


def rle_length(rle: list[int]) -> int:
    """The number of values an RLE decodes to, read from its 32-bit header (no decoding)."""
    if len(rle) < 4:
        raise BrushError("brush RLE is shorter than its header")
    return int.from_bytes(bytes(rle[:4]), "big")


def result_size(result: dict[str, Any]) -> tuple[int, int]:
    """(height, width) a brush result was painted at; BrushError when they are not sizes."""
    h, w = result.get("original_height"), result.get("original_width")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise BrushError(f"brush result has no valid size ({w!r} x {h!r})")
    return h, w


def rle_mask(rle: list[int], shape: tuple[int, int]) -> np.ndarray:
    """The H x W bool mask of a brush RLE of that size (as crackal wrote it)."""
    if rle_length(rle) != shape[0] * shape[1] * 4:
        raise BrushError(f"brush RLE holds {rle_length(rle)} values, expected {shape}x4")
    return decode_rle(rle).reshape(shape[0], shape[1], 4)[:, :, 3] > 0


def result_mask(result: dict[str, Any], max_pixels: int = 64_000_000) -> np.ndarray:
    """The H x W bool mask of one brushlabels result (its alpha channel is the paint).

    Every field is checked, and the RLE's length header against H x W x 4, before anything
    is decoded: a short RLE claiming billions of values is refused, not allocated.
    """
    h, w = result_size(result)
    value = result.get("value")
    if h * w > max_pixels:
        raise BrushError(f"brush result is {w}x{h}, above the pixel limit")
    if not isinstance(value, dict):
        raise BrushError("brush result has no value object")
    rle = value.get("rle")
    if not isinstance(rle, list) or not all(isinstance(v, int) and 0 <= v < 256 for v in rle):
        raise BrushError("brush RLE is not a list of bytes")
    if rle_length(rle) != h * w * 4:
        raise BrushError(f"brush RLE holds {rle_length(rle)} values, expected {w}x{h}x4")
    try:
        flat = decode_rle(rle)
    except (ValueError, IndexError, OverflowError) as exc:
        raise BrushError(f"brush RLE is malformed ({exc.__class__.__name__})") from None
    return flat.reshape(h, w, 4)[:, :, 3] > 0


def annotation_mask(
    results: list[dict[str, Any]], target: BrushTarget, shape: tuple[int, int]
) -> np.ndarray:
    """Union of an annotation's crack strokes on `target`'s image; empty when it has none (an
    image labelled as crack-free). Strokes of other labels (e.g. spalling) do not count."""
    if not isinstance(results, list):
        raise BrushError("annotation result is not a list")
    mask = np.zeros(shape, dtype=bool)
    for r in results:
        if not _is_crack_stroke(r, target, results):
            continue
        value = r.get("value")
        if not isinstance(value, dict) or value.get("format") != "rle":
            raise BrushError("brush result without an RLE value")
        if result_size(r) != shape:
            (rh, rw), (h, w) = result_size(r), shape
            raise BrushError(
                f"brush mask is {rw}x{rh}, the image is {w}x{h} (was the image replaced?)"
            )
        mask |= result_mask(r, max_pixels=shape[0] * shape[1])
    return mask


def _is_crack_stroke(r: Any, target: BrushTarget, results: list[Any]) -> bool:
    if not isinstance(r, dict) or r.get("from_name") not in target.brush_controls:
        return False
    if r.get("to_name", target.to_name) != target.to_name:
        return False
    kind = r.get("type")
    if kind not in ("brushlabels", "brush"):
        return False
    if target.crack_label is None:  # a <Brush> without labels: every stroke is a crack
        return True
    value = r.get("value")
    if not isinstance(value, dict):
        return True  # a broken stroke of ours: the caller says why it cannot be read
    labels = value.get("brushlabels") if kind == "brushlabels" else None
    if labels is None:  # split format: the labels are a sibling result with the same id
        labels = next(
            (
                (s.get("value") or {}).get("labels")
                for s in results
                if isinstance(s, dict)
                and s.get("type") == "labels"
                and s.get("id") is not None
                and s.get("id") == r.get("id")
                and isinstance(s.get("value"), dict)
            ),
            None,
        )
    return isinstance(labels, list) and target.crack_label in labels

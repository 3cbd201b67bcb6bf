"""Label Studio's brush RLE written with numpy, byte for byte what label-studio-sdk writes.

The SDK's `encode_rle` (word size 8, run-length fields of 3, 4, 8 and 16 bits) builds a
string of '0'/'1' characters run by run. Here every run becomes one or more fixed-width
records (an int and its bit width), and the records are placed into the byte stream at
their cumulative bit offsets in a few array operations. Its choices, kept exactly:

- header: the value count (32 bits), word size - 1 (5 bits), each run-field size - 1 (4 bits);
- a run of 1 value: `0 00 000` then the value (a one-value literal group; longer literal
  groups are never written);
- runs of 2-8, 9-16, 17-256 values: `1`, field selector 00/01/10, length - 1 in 3/4/8 bits;
- runs over 256 values: selector 11 and a 16-bit length, split into records of 65,536 values
  while more than 65,536 remain (the last record is 11-coded even when short);
- padding: 8 - (bits % 8) zero bits, so a whole extra zero byte when the bits fill bytes.
"""

from __future__ import annotations

import numpy as np

_FIELD_BITS = np.array([3, 4, 8, 16], dtype=np.int64)  # run-length field per selector
_HEADER_TAIL = (8 - 1) << 16 | (3 - 1) << 12 | (4 - 1) << 8 | (8 - 1) << 4 | (16 - 1)
_CHUNK = 1 << 16  # most values one 16-bit record holds


def encode_values(values: np.ndarray) -> np.ndarray:
    """The SDK's `encode_rle(values)` as uint8 bytes, for a 1-D array of ints 0-255 (no
    values give the bare header, which decodes to none; the SDK raises)."""
    flat = np.asarray(values).ravel()
    if not (flat.dtype == np.bool_ or np.issubdtype(flat.dtype, np.integer)):
        raise TypeError(f"brush RLE values must be integers, got {flat.dtype}")
    if flat.size and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("brush RLE values must be 0-255")
    lengths, vals = _runs(flat)
    return _pack(lengths, vals, flat.size)


def encode_mask(mask: np.ndarray) -> np.ndarray:
    """The SDK's `mask2rle(mask.astype(np.uint8) * 255)` as uint8 bytes (H x W mask).

    Each pixel is 4 equal values (RGBA), so the runs are the pixel runs times 4. An empty
    (0-pixel) mask gives the bare header, which decodes to no values (the SDK raises).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    pixels = mask.ravel() if mask.dtype == np.bool_ else (mask.astype(np.uint8) * 255).ravel()
    lengths, vals = _runs(pixels)
    if pixels.dtype == np.bool_:
        vals *= 255
    return _pack(lengths * 4, vals, 4 * pixels.size)


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, values) of the runs of equal neighbours in a 1-D array, as int64."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], starts, [flat.size]))
    return np.diff(bounds), flat[bounds[:-1]].astype(np.int64)


def _pack(lengths: np.ndarray, vals: np.ndarray, num: int) -> np.ndarray:
    """The RLE bytes of runs (`lengths` >= 1 values of `vals`) over `num` values in all."""
    if num >= 1 << 32:
        raise ValueError("brush RLE holds at most 2**32 - 1 values")
    long = lengths > 256
    if long.any():  # split runs over 256 into 65,536-value records and a remainder
        per = np.where(long, (lengths + _CHUNK - 1) // _CHUNK, 1)
        run = np.repeat(np.arange(lengths.size), per)
        j = np.arange(run.size) - (np.cumsum(per) - per)[run]
        last = j == per[run] - 1
        lengths = np.where(last, lengths[run] - j * _CHUNK, _CHUNK)
        long, vals = long[run], vals[run]
    select = np.where(long, 3, (lengths > 8).astype(np.int64) + (lengths > 16))
    field = _FIELD_BITS[select]
    flag = (lengths > 1) | long
    codes = (flag << 2 | select) << (field + 8) | (lengths - 1) << 8 | vals
    codes = np.concatenate(([num, _HEADER_TAIL], codes))
    widths = np.concatenate(([32, 21], field + 11))
    return _place(codes, widths)


def _place(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Big-endian bit stream of records (code, 8 <= width <= 32 bits), zero-padded the
    SDK's way: 8 - (bits % 8) zero bits, so always one byte more than the full ones."""
    ends = np.cumsum(widths)
    starts = ends - widths
    nbytes = int(ends[-1]) // 8 + 1
    words = np.zeros(-(-nbytes // 8), dtype=np.int64)
    word = starts >> 6
    over = (starts & 63) + widths - 64  # > 0: bits that spill into the next 64-bit word
    spill = over > 0
    head = np.where(spill, codes >> np.maximum(over, 0), codes << np.maximum(-over, 0))
    # records are in bit order and at least 8 bits wide: each word is OR-ed from the heads of
    # the records that start in it (one contiguous group) and the tail of at most one more
    group = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[group]] = np.bitwise_or.reduceat(head, group)
    words[word[spill] + 1] |= codes[spill] << (64 - over[spill])
    return words.astype(">i8").view(np.uint8)[:nbytes]

"""The numpy brush RLE writes exactly label-studio-sdk's bytes (`mask2rle`, `encode_rle`),
and the SDK's `decode_rle` reads them back."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle
from PIL import Image

from backend.brush import mask_rle
from backend.brush_rle import encode_mask, encode_values


def sdk(mask: np.ndarray) -> list[int]:
    """What mask_rle returned before: the SDK's encoding, as ints."""
    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 127


def assert_round_trip(mask: np.ndarray, rle: list[int]) -> None:
    decoded = decode_rle(rle).reshape(*mask.shape, 4)
    assert np.array_equal(decoded, np.repeat((mask * 255).astype(np.uint8)[..., None], 4, -1))


def stripes(h: int, w: int, run_pixels: list[int]) -> np.ndarray:
    """A mask whose row-major pixel runs alternate False/True with the given lengths."""
    flat = np.repeat(np.arange(len(run_pixels)) % 2 == 1, run_pixels)
    out = np.zeros(h * w, dtype=bool)
    out[: flat.size] = flat[: h * w]
    return out.reshape(h, w)


EDGE_CASES = {
    "one pixel off": np.zeros((1, 1), bool),
    "one pixel on": np.ones((1, 1), bool),
    "all empty": np.zeros((37, 53), bool),
    "all full": np.ones((37, 53), bool),
    "full, 65,536 values exactly": np.ones((128, 128), bool),
    "full, 65,540 values": np.ones((1, 16385), bool),
    "full, 131,072 values exactly": np.ones((256, 128), bool),
    "full, many 16-bit records": np.ones((301, 299), bool),
    "empty, many 16-bit records": np.zeros((299, 301), bool),
    "single pixel in a big empty mask": np.pad(np.ones((1, 1), bool), ((150, 149), (77, 222))),
    "single pixel in a full mask": ~np.pad(np.ones((1, 1), bool), ((3, 0), (0, 4))),
    "last pixel on": np.pad(np.ones((1, 1), bool), ((6, 0), (10, 0))),
    "one column": np.arange(97)[:, None] % 3 == 0,
    "one row": np.arange(97)[None, :] % 5 < 2,
    "checkerboard (every run 4 values)": np.indices((31, 33)).sum(0) % 2 == 1,
    # run lengths (pixels x 4 values) on both sides of every field-size boundary
    "field boundaries": stripes(5, 9885, [1, 2, 3, 4, 5, 63, 64, 65, 66, 16383, 16384, 16385]),
    "20 values: bits fill the bytes, so a whole zero byte is padded": np.zeros((1, 5), bool),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_are_the_sdks_bytes_and_decode(name):
    mask = EDGE_CASES[name]
    rle = mask_rle(mask)
    assert rle == sdk(mask)
    assert all(type(v) is int for v in rle)
    assert_round_trip(mask, rle)


def test_full_bytes_get_a_whole_zero_byte_of_padding():
    # 53 header bits + one 19-bit record (a run of 17-256 values) = 72 bits = 9 full bytes
    rle = mask_rle(np.zeros((1, 5), bool))
    assert len(rle) == 10 and rle[-1] == 0


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_of_many_densities_and_odd_shapes(seed):
    rng = np.random.default_rng(seed)
    for density in (0.0, 0.0005, 0.01, 0.05, 0.2, 0.5, 0.8, 0.99, 1.0):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        mask = rng.random((h, w)) < density
        assert mask_rle(mask) == sdk(mask), (seed, density, h, w)
        blobs = np.repeat(np.repeat(rng.random((7, 5)) < density, 13, 0), 41, 1)[:h, :w]
        assert mask_rle(blobs) == sdk(blobs), (seed, density, h, w)


def test_non_contiguous_and_non_bool_masks_encode_as_before():
    rng = np.random.default_rng(7)
    mask = rng.random((64, 90)) < 0.3
    for view in (mask.T, mask[::3, 1::2], np.asfortranarray(mask)):
        assert mask_rle(view) == sdk(view)
    for values in (mask.astype(np.uint8), mask.astype(np.int64), mask.astype(np.float32)):
        assert mask_rle(values) == sdk(values)


def test_any_values_encode_as_the_sdks_encode_rle():
    """Runs of 1 value (one-value literal groups) and values other than 0/255 never come
    from a mask; the general encoder matches the SDK on them too."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(1, 200))
        palette = rng.integers(0, 256, size=int(rng.integers(1, 4)))
        values = palette[rng.integers(0, palette.size, n)]  # equal neighbours merge into runs
        values = np.repeat(values, rng.integers(1, 30, n)).astype(np.uint8)
        assert encode_values(values).tolist() == [int(v) for v in encode_rle(values)]
        assert np.array_equal(decode_rle(encode_values(values).tolist()), values)
    for n in (1, 2, 3, 8, 9, 16, 17, 256, 257, 65535, 65536, 65537, 131072, 131073):
        values = np.full(n, 9, np.uint8)
        assert encode_values(values).tolist() == [int(v) for v in encode_rle(values)], n


def test_what_the_sdk_cannot_encode():
    header = encode_mask(np.zeros((0, 5), bool))  # the SDK raises on no values
    assert decode_rle(header.tolist()).size == 0
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros(5, bool))
    with pytest.raises(ValueError, match="0-255"):
        encode_values(np.array([0, 256]))
    with pytest.raises(TypeError):
        encode_values(np.array([0.5]))


def test_every_cfd_mask_is_the_sdks_bytes(crack_data):
    paths = sorted((crack_data / "cfd" / "masks").glob("*.png"))
    assert len(paths) > 100
    for path in paths:
        mask = read(path)
        assert mask_rle(mask) == sdk(mask), path.name


def test_crack500_masks_are_the_sdks_bytes_and_round_trip(crack_data):
    paths = sorted((crack_data / "crack500" / "masks").glob("*.png"))[::30]
    assert len(paths) >= 5
    for path in paths:
        mask = read(path)
        rle = mask_rle(mask)
        assert rle == sdk(mask), path.name
        assert_round_trip(mask, rle)

"""Reading real images in every mode a user may have, and reporting the ones we cannot."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selection.images import DatasetError, ImageReadError, list_images, read_rgb


@pytest.fixture(scope="module")
def photo(crack_data) -> Image.Image:
    """A real CrackForest photo (RGB, 480 x 320)."""
    return Image.open(crack_data / "cfd" / "images" / "001.jpg").convert("RGB")


def test_rgb_jpeg_keeps_size_and_channels(crack_data):
    path = crack_data / "cfd" / "images" / "001.jpg"
    rgb = read_rgb(path)
    with Image.open(path) as img:
        assert rgb.shape == (img.height, img.width, 3)
    assert rgb.dtype == np.uint8


def test_grayscale_becomes_three_equal_channels(photo, tmp_path):
    gray = photo.convert("L")
    gray.save(tmp_path / "g.png")
    rgb = read_rgb(tmp_path / "g.png")
    assert np.array_equal(rgb[..., 0], np.asarray(gray))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_sixteen_bit_is_scaled_to_eight_bit(photo, tmp_path):
    gray = np.asarray(photo.convert("L"), dtype=np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "g16.png")  # full 16-bit range
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")
    rgb = read_rgb(tmp_path / "g16.png")
    assert np.array_equal(rgb[..., 1], gray.astype(np.uint8))


def test_rgba_drops_alpha_and_palette_is_expanded(photo, tmp_path):
    rgba = photo.copy()
    rgba.putalpha(128)
    rgba.save(tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "a.png"), np.asarray(photo))
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    pal = read_rgb(tmp_path / "p.png").astype(int)
    assert pal.shape == np.asarray(photo).shape
    assert np.abs(pal - np.asarray(photo, dtype=int)).mean() < 10


@pytest.mark.parametrize("suffix", [".tif", ".bmp", ".PNG"])
def test_other_containers(photo, tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    photo.save(path)
    assert np.array_equal(read_rgb(path), np.asarray(photo))
    assert list_images(tmp_path) == [path]


def test_exif_orientation_is_applied(photo, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    photo.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    rgb = read_rgb(tmp_path / "r.jpg")
    assert rgb.shape == (photo.width, photo.height, 3)


def test_unreadable_files_raise_with_their_name(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"text\.jpg: not a recognised image format"):
        read_rgb(tmp_path / "text.jpg")
    with pytest.raises(ImageReadError, match=r"missing\.png: cannot read file"):
        read_rgb(tmp_path / "missing.png")


def test_truncated_jpeg_is_an_error(crack_data, tmp_path):
    data = (crack_data / "cfd" / "images" / "001.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.jpg"):
        read_rgb(tmp_path / "cut.jpg")


def test_list_images_uses_images_subfolder_and_sorts(crack_data):
    paths = list_images(crack_data / "cfd")
    assert len(paths) == 118
    assert paths == sorted(paths)
    assert all(p.parent.name == "images" for p in paths)


def test_missing_empty_and_non_image_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no images"):
        list_images(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        list_images(tmp_path / "notes.txt")


def test_list_images_accepts_plain_folder(tmp_path: Path, photo):
    photo.save(tmp_path / "b.jpg")
    photo.save(tmp_path / "a.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.jpg"]

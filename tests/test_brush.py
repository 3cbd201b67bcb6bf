"""Brush RLE both ways, and annotations that are broken or hostile: each is refused with a
reason before anything large is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle

from backend.brush import BrushError, annotation_mask, mask_rle, result_mask, rle_result
from backend.label_config import parse_brush_target
from selection.images import read_rgb
from training.data import read_mask

TARGET = parse_brush_target(
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="tag" toName="image"><Label value="crack"/></BrushLabels></View>'
)
TWO_LABELS = parse_brush_target(
    '<View><Image name="image" value="$image"/><Brush name="brush" toName="image"/>'
    '<Labels name="kind" toName="image"><Label value="spalling"/><Label value="Crack"/>'
    "</Labels></View>"
)


@pytest.fixture(scope="module")
def real_mask(crack_data):
    path = sorted((crack_data / "cfd" / "masks").iterdir())[0]
    image = read_rgb(sorted((crack_data / "cfd" / "images").iterdir())[0])
    return read_mask(path, image.shape[:2])


def test_a_real_mask_round_trips_and_is_the_sdks_encoding(real_mask):
    rle = mask_rle(real_mask)
    assert rle == [int(v) for v in mask2rle(real_mask.astype(np.uint8) * 255)]
    result = rle_result(rle, real_mask.shape, TARGET)
    assert np.array_equal(result_mask(result), real_mask)
    assert np.array_equal(annotation_mask([result], TARGET, real_mask.shape), real_mask)


def test_an_rle_bomb_is_refused_from_its_header_without_allocating(real_mask):
    h, w = real_mask.shape
    bomb = [0x7F, 0xFF, 0xFF, 0xFF, 0xE7, 0x3F, 0xFF]  # 7 bytes claiming ~2^31 values
    result = rle_result(bomb, (h, w), TARGET)
    tracemalloc.start()
    with pytest.raises(BrushError, match="expected"):
        result_mask(result)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    huge = rle_result(bomb, (50_000, 50_000), TARGET)
    with pytest.raises(BrushError, match="pixel limit"):
        result_mask(huge)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda r: r.update(value=None), "value"),
        (lambda r: r["value"].update(rle="abc"), "list of bytes"),
        (lambda r: r["value"].update(rle=[1, 2, 300, 4]), "list of bytes"),
        (lambda r: r["value"].update(rle=r["value"]["rle"][:12]), "malformed"),
        (lambda r: r.update(original_width="480"), "size"),
        (lambda r: r.update(original_width=240), "image is"),
    ],
)
def test_broken_brush_results_fail_with_their_reason(real_mask, mutate, reason):
    result = rle_result(mask_rle(real_mask), real_mask.shape, TARGET)
    mutate(result)
    with pytest.raises(BrushError, match=reason):
        annotation_mask([result], TARGET, real_mask.shape)


def test_an_rle_with_words_wider_than_a_byte_is_malformed_not_a_crash(real_mask):
    h, w = real_mask.shape
    bits = f"{h * w * 4:032b}" + "11111" + "0000" * 4 + "1" + "00" + "0" + "1" * 32
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    with pytest.raises(BrushError, match="malformed"):
        result_mask(rle_result(rle, (h, w), TARGET))


def test_results_of_other_controls_are_ignored_and_no_result_is_crack_free(real_mask):
    other = {**rle_result(mask_rle(real_mask), real_mask.shape, TARGET), "from_name": "other"}
    assert not annotation_mask([other, "junk", None], TARGET, real_mask.shape).any()
    assert not annotation_mask([], TARGET, real_mask.shape).any()
    with pytest.raises(BrushError):
        annotation_mask(None, TARGET, real_mask.shape)


def test_with_two_labels_only_crack_strokes_make_the_mask(real_mask):
    """Brush + Labels config: merged results and split (brush + labels sibling) results;
    spalling strokes and unlabelled strokes are not cracks."""
    other = np.zeros_like(real_mask)
    other[:20, :20] = True
    crack = rle_result(mask_rle(real_mask), real_mask.shape, TWO_LABELS)
    assert crack["from_name"] == "kind" and crack["type"] == "brushlabels"
    assert crack["value"]["brushlabels"] == ["Crack"]
    spalling = {**crack, "value": {**crack["value"], "brushlabels": ["spalling"]}}
    spalling["value"]["rle"] = mask_rle(other)
    got = annotation_mask([crack, spalling], TWO_LABELS, real_mask.shape)
    assert np.array_equal(got, real_mask)

    def split(mask, label, rid):
        brush = {**rle_result(mask_rle(mask), mask.shape, TWO_LABELS), "id": rid}
        brush.update(from_name="brush", type="brush")
        brush["value"] = {"format": "rle", "rle": brush["value"]["rle"]}
        labels = {"id": rid, "from_name": "kind", "to_name": "image", "type": "labels",
                  "value": {"labels": [label]}}  # fmt: skip
        return [brush, labels]

    results = split(real_mask, "Crack", "a") + split(other, "spalling", "b")
    assert np.array_equal(annotation_mask(results, TWO_LABELS, real_mask.shape), real_mask)
    unlabelled = split(other, "Crack", "c")[0]
    assert not annotation_mask([unlabelled], TWO_LABELS, real_mask.shape).any()


@pytest.mark.parametrize(
    "labels_value",
    [None, "Crack", {"labels": "Crack"}, {"labels": None}, {"labels": [None, 3]}],
)
def test_a_malformed_labels_sibling_makes_no_crack_and_no_crash(real_mask, labels_value):
    brush = {**rle_result(mask_rle(real_mask), real_mask.shape, TWO_LABELS), "id": "x"}
    brush.update(from_name="brush", type="brush")
    brush["value"] = {"format": "rle", "rle": brush["value"]["rle"]}
    sibling = {"id": "x", "from_name": "kind", "type": "labels", "value": labels_value}
    assert not annotation_mask([brush, sibling], TWO_LABELS, real_mask.shape).any()

"""The demo project holds as many images as asked, spread over the sets."""

from __future__ import annotations

import pytest

from crackal.cli import build_parser
from crackal.demo import demo_images
from selection.images import list_images

SETS = ("cfd", "crack500", "gaps384", "bsds500")


def test_demo_images_gives_the_count_asked_spread_over_every_set(crack_data):
    present = [name for name in SETS if (crack_data / name).is_dir()]
    if len(present) < 2:
        pytest.skip(f"fewer than two of the demo's sets in {crack_data}")
    for count in (1, 4, 7, 30):
        images = demo_images(crack_data, count)
        assert len(images) == count == len(set(images))
        per_set = [sum(p.parent.parent.name == name for p in images) for name in present]
        assert max(per_set) - min(per_set) <= 1, dict(zip(present, per_set, strict=True))
    sizes = sorted(len(list_images(crack_data / name)) for name in present)
    count = sizes[0] + 1 + sum(sizes[1:]) // 2  # more than the smallest set holds
    big = demo_images(crack_data, count)  # the other sets make its share up
    assert len(big) == count == len(set(big))


@pytest.mark.parametrize("value", ["0", "-3"])
def test_the_demo_refuses_an_empty_project(value, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--images", value])
    assert "--images: must be at least 1" in capsys.readouterr().err

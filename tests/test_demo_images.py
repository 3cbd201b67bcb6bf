"""The demo project holds as many images as asked, spread over the sets."""

from __future__ import annotations

import pytest

from crackal.cli import build_parser
from crackal.demo import demo_images


def test_demo_images_gives_the_count_asked_spread_over_every_set(crack_data):
    for count in (1, 4, 7, 30):
        images = demo_images(crack_data, count)
        assert len(images) == count == len(set(images))
        per_set = {name: sum(p.parent.parent.name == name for p in images)
                   for name in ("cfd", "crack500", "gaps384", "bsds500")}  # fmt: skip
        assert max(per_set.values()) - min(per_set.values()) <= 1, per_set
    big = demo_images(crack_data, 500)  # more than cfd's 118: the other sets make it up
    assert len(big) == 500 == len(set(big))


@pytest.mark.parametrize("value", ["0", "-3"])
def test_the_demo_refuses_an_empty_project(value, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--images", value])
    assert "--images: must be at least 1" in capsys.readouterr().err

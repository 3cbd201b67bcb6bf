"""How a re-score cuts the queue into import pages: small pages while masks are made, so
masked tasks join Label Studio's queue a few at a time; large ones where nothing is left to
mask; every task once, in the queue's order."""

from __future__ import annotations

import pytest

from backend.label_studio import LabelStudioError
from backend.service import _pages, _refused


def test_pages_are_small_while_masks_are_made_and_large_after():
    queue = list(range(100, 350))
    deferred = {t: {} for t in queue[:25]}  # the first 25 still need a mask
    pages = list(_pages(queue, deferred, front=10, page_size=100))
    assert [len(p) for p in pages] == [10, 10, 10, 100, 100, 20]
    assert [t for p in pages for t in p] == queue


def test_pages_turn_small_when_a_task_to_mask_is_within_the_next_large_page():
    queue = list(range(300))
    deferred = {250: {}}
    sizes = [len(p) for p in _pages(queue, deferred, front=10, page_size=100)]
    assert sizes == [10, 100, 100, 10, 10, 10, 10, 10, 40]


def test_an_empty_queue_is_one_empty_page_and_no_page_is_empty_otherwise():
    assert list(_pages([], {}, 10, 100)) == [[]]
    assert list(_pages([7], {7: {}}, 10, 100)) == [[7]]
    assert list(_pages(list(range(10)), {}, 10, 100)) == [list(range(10))]


@pytest.mark.parametrize(("front", "page_size"), [(0, 100), (10, 0), (-1, 5)])
def test_pages_of_no_task_are_refused(front, page_size):
    with pytest.raises(ValueError, match="at least one task"):
        list(_pages([1, 2, 3], {}, front, page_size))


def test_only_a_refusal_of_the_request_itself_fails_one_task_alone():
    assert _refused(LabelStudioError("task gone", 404))
    assert _refused(LabelStudioError("bad prediction", 400))
    for status in (401, 403, 429, 500, 502, None):  # credentials, rate, server, no answer
        assert not _refused(LabelStudioError("failing", status))

"""Task pages read as plain JSON: what a Label Studio answer that is not a task page does
(a proxy's error page, a truncated body, another API's shape) is an error that says so,
never a crash deep in the scoring job. A local server plays the broken peer; the real
Label Studio's pages are read in the end-to-end tests."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from backend.label_studio import ANNOTATION_FIELDS, TASK_FIELDS, LabelStudioError
from tests.peer_server import Peer, client_of

HTML, LIST, NO_TASKS, ODD_ITEMS, ERROR, NO_TOTAL = 1, 2, 3, 4, 5, 6  # project: its answer
ANSWERS: dict[int, tuple[int, bytes]] = {
    HTML: (200, b"<html>502 Bad Gateway</html>"),
    LIST: (200, b"[1, 2, 3]"),
    NO_TASKS: (200, json.dumps({"total": 3}).encode()),
    ODD_ITEMS: (200, json.dumps({"tasks": [{"id": 1}, "x", 7, None], "total": 4}).encode()),
    NO_TOTAL: (200, json.dumps({"tasks": [{"id": 1}], "total": "many"}).encode()),
    ERROR: (500, b"oops"),
}
SEEN: list[dict[str, list[str]]] = []


class BrokenLabelStudio(Peer):
    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        query = parse_qs(urlparse(self.path).query)
        SEEN.append(query)
        self.reply(*ANSWERS[int(query["project"][0])])


@pytest.fixture(scope="module")
def client():
    with client_of(BrokenLabelStudio) as ours:
        yield ours


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(HTML, "not a JSON answer"), (LIST, "no task list"), (NO_TASKS, "no task list"),
     (ERROR, "HTTP 500"), (NO_TOTAL, "no task count")],
)  # fmt: skip
def test_an_answer_that_is_no_task_page_is_an_error_that_says_so(client, answer, reason):
    with pytest.raises(LabelStudioError, match=reason):
        client.tasks_page(answer, 1, 100)


def test_only_task_objects_are_kept_and_the_fields_read_are_asked_for(client):
    items, total = client.tasks_page(ODD_ITEMS, 1, 100)
    assert items == [{"id": 1}] and total == 4
    # `include` also filters the nested annotations: their fields must be named too
    asked = SEEN[-1]["include"][0].split(",")
    assert set(TASK_FIELDS) | set(ANNOTATION_FIELDS) == set(asked) and len(asked) == len(set(asked))
    assert SEEN[-1]["page_size"] == ["100"]

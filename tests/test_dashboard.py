"""The project dashboard: its numbers recomputed independently from the masks, its page
served behind auth with every figure, and `crackal report` writing the same."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from backend.app import create_app
from backend.dashboard import BIN_EDGES, dashboard_data
from backend.edit_records import EditLog, make_record
from backend.pool_store import PoolStore
from backend.settings import Settings
from tests.conftest import cli


def independent_f(predicted: np.ndarray, label: np.ndarray) -> float:
    tp = float((predicted & label).sum())
    p = tp / predicted.sum() if predicted.sum() else 1.0
    r = tp / label.sum()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.fixture
def project(crack_data, tmp_path):
    """12 labels of real CFD masks against pre-annotations shifted by 0-11 pixels, spread
    over distances; 5 tasks still to label."""
    masks = sorted((crack_data / "cfd" / "masks").iterdir())[:12]
    rng = np.random.default_rng(3)
    log, truth = EditLog(tmp_path, 4), []
    for i, path in enumerate(masks):
        label = np.asarray(Image.open(path)) > 127
        predicted = np.roll(label, i, axis=1)
        distance = float(rng.uniform(0, 1))
        annotation = {"id": 100 + i, "updated_at": f"2026-11-27T10:{i:02d}", "lead_time": 10.0 + i}
        prediction = {"id": 200 + i, "model_version": "crackal-v1", "score": 1 - distance}
        log.append([make_record(i, annotation, prediction, predicted, label, distance)])
        truth.append((i, distance, independent_f(predicted, label)))
    PoolStore(tmp_path, 4).save_distances("v1", {50 + k: k / 4 for k in range(5)})
    return tmp_path, truth


def test_every_label_is_listed_with_its_f_and_distance_as_recomputed(project):
    root, truth = project
    data = dashboard_data(root, 4)
    got = {e["task"]: (e["scaled_distance"], e["f"]) for e in data["edits"]}
    assert got.keys() == {t for t, _, _ in truth}
    for task, distance, f in truth:
        assert got[task][0] == distance and got[task][1] == pytest.approx(f, abs=1e-9)
    for b, lo, hi in zip(data["bins"], BIN_EDGES, BIN_EDGES[1:], strict=False):
        inside = [f for _, d, f in truth if lo <= d < hi]
        assert b["n"] == len(inside)
        if inside:
            assert b["mean"] == pytest.approx(np.mean(inside)) and b["low"] <= b["high"]
    near = [f for _, d, f in truth if d < 0.6]
    far = [f for _, d, f in truth if d >= 0.6]
    stop = data["stop"]
    assert stop["near"]["mean"] == pytest.approx(np.mean(near))
    assert stop["far"]["mean"] == pytest.approx(np.mean(far))
    want = min(len(near), len(far)) >= 3 and np.mean(far) >= 0.7
    want = want and abs(np.mean(far) - np.mean(near)) <= 0.05
    assert stop["stop"] == want
    assert data["remaining"]["tasks"] == 5
    assert data["remaining"]["scaled_distances"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    per_task = data["remaining"]["expected_f"]["per_task"]
    values = [per_task[str(50 + k)] for k in range(5)]  # at distances 0, 0.25, ..., 1
    assert values == sorted(values, reverse=True)  # F is expected to fall with distance
    fs = [f for *_, f in truth]
    assert min(fs) <= min(values) and max(values) <= max(fs)
    assert data["remaining"]["expected_f"]["mean"] == pytest.approx(np.mean(values))
    nearest = min(d for _, d, _ in truth)  # nearer than every label: a lower bound only
    assert data["remaining"]["expected_f"]["nearest_label"] == nearest
    below = sum(k / 4 < nearest for k in range(5))
    assert data["remaining"]["expected_f"]["nearer_than_labels"] == below >= 1


def test_the_page_is_served_behind_auth_with_every_figure(project):
    root, _ = project
    settings = Settings(registry=root, basic_auth_user="u", basic_auth_password="p")
    client = create_app(settings).test_client()
    assert client.get("/dashboard?project=4").status_code == 401
    assert client.get("/dashboard/data?project=4").status_code == 401
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert client.get("/dashboard?project=x", headers=auth).status_code == 400
    page = client.get("/dashboard?project=4", headers=auth).get_data(as_text=True)
    for figure in ("curve", "distances", "effort"):
        src = page.split(f'id="{figure}"')[1].split('src="')[1].split('"')[0]
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    served = client.get("/dashboard/data?project=4", headers=auth).get_json()
    assert served == json.loads(json.dumps(dashboard_data(root, 4)))
    below = served["remaining"]["expected_f"]["nearer_than_labels"]
    assert f'<span id="lower-bound">{below} of them are nearer than every label' in page


def test_report_writes_the_page_and_its_numbers(project, tmp_path):
    root, truth = project
    out = tmp_path / "report"
    cli("report", "--registry", str(root), "--project", "4", "--out", str(out))
    data = json.loads((out / "dashboard.json").read_text())
    assert len(data["edits"]) == len(truth)
    assert (out / "dashboard.html").read_text().count("data:image/png;base64,") == 3


@pytest.mark.parametrize("content", ["{", "[]", '{"version": "v1", "scaled": 7}', "\x00\xff"])
def test_broken_project_state_files_cost_only_themselves(tmp_path, content):
    from backend.project_threshold import project_threshold
    from backend.project_view import project_view
    from training.registry import Registry

    folder = tmp_path / "projects" / "project-9"
    folder.mkdir(parents=True)
    for name in ("distances.json", "threshold.json", "trained.json", "skipped.json"):
        (folder / name).write_text(content)
    assert PoolStore(tmp_path, 9).load_distances() == (None, {})
    assert project_threshold(tmp_path, 9, "v1") is None
    view = project_view(Registry(tmp_path), 9)
    assert view["skipped_tasks"] == {} and view["skipped_labels"] == {}
    assert dashboard_data(tmp_path, 9)["remaining"]["tasks"] == 0

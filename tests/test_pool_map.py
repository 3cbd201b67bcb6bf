"""The map of the pool (t-SNE + DBSCAN of the distances' PCA space), its drill-down page
and the Grad-CAM map, on real images; nearest neighbours and the Grad-CAM recomputed
independently."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA

from backend.app import create_app
from backend.dashboard import dashboard_data
from backend.pool_store import PoolStore
from backend.project_map import ProjectMap, map_path
from backend.settings import Settings
from selection.distance_fit import DistanceFit
from selection.images import content_hash, list_images, read_rgb
from selection.pool_map import draw_map
from tests.conftest import registry_with_an_untrained_model
from training.grad_cam import crack_cam
from training.model import DEFAULT_ENCODER, build_model, normalize

POOL_IDS = list(range(60, 72))


@pytest.fixture
def mapped(crack_data, sets, extractor, tmp_path):
    """Project 4: P = 8 DeepCrack training images, S = 6 CFD + 6 Crack500 tasks (local
    files), scored and mapped as the scoring job does it; an untrained model serves."""
    registry_with_an_untrained_model(tmp_path)
    base = list_images(sets["train"])
    pool = list_images(sets["cfd"]) + list_images(sets["crack500"])
    p_features = extractor([read_rgb(p) for p in base])
    s_features = extractor([read_rgb(p) for p in pool])
    fit, i_dist = DistanceFit.fit(p_features, s_features)
    names = [str(p.relative_to(sets["train"])) for p in base]
    found = ProjectMap.draw("v1", fit, names, POOL_IDS, s_features, fit.scaled_at_fit(i_dist))
    found.save(tmp_path, 4)
    index = {
        t: {"url": str(p.resolve()), "sha": content_hash(p.read_bytes())}
        for t, p in zip(POOL_IDS, pool, strict=True)
    }
    PoolStore(tmp_path, 4).save_index(index)
    settings = Settings(
        registry=tmp_path,
        cache=tmp_path / "cache",
        base_train=sets["train"],
        local_files_root=crack_data,
        basic_auth_user="u",
        basic_auth_password="p",
    )
    return {
        "root": tmp_path,
        "settings": settings,
        "p": p_features,
        "s": s_features,
        "names": names,
        "pool": pool,
    }


AUTH = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


def test_every_pool_task_is_on_the_map_and_its_nearest_training_images_are_recomputed(mapped):
    data = dashboard_data(mapped["root"], 4)["map"]
    assert sorted(p["task"] for p in data["pool"]) == POOL_IDS
    assert len(data["training"]) == 8 and data["drawn"] == data["points"] == 20
    coords = np.array([[p["x"], p["y"]] for p in data["training"] + data["pool"]])
    assert np.isfinite(coords).all() and coords.std(axis=0).min() > 0
    # independently: PCA (sklearn, 20 points -> 20 components at most) of P u S, Euclidean
    joint = np.vstack([mapped["p"], mapped["s"]]).astype(np.float64)
    z = PCA(n_components=min(25, *joint.shape)).fit_transform(joint)
    found = ProjectMap.load(mapped["root"], 4)
    for i, task in enumerate(POOL_IDS):
        order = np.argsort(np.linalg.norm(z[:8] - z[8 + i], axis=1), kind="stable")
        assert found.nearest_training(task, 3) == [mapped["names"][j] for j in order[:3]]


def test_the_map_links_each_pool_point_to_a_page_with_its_image_cam_and_neighbours(mapped):
    client = create_app(mapped["settings"]).test_client()
    page = client.get("/dashboard?project=4", headers=AUTH).get_data(as_text=True)
    svg = page.split('<div id="map">')[1].split("</svg>")[0]
    links = {f"dashboard/task?project=4&amp;task={t}" for t in POOL_IDS}
    hrefs = [s.split('"')[0] for s in svg.split('xlink:href="')[1:]]
    assert {h for h in hrefs if not h.startswith("#")} == links
    assert client.get("/dashboard/task?project=4&task=61").status_code == 401
    assert client.get("/dashboard/task?project=4&task=999", headers=AUTH).status_code == 404
    assert client.get("/dashboard/task?project=4&task=x", headers=AUTH).status_code == 400
    task = client.get("/dashboard/task?project=4&task=61", headers=AUTH).get_data(as_text=True)
    for figure in ("shown", "cam", "nearest-images"):
        src = task.split(f'id="{figure}"')[1].split('src="')[1].split('"')[0]
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert png.size[0] > 200 and png.size[1] > 100, figure
    nearest = ProjectMap.load(mapped["root"], 4).nearest_training(61, 5)
    listed = task.split('<ol id="nearest">')[1].split("</ol>")[0]
    assert listed == "".join(f"<li>{name}</li>" for name in nearest)  # each image read


def test_a_damaged_map_file_costs_only_the_map(mapped):
    map_path(mapped["root"], 4).write_bytes(b"PK\x03\x04 not a zip")
    assert ProjectMap.load(mapped["root"], 4) is None
    assert dashboard_data(mapped["root"], 4)["map"] is None
    client = create_app(mapped["settings"]).test_client()
    assert "No map yet" in client.get("/dashboard?project=4", headers=AUTH).get_data(as_text=True)
    assert client.get("/dashboard/task?project=4&task=61", headers=AUTH).status_code == 404


def test_a_large_pool_is_drawn_from_a_proportional_sample():
    rng = np.random.default_rng(0)
    drawn = draw_map(rng.normal(size=(300, 25)), rng.normal(size=(900, 25)), limit=400)
    assert len(drawn.primary_rows) == 100 and len(drawn.pool_rows) == 300
    assert len(set(drawn.pool_rows)) == 300 and drawn.pool_rows.max() < 900


def test_grad_cam_equals_an_independent_recomputation_on_a_real_image(crack_data):
    torch.manual_seed(0)
    model = build_model(pretrained=None).eval()
    path = sorted((crack_data / "cfd" / "images").iterdir())[0]
    image = read_rgb(path)
    cam = crack_cam(model, image, DEFAULT_ENCODER)
    assert cam.shape == image.shape[:2] and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert not model.encoder._forward_hooks and not model.training  # the served model as it was
    # independently: torch.autograd.grad of the target w.r.t. the deepest encoder map (a
    # 320 x 480 CFD image: under 512 px and a multiple of 32, so neither scaled nor padded)
    assert image.shape[:2] == (320, 480)
    x = normalize(
        torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255,
        DEFAULT_ENCODER,
    )
    features = model.encoder(x)
    logits = model.segmentation_head(model.decoder(features))[0, 0]
    target = logits[logits > 0].sum() if (logits > 0).any() else logits.sum()
    (grad,) = torch.autograd.grad(target, features[-1])
    mine = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * features[-1]).sum(1, keepdim=True))
    mine = torch.nn.functional.interpolate(mine, size=(320, 480), mode="bilinear")[0, 0]
    mine = (mine / mine.max()).detach().numpy()
    assert np.abs(mine - cam).max() < 1e-4


@pytest.mark.parametrize("row", [10_000, -1])  # a pool point that does not exist
def test_a_map_file_whose_arrays_disagree_is_not_used(mapped, row):
    found = ProjectMap.load(mapped["root"], 4)
    found.drawn.pool_rows[0] = row
    found.save(mapped["root"], 4)
    assert ProjectMap.load(mapped["root"], 4) is None
    assert dashboard_data(mapped["root"], 4)["map"] is None


def test_a_map_naming_a_file_outside_the_base_set_shows_no_image(mapped):
    found = ProjectMap.load(mapped["root"], 4)
    found.primary_names = ["../../../../etc/passwd"] * len(found.primary_names)
    found.save(mapped["root"], 4)
    client = create_app(mapped["settings"]).test_client()
    page = client.get("/dashboard/task?project=4&task=61", headers=AUTH).get_data(as_text=True)
    assert page.count("not under CRACKAL_BASE_TRAIN") == 5


def test_a_map_knows_whether_it_shows_this_very_pool(mapped):
    """A warm scoring job keeps the map (t-SNE is its costly part) only when nothing it
    shows changed: version, P, the pool's tasks and their distances."""
    found = ProjectMap.load(mapped["root"], 4)
    names, scaled = mapped["names"], found.scaled.astype(np.float64)
    assert found.shows("v1", names, POOL_IDS, scaled)
    assert not found.shows("v2", names, POOL_IDS, scaled)
    assert not found.shows("v1", [*names, "task 61"], POOL_IDS, scaled)  # a new label
    assert not found.shows("v1", names, POOL_IDS[1:], scaled[1:])  # a task left the pool
    assert not found.shows("v1", names, POOL_IDS, scaled + 0.01)  # the fit moved
    assert not found.shows("v1", names, POOL_IDS, scaled[:3])  # inconsistent: draw again

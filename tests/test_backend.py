"""The ML backend's HTTP protocol (payloads as Label Studio 1.23 sends them) and its
handling of bad input. Label Studio itself is not needed here: images travel as data URLs
or local paths, and 'Label Studio unreachable' is a closed loopback port."""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image

from backend.app import create_app
from backend.edit_records import EditLog, make_record
from backend.image_source import own_route
from backend.job_functions import retrain_config, retrain_preset, thorough_config
from backend.label_config import LabelConfigError, parse_brush_target
from backend.pool_store import PoolStore
from backend.service import Service
from backend.settings import Settings
from selection.distance_fit import DistanceFit
from selection.images import read_rgb
from selection.strategies import Strategy
from tests.conftest import registry_with_an_untrained_model
from training.device import resolve_device
from training.fit import Promotion
from training.registry import Registry
from training.train import Adaptation

CONFIG = """<View><Image name="img" value="$photo"/>
<BrushLabels name="paint" toName="img"><Label value="Background"/><Label value="Crack"/>
</BrushLabels></View>"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_url(path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return registry_with_an_untrained_model(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def settings(registry, real_subset, crack_data, tmp_path_factory):
    return Settings(
        label_studio_url=f"http://127.0.0.1:{closed_port()}",
        label_studio_api_key="x",
        registry=registry.root,
        base_train=real_subset("deepcrack/train", 10),
        cache=tmp_path_factory.mktemp("cache"),
        feature_size=224,
        request_timeout=2,
        local_files_root=crack_data / "cfd",
        insecure=True,  # the auth tests below lock it
        strategy=Strategy.FARTHEST,  # the expected-F scores below belong to this order
    )


@pytest.fixture(scope="module")
def client(settings):
    return create_app(settings).test_client()


@pytest.fixture(scope="module")
def images(crack_data):
    return sorted((crack_data / "cfd" / "images").iterdir())[:3]


def predict(client, tasks, project=None):
    resp = client.post(
        "/predict",
        json={
            "tasks": tasks,
            "project": project,
            "label_config": CONFIG,
            "params": {"context": None},
        },
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["results"]


def test_label_config_is_read_from_the_project():
    target = parse_brush_target(CONFIG)
    assert (target.from_name, target.to_name, target.image_key) == ("paint", "img", "photo")
    assert target.labels == ("Background", "Crack") and target.crack_label == "Crack"
    for bad in (
        "<View><Image name='i' value='$x'/></View>",
        "not xml",
        "<View><BrushLabels name='b' toName='nothing'><Label value='c'/></BrushLabels></View>",
    ):
        with pytest.raises(LabelConfigError):
            parse_brush_target(bad)


def test_brush_configs_and_the_crack_label():
    image = '<Image name="img" value="$photo"/>'
    brush_only = parse_brush_target(f'<View>{image}<Brush name="b" toName="img"/></View>')
    assert (brush_only.from_name, brush_only.result_type, brush_only.crack_label) == (
        "b",
        "brush",
        None,
    )
    two = (
        f'<View>{image}<Brush name="b" toName="img"/><Labels name="l" toName="img">'
        '<Label value="Spalling"/><Label value="Crack"/></Labels></View>'
    )
    target = parse_brush_target(two)
    assert (target.from_name, target.result_type, target.crack_label) == (
        "l",
        "brushlabels",
        "Crack",
    )
    assert target.brush_controls == {"b", "l"}
    assert parse_brush_target(two, "Spalling").crack_label == "Spalling"
    with pytest.raises(LabelConfigError, match="CRACKAL_LABEL='rust' is not a label"):
        parse_brush_target(two, "rust")
    ambiguous = (
        f'<View>{image}<BrushLabels name="t" toName="img"><Label value="A"/>'
        '<Label value="B"/></BrushLabels></View>'
    )
    with pytest.raises(LabelConfigError, match="set CRACKAL_LABEL"):
        parse_brush_target(ambiguous)


def test_upstream_environment_names_are_aliases():
    s = Settings.from_env(
        {
            "LABEL_STUDIO_HOST": "http://ls:8080/",
            "MODEL_DIR": "/models",
            "LOG_LEVEL": "debug",
            "THREADS": "8",
            "CRACKAL_LABEL": "Crack",
        }
    )
    assert s.label_studio_url == "http://ls:8080" and str(s.registry) == "/models"
    assert (s.log_level, s.threads, s.crack_label) == ("DEBUG", 8, "Crack")
    with pytest.raises(ValueError, match="WORKERS > 1 needs REDIS_URL"):
        Settings.from_env({"WORKERS": "2"})
    assert Settings.from_env({"WORKERS": "2", "REDIS_URL": "redis://r"}).workers == 2


def test_credentials_go_only_to_label_studios_own_routes():
    s = Settings(label_studio_url="http://ls.example:8080")
    assert own_route("http://ls.example:8080/data/upload/1/a.png", s)
    assert own_route("http://ls.example:8080/tasks/3/presign/?fileuri=czM6Ly9i", s)
    for other in (
        "http://ls.example:8080/data/../api/users",
        "http://ls.example:8080/data/%2e%2e/api/users",
        "http://ls.example:8080/data/%2E%2E%5Capi/users",
        "https://ls.example:8080/data/upload/1/a.png",  # another scheme
        "http://ls.example:9999/data/upload/1/a.png",  # another port
        "http://ls.example.evil:8080/data/upload/1/a.png",
        "http://user@evil.example/@ls.example:8080/x",
    ):
        assert not own_route(other, s), other


def test_settings_from_environment():
    s = Settings.from_env(
        {
            "LABEL_STUDIO_URL": "http://ls:8080/",
            "CRACKAL_BAND": "0.5,0.9",
            "CRACKAL_FEATURES": "imagenet",
            "CRACKAL_ORDER_QUEUE": "0",
        }
    )
    assert s.label_studio_url == "http://ls:8080" and s.band == (0.5, 0.9)
    assert s.features == "imagenet" and s.order_queue is False
    # auto: the quick preset where training runs on a CPU, the thorough one on CUDA
    auto = retrain_config(s)
    expected = Adaptation.THOROUGH if resolve_device().type == "cuda" else Adaptation.QUICK
    assert retrain_preset(s) is expected and auto == expected.config()
    quick, thorough = Adaptation.QUICK.config(), Adaptation.THOROUGH.config()
    assert quick.freeze_encoder and quick.steps == 60 and quick.skeleton_recall == 1.0
    assert not thorough.freeze_encoder and thorough.steps == 600 == thorough.eval_every
    chosen = Settings.from_env({"CRACKAL_ADAPTATION": "thorough"})
    assert retrain_preset(chosen) is Adaptation.THOROUGH and retrain_config(chosen) == thorough
    capped = {"CRACKAL_ADAPTATION": "thorough", "CRACKAL_THOROUGH_MINUTES": "2"}
    assert retrain_config(Settings.from_env(capped)).max_minutes == 2.0
    trained = Settings.from_env({"CRACKAL_ADAPT_ENCODER": "trained"})
    assert not retrain_config(trained).freeze_encoder
    wide = Settings.from_env({"CRACKAL_SKELETON_RECALL": "0", "CRACKAL_ADAPT_STEPS": "7"})
    assert retrain_config(wide).skeleton_recall == 0.0 and retrain_config(wide).steps == 7
    assert retrain_config(wide).eval_every == 7
    # a thorough pass while labelling pauses: on by default, its budget in minutes
    assert s.thorough_when_idle and thorough_config(s).max_minutes == 15.0
    short = Settings.from_env({"CRACKAL_THOROUGH_MINUTES": "0.5", "CRACKAL_SKELETON_RECALL": "0"})
    assert thorough_config(short).max_minutes == 0.5 and thorough_config(short).steps == 600
    assert thorough_config(short).skeleton_recall == 0.0
    assert not Settings.from_env({"CRACKAL_THOROUGH_WHEN_IDLE": "0"}).thorough_when_idle
    assert s.promote is Promotion.IF_BETTER
    assert Settings.from_env({"CRACKAL_PROMOTE": "never"}).promote is Promotion.NEVER
    with pytest.raises(ValueError, match="CRACKAL_FEATURES"):
        Settings.from_env({"CRACKAL_FEATURES": "clip"})
    # refused at start, not at the first model load or retrain
    refused = [
        ({"CRACKAL_DEVICE": "gpu-please"}, "not a device"),
        ({"CRACKAL_ADAPT_STEPS": "0"}, "CRACKAL_ADAPT_STEPS"),
        ({"CRACKAL_ADAPT_ENCODER": "half"}, "CRACKAL_ADAPT_ENCODER"),
        ({"CRACKAL_SKELETON_RECALL": "nan"}, "CRACKAL_SKELETON_RECALL"),
        ({"CRACKAL_SKELETON_RECALL": "-1"}, "CRACKAL_SKELETON_RECALL"),
        ({"CRACKAL_SKELETON_RECALL": "inf"}, "CRACKAL_SKELETON_RECALL"),
        ({"CRACKAL_SKELETON_RECALL": "lots"}, "CRACKAL_SKELETON_RECALL must be a number: 'lots'"),
        ({"CRACKAL_SKELETON_RECALL": ""}, "CRACKAL_SKELETON_RECALL must be a number"),
        ({"CRACKAL_ADAPT_STEPS": "6.5"}, "CRACKAL_ADAPT_STEPS must be an integer: '6.5'"),
        ({"CRACKAL_ADAPTATION": "slow"}, "CRACKAL_ADAPTATION must be auto, quick or thorough"),
        ({"CRACKAL_ADAPTATION": ""}, "CRACKAL_ADAPTATION must be"),
        ({"CRACKAL_PROMOTE": "sometimes"}, "CRACKAL_PROMOTE must be always, if-better or never"),
        ({"CRACKAL_PROMOTE": "IF-BETTER"}, "CRACKAL_PROMOTE must be"),
        ({"CRACKAL_THOROUGH_MINUTES": "0"}, "CRACKAL_THOROUGH_MINUTES must be > 0"),
        ({"CRACKAL_THOROUGH_MINUTES": "nan"}, "CRACKAL_THOROUGH_MINUTES must be > 0"),
        ({"CRACKAL_THOROUGH_MINUTES": "inf"}, "CRACKAL_THOROUGH_MINUTES must be > 0"),
        ({"CRACKAL_THOROUGH_MINUTES": "soon"}, "CRACKAL_THOROUGH_MINUTES must be a number"),
        ({"CRACKAL_THOROUGH_MINUTES": "31"}, "at most half of CRACKAL_JOB_TIMEOUT"),
        (
            {"CRACKAL_THOROUGH_MINUTES": "10", "CRACKAL_JOB_TIMEOUT": "900"},
            "at most half of CRACKAL_JOB_TIMEOUT",
        ),
    ]
    if not torch.cuda.is_available():
        refused.append(({"CRACKAL_DEVICE": "cuda"}, "CUDA is not available"))
    for env, reason in refused:
        with pytest.raises(ValueError, match=reason):
            Settings.from_env(env)


def test_health_and_setup_answer_fast_without_loading_a_model(client, registry):
    health = client.get("/health").get_json()
    assert health["status"] == "UP" and health["model_version"] == registry.current()
    start = time.monotonic()
    resp = client.post(
        "/setup", json={"schema": CONFIG, "hostname": "http://ls", "access_token": "t"}
    )
    assert time.monotonic() - start < 3
    assert resp.status_code == 200 and resp.get_json() == {"model_version": "crackal-v1"}
    assert not client.application.config["crackal.service"].holder.loaded
    bad = client.post("/setup", json={"schema": "<View><Text name='t' value='$t'/></View>"})
    assert bad.status_code == 400 and "<BrushLabels> or <Brush>" in bad.get_json()["error"]


def test_predict_returns_a_mask_per_task_at_the_original_size(client, images):
    tasks = [{"id": i + 1, "data": {"photo": data_url(p)}} for i, p in enumerate(images)]
    results = predict(client, tasks)
    assert len(results) == 3
    for (pred,), path in zip(results, images, strict=True):
        assert pred["model_version"] == "crackal-v1" and 0.0 <= pred["score"] <= 1.0
        (r,) = pred["result"]
        assert (r["from_name"], r["to_name"], r["type"]) == ("paint", "img", "brushlabels")
        assert r["value"]["brushlabels"] == ["Crack"]
        with Image.open(path) as img:
            w, h = img.size
        assert (r["original_height"], r["original_width"]) == (h, w)
        assert decode_rle(r["value"]["rle"]).size == h * w * 4
    scores = sorted(p[0]["score"] for p in results)
    assert scores[0] == 0.0 and scores[-1] == 1.0  # min-max over the pool of this call


def test_bad_tasks_get_no_prediction_and_the_others_still_do(client, images, tmp_path):
    broken = "data:image/jpeg;base64," + base64.b64encode(b"definitely not a jpeg").decode()
    tasks = [
        {"id": 1, "data": {"photo": data_url(images[0])}},
        {"id": 2, "data": {"photo": broken}},
        {"id": 3, "data": {"other": "x"}},
        {"id": 4, "data": {"photo": "s3://bucket/crack.jpg"}},
        {"id": 5, "data": {"photo": "/etc/passwd"}},
        {"id": 6, "data": {"photo": str(images[1])}},  # inside CRACKAL_LOCAL_FILES_ROOT
        {"id": 7, "data": {"photo": "data:image/jpeg;base64,@@@"}},
        {"id": 8, "data": {"photo": data_url(images[2])}},
    ]
    results = predict(client, tasks, project=3)  # Label Studio unreachable: call-only pool
    got = [bool(r) for r in results]
    assert got == [True, False, False, False, False, True, False, True]


def test_oversized_images_are_refused(settings, images):
    small = Settings(**{**settings.__dict__, "max_image_pixels": 1000})
    client = create_app(small).test_client()
    results = predict(client, [{"id": 1, "data": {"photo": data_url(images[0])}}])
    assert results == [[]]


@pytest.mark.parametrize("body", [None, [], {"tasks": "x"}, {"tasks": [{"data": {}}]}])
def test_malformed_predict_requests_are_400(client, body):
    resp = (
        client.post("/predict", json=body)
        if body is not None
        else client.post("/predict", data="{", content_type="application/json")
    )
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_webhooks_are_acknowledged_and_only_pool_changes_enqueue(client):
    resp = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 9}})
    assert resp.get_json() == {"action": "PROJECT_UPDATED", "status": "ignored"}
    resp = client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 9}})
    assert resp.get_json()["status"] in ("queued", "already queued", "follow-up")
    assert client.post("/webhook", json={"project": 1}).status_code == 400


def test_label_studio_unreachable_is_a_visible_job_error(settings):
    # no retries: their backoff (5 s, 20 s) would only add waiting (test_jobs retries)
    client = create_app(replace(settings, job_retries=0)).test_client()
    queue = client.application.config["crackal.queue"]
    client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 11}})
    assert queue.runner.wait_idle(60)
    record = queue.status()["last"]["rescore:11"]
    assert record["state"] == "failed" and "unreachable" in record["error"]
    assert client.get("/health").get_json()["jobs"]["last"]["rescore:11"]["state"] == "failed"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_every_route_and_health_details(settings):
    locked = create_app(
        Settings(**{**settings.__dict__, "basic_auth_user": "ls", "basic_auth_password": "s3cr3t"})
    ).test_client()
    assert locked.get("/health").get_json() == {"status": "UP", "model_class": "crackal"}
    full = locked.get("/health", headers=basic("ls", "s3cr3t")).get_json()
    assert "jobs" in full and "model_version" in full
    assert "jobs" not in locked.get("/health", headers=basic("ls", "nope")).get_json()
    for path in ("/setup", "/predict", "/webhook", "/train"):
        assert locked.post(path, json={}).status_code == 401, path
        assert locked.post(path, json={}, headers=basic("ls", "nope")).status_code == 401, path
        assert locked.post(path, json={}, headers=basic("ls", "s3cr3t")).status_code != 401
    assert locked.post("/setup", json={}, headers=basic("ls", "s3cr3t")).status_code == 400


def test_no_authentication_is_refused_unless_insecure_on_purpose(settings):
    with pytest.raises(ValueError, match="BASIC_AUTH_USER and BASIC_AUTH_PASS"):
        create_app(Settings(**{**settings.__dict__, "insecure": False}))
    for env in ({"BASIC_AUTH_USER": "ls"}, {"BASIC_AUTH_PASS": "x"},
                {"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": ""}):  # fmt: skip
        with pytest.raises(ValueError, match="set both"):
            Settings.from_env(env)
    assert Settings.from_env({"CRACKAL_INSECURE": "1"}).insecure


def test_an_oversized_request_body_is_413(settings):
    small = create_app(Settings(**{**settings.__dict__, "max_request_bytes": 1000}))
    resp = small.test_client().post("/predict", json={"tasks": [], "pad": "x" * 2000})
    assert resp.status_code == 413


def test_no_model_yet_is_a_clear_503(settings, tmp_path):
    empty = create_app(Settings(**{**settings.__dict__, "registry": tmp_path})).test_client()
    resp = empty.post("/setup", json={"schema": CONFIG})
    assert resp.status_code == 503 and "train one" in resp.get_json()["error"]
    resp = empty.post("/predict", json={"tasks": [{"id": 1, "data": {}}], "label_config": CONFIG})
    assert resp.status_code == 503


def test_masks_are_the_thresholded_model_output(client, images, registry):
    """The brush mask equals the served model's probabilities above its threshold."""
    from selection.images import read_rgb
    from training.predict import predict_probs

    serving = client.application.config["crackal.service"].holder.current()
    loaded = serving.model  # the served engine: onnxruntime, or torch when it is off
    probs = predict_probs(loaded.model, read_rgb(images[0]), loaded.encoder, runner=serving.onnx)
    (pred,) = predict(client, [{"id": 1, "data": {"photo": data_url(images[0])}}])[0]
    r = pred["result"][0]
    mask = decode_rle(r["value"]["rle"]).reshape(320, 480, 4)[..., 3] > 0
    assert np.array_equal(mask, probs > loaded.threshold)


def test_a_webhook_storm_is_acknowledged_fast_with_one_job_per_project(client):
    queue = client.application.config["crackal.queue"]
    slowest, answers = 0.0, []
    for i in range(200):
        start = time.monotonic()
        resp = client.post(
            "/webhook",
            json={"action": "ANNOTATION_CREATED", "project": {"id": 21}, "annotation": {"id": i}},
        )
        slowest = max(slowest, time.monotonic() - start)
        assert resp.status_code == 200
        answers.append(resp.get_json()["status"])
        status = queue.status()
        pending = [k for k in status["queued"] if k.endswith(":21")]
        assert len(pending) <= 1 and len(status["follow_up"]) <= 1
    assert slowest < 1.0  # Label Studio gives a webhook 1 s
    assert answers.count("counted") >= 100  # two of every three events only count
    assert set(answers) <= {"counted", "queued", "already queued", "follow-up"}
    assert queue.runner.wait_idle(60)


def test_predict_scores_with_the_projects_stored_fit(settings, images, tmp_path):
    """With a stored fit for the project, /predict's score is 1 - the fit's scaling of the
    task's own features (its expected F once labels give a curve): no other task of the
    project is read (Label Studio is down)."""
    service = Service(settings)
    serving = service.holder.current()
    rows = serving.extractor([read_rgb(p) for p in images])
    fit, i_dist = DistanceFit.fit(serving.base_features, rows)
    middle = int(np.argsort(i_dist)[1])  # neither the nearest nor the farthest of the fit
    tasks = [{"id": 5, "data": {"photo": data_url(images[middle])}}]
    PoolStore(settings.registry, 41).save_fit(serving.version, fit)  # not this serving's key
    (pred,) = service.predict(tasks, CONFIG, project="41.123")[0]
    assert pred["score"] == 1.0  # unusable fit: the call is the pool (one task: scaled 0)
    PoolStore(settings.registry, 41).save_fit(serving.fit_key, fit)
    (pred,) = service.predict(tasks, CONFIG, project="41.123")[0]
    expected = 1 - fit.scaled_at_fit(i_dist)[middle]
    assert 0.0 < pred["score"] < 1.0
    assert pred["score"] == pytest.approx(expected, abs=1e-6)
    # once the project's labels give a curve of F against distance, the score is the
    # task's expected F read off it (blended by 1e-3 with 1 - distance for the order)
    log = EditLog(settings.registry, 41)
    label = np.zeros((20, 20), bool)
    label[5:15, 8:11] = True
    for i, shift in enumerate((0, 1, 2, 3)):
        predicted = np.roll(label, shift, axis=1)
        annotation = {"id": 70 + i, "updated_at": f"2026-11-27T11:0{i}"}
        prediction = {"id": 80 + i, "model_version": "crackal-v1"}
        log.append([make_record(90 + i, annotation, prediction, predicted, label, i / 3)])
    fs = [r.pixel_f for r in log.read()]
    assert fs == sorted(fs, reverse=True) and len(set(fs)) == 4  # falls with distance
    scaled = fit.scaled_at_fit(i_dist)[middle]
    on_curve = np.interp(scaled, [i / 3 for i in range(4)], fs)  # monotone: the points
    (pred,) = service.predict(tasks, CONFIG, project="41.123")[0]
    assert pred["score"] == pytest.approx(0.999 * on_curve + 0.001 * (1 - scaled), abs=1e-6)


def test_predict_under_the_default_order_gives_one_minus_the_distance(settings, images):
    """With kcenter (the default) the imported score is the queue place; /predict, which
    sees only its own tasks, gives 1 - the scaled distance, also where the project's labels
    give an expected-F curve (that score belongs to the farthest order)."""
    from dataclasses import replace

    service = Service(replace(settings, strategy=Strategy.KCENTER))
    serving = service.holder.current()
    rows = serving.extractor([read_rgb(p) for p in images])
    fit, i_dist = DistanceFit.fit(serving.base_features, rows)
    middle = int(np.argsort(i_dist)[1])
    PoolStore(settings.registry, 44).save_fit(serving.fit_key, fit)
    label = np.zeros((20, 20), bool)
    label[5:15, 8:11] = True
    EditLog(settings.registry, 44).append(
        [
            make_record(90 + i, {"id": 60 + i}, {"id": 50 + i}, np.roll(label, i, 1), label, i / 3)
            for i in range(4)
        ]
    )
    assert service.expected_f(44) is not None  # a curve exists, and is not used
    tasks = [{"id": 5, "data": {"photo": data_url(images[middle])}}]
    (pred,) = service.predict(tasks, CONFIG, project="44.1")[0]
    assert pred["score"] == pytest.approx(1 - fit.scaled_at_fit(i_dist)[middle], abs=1e-6)


def test_the_expected_f_curve_is_refitted_only_when_the_edit_log_changes(settings):
    service = Service(settings)
    log = EditLog(settings.registry, 43)
    label = np.zeros((20, 20), bool)
    label[5:15, 8:11] = True

    def record(i: int, shift: int):
        annotation = {"id": 170 + i, "updated_at": f"2026-11-27T12:0{i}"}
        predicted = np.roll(label, shift, axis=1)
        return make_record(190 + i, annotation, {"id": 180 + i}, predicted, label, i / 4)

    assert service.expected_f(43) is None  # no log yet
    log.append([record(i, i) for i in range(3)])
    first = service.expected_f(43)
    assert first is not None and service.expected_f(43) is first  # unchanged log: kept
    log.append([record(3, 0)])  # a perfect pre-annotation far away lifts the far end
    second = service.expected_f(43)
    assert second is not first and second(np.array([0.75]))[0] > first(np.array([0.75]))[0]
    with open(log.path, "a") as fh:
        fh.write('{"task": 1, "cut by a cra')  # a damaged line: skipped, the curve stays
    third = service.expected_f(43)
    assert third is not second and third(np.array([0.75]))[0] == second(np.array([0.75]))[0]


def test_hostile_task_urls_cost_only_their_own_task(client, images):
    tasks = [
        {"id": 1, "data": {"photo": "http://[x"}},
        {"id": 2, "data": {"photo": "/tmp/a\x00b.jpg"}},
        {"id": 3, "data": {"photo": data_url(images[0])}},
        {"id": 4, "data": None},
        {"id": 5, "data": {"photo": ["not", "a", "url"]}},
        {"id": 6, "data": {"photo": data_url(images[1])}},
    ]
    got = [bool(r) for r in predict(client, tasks, project=9)]
    assert got == [False, False, True, False, False, True]


def test_extra_params_of_the_project_override_label_and_order(client, images):
    """Label Studio's model "Extra params" arrive with /setup and hold for that project."""
    params = {"crack_label": "Background", "strategy": "band-kcenter", "band": [0.5, 1]}
    resp = client.post("/setup", json={"schema": CONFIG, "project": "51.1", "extra_params": params})
    assert resp.status_code == 200
    service = client.application.config["crackal.service"]
    s = service.project_settings(51)
    assert (s.crack_label, s.strategy.value, s.band) == ("Background", "band-kcenter", (0.5, 1.0))
    assert service.project_settings(52).crack_label == ""  # other projects keep the defaults
    tasks = [{"id": 1, "data": {"photo": data_url(images[0])}}]
    ((pred,),) = predict(client, tasks, project=51)
    assert pred["result"][0]["value"]["brushlabels"] == ["Background"]
    for bad, message in (
        ({"threshold": 0.3}, "unknown extra params"),
        ({"strategy": "uncertainty"}, "strategy must be one of"),
        ({"band": [0.9, 0.1]}, "band must be"),
        ({"crack_label": "Rust"}, "not a label"),
        ("text", "JSON object"),
    ):
        resp = client.post("/setup", json={"schema": CONFIG, "project": 51, "extra_params": bad})
        assert resp.status_code == 400 and message in resp.get_json()["error"], bad
    assert service.project_settings(51).crack_label == "Background"  # a refusal changes nothing
    client.post("/setup", json={"schema": CONFIG, "project": 51})  # the params were removed
    assert service.project_settings(51).crack_label == ""


def test_train_route_and_bad_project_ids(client):
    assert client.post("/train", json={}).status_code == 400
    for bad in ("abc", {"id": None}, True, [1]):
        for path, body in (
            ("/train", {"project": bad}),
            ("/webhook", {"action": "START_TRAINING", "project": bad}),
            ("/setup", {"schema": CONFIG, "project": bad}),
        ):
            resp = client.post(path, json=body)
            assert resp.status_code == 400 and "not a project id" in resp.get_json()["error"]
    resp = client.post("/train", json={"project": {"id": 77}})
    assert resp.get_json() == {"project": 77, "status": "queued"}


def test_a_cloud_uri_without_a_task_id_is_refused_alone(settings):
    from backend.image_source import ImageFetchError, fetch_image_bytes
    from backend.label_studio import LabelStudio

    with pytest.raises(ImageFetchError, match="needs the task id"):
        fetch_image_bytes("s3://bucket/a.jpg", settings, None, LabelStudio(settings), None)


def test_a_broken_options_file_falls_back_to_the_defaults(settings, tmp_path):
    from backend.project_options import load_options, options_path

    for content in ("{not json", '{"strategy": "nonsense"}', "[1, 2]", ""):
        path = options_path(tmp_path, 3)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        assert load_options(tmp_path, 3).applied(settings) == settings, content


def test_fewer_labels_than_the_threshold_train_once_labels_stop(settings):
    from dataclasses import replace

    quick = replace(settings, idle_delay=1.0, retrain_threshold=3)
    client = create_app(quick).test_client()
    queue = client.application.config["crackal.queue"]
    label = {"action": "ANNOTATION_CREATED", "project": {"id": 31}, "annotation": {"id": 1}}
    for _ in range(2):
        answer = client.post("/webhook", json=label).get_json()
        assert answer["status"] == "counted" and answer["train_when_idle_for"] == 1.0
    assert "idle:31" not in queue.status()["last"]
    assert "31" in queue.status()["train_when_idle"]
    deadline = time.monotonic() + 30
    while "idle:31" not in queue.status()["last"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the idle job starts (and fails: Label Studio is unreachable here)
    assert "idle:31" in queue.status()["last"]
    assert queue.status()["train_when_idle"] == {}


def test_a_projects_refitted_threshold_makes_its_masks_and_only_for_its_version(
    client, images, registry, settings
):
    from backend.project_threshold import save_threshold
    from training.predict import predict_probs

    serving = client.application.config["crackal.service"].holder.current()
    loaded = serving.model
    probs = predict_probs(loaded.model, read_rgb(images[1]), loaded.encoder, runner=serving.onnx)
    # far from the version's own threshold, and in the widest gap between the probabilities
    # near their 90th percentile, so a last-bit difference between two runs cannot cross it
    values = np.unique(probs)
    at = int(np.searchsorted(values, np.quantile(probs, 0.9)))
    near = values[max(at - 50, 0) : at + 51]
    gap = int(np.argmax(np.diff(near)))
    own = float((near[gap] + near[gap + 1]) / 2)
    save_threshold(settings.registry, 41, loaded.version, own, labels=5)
    save_threshold(settings.registry, 42, "v99", own, labels=5)  # fitted for another version
    task = {"id": 1, "data": {"photo": data_url(images[1])}}
    masks = {}
    for project in (41, 42):
        (pred,) = predict(client, [task], project=project)[0]
        rle = pred["result"][0]["value"]["rle"]
        masks[project] = decode_rle(rle).reshape((*probs.shape, 4))[..., 3] > 0
    assert np.array_equal(masks[41], probs > own)
    assert np.array_equal(masks[42], probs > loaded.threshold)


def test_the_project_threshold_is_refitted_only_where_a_threshold_means_something(
    client, crack_data, settings
):
    """Used only when some label shows a crack, the best threshold is inside (0, 1) and it
    wins leave-one-out; every decision on a version is recorded with its reason."""
    from backend.project_threshold import forget_threshold, load_threshold, project_threshold
    from backend.retrain import refit_threshold
    from training.data import Loaded, find_samples, load
    from training.predict import predict_probs
    from training.threshold_choice import moved_threshold

    service = client.application.config["crackal.service"]
    crack_free = load(find_samples(crack_data / "bsds500")[:3])
    assert not any(item.mask.any() for item in crack_free)
    assert refit_threshold(service, 43, crack_free) is None
    cracks = load(find_samples(crack_data / "cfd")[:3])
    everything = [Loaded(i.sample, i.image, np.ones_like(i.mask)) for i in cracks]
    kept = refit_threshold(service, 43, everything)  # best at 0: mark every pixel
    assert kept["threshold"] is None and kept["refit"] == 0.0 and "is 0" in kept["reason"]
    record = load_threshold(settings.registry, 43)
    assert record["threshold"] is None and record["version"] == kept["version"]
    assert project_threshold(settings.registry, 43, kept["version"]) is None
    # labels that agree with the model above a level far from the version's own: the refit
    # finds that level, and 3 labels move the served threshold 3/10 of the way to it
    model = service.holder.current().model
    probs = [predict_probs(model.model, item.image, model.encoder) for item in cracks]
    pixels = np.concatenate([p.ravel() for p in probs])
    odds = lambda x: np.log(x / (1 - x))  # noqa: E731
    level = max(
        (round(float(np.clip(np.quantile(pixels, q), 0.02, 0.98)), 2) for q in (0.5, 0.95)),
        key=lambda x: abs(odds(x) - odds(model.threshold)),
    )
    agreeing = [Loaded(i.sample, i.image, p > level) for i, p in zip(cracks, probs, strict=True)]
    fitted = refit_threshold(service, 43, agreeing)
    assert fitted is not None and fitted["labels"] == 3 and fitted["labels_ods"] > 0.99
    assert fitted["refit"] <= level  # the lowest threshold that reproduces them
    assert fitted["threshold"] == moved_threshold(fitted["refit"], model.threshold, 3)
    low, high = sorted((model.threshold, fitted["refit"]))
    assert low < fitted["threshold"] < high and "3/10 of the way" in fitted["reason"]
    assert fitted["leave_one_out_f"] > fitted["version_f"]
    assert project_threshold(settings.registry, 43, fitted["version"]) == fitted["threshold"]
    # the same version, labels no threshold above 0 fits: its own serves again
    assert refit_threshold(service, 43, everything)["threshold"] is None
    assert project_threshold(settings.registry, 43, fitted["version"]) is None
    # labels deleted below 3, or emptied: the threshold fitted before them does not stay
    for fewer, why in ((agreeing[:2], "fewer than 3"), (crack_free, "no label shows a crack")):
        assert refit_threshold(service, 43, agreeing)["threshold"] == fitted["threshold"]
        assert refit_threshold(service, 43, fewer) is None
        assert project_threshold(settings.registry, 43, fitted["version"]) is None
        assert why in load_threshold(settings.registry, 43)["reason"]
    # a threshold an earlier release saved (no rule, or session 14's unmoved refit) is not used
    path = settings.registry / "projects" / "project-43" / "threshold.json"
    for rule in ({}, {"rule": "leave-one-out"}):
        legacy = {"version": fitted["version"], "threshold": fitted["threshold"], "labels": 3}
        path.write_text(json.dumps({**legacy, **rule}))
        assert project_threshold(settings.registry, 43, fitted["version"]) is None
        shown = client.get("/health").get_json()["projects"]["43"]["threshold"]
        assert shown["threshold"] == fitted["threshold"] and shown["in_use"] is False
    # a fresh decision serves and says so; every label deleted, it stops serving
    refit_threshold(service, 43, agreeing)
    assert client.get("/health").get_json()["projects"]["43"]["threshold"]["in_use"] is True
    assert forget_threshold(settings.registry, 43, "no labels")
    shown = client.get("/health").get_json()["projects"]["43"]["threshold"]
    assert shown["in_use"] is False and shown["reason"] == "no labels"
    assert not forget_threshold(settings.registry, 43, "no labels")  # nothing left to forget


def test_a_retrain_refits_the_threshold_without_predicting_its_labels_again(
    client, crack_data, monkeypatch
):
    """The version a retrain promotes was evaluated on every label by the fit: the refit
    predicts none of them again. When the parent keeps serving, the labels it was not
    evaluated on are predicted."""
    import backend.retrain as retrain
    from training.data import find_samples, load
    from training.train import TrainConfig

    predicted: list[int] = []
    real = retrain.evaluate
    monkeypatch.setattr(
        retrain,
        "evaluate",
        lambda m, e, items, **k: predicted.append(len(items)) or real(m, e, items, **k),
    )
    service = client.application.config["crackal.service"]
    items = load(find_samples(crack_data / "cfd")[:4])
    config = TrainConfig.adapt(steps=1, batch_size=2, crop=64)
    outcome, threshold = retrain._adapt(
        service, 45, items[:3], items[3:], config, Promotion.ALWAYS, "t"
    )
    assert outcome.promoted and threshold["version"] == outcome.version and predicted == []
    outcome, threshold = retrain._adapt(
        service, 45, items[:3], items[3:], config, Promotion.NEVER, "t"
    )
    assert not outcome.promoted and threshold["version"] == outcome.meta["parent"]
    assert predicted == [4]


def test_the_refit_uses_counts_already_measured_for_the_serving_version(
    client, crack_data, settings
):
    """Counts a fit measured under the serving version are used as they are (here counts
    of masks that mark every pixel, handed in beside CFD's real masks: the refit follows
    the counts); counts of another version are not; images missing there are predicted."""
    from backend.retrain import refit_threshold
    from training.data import Loaded, find_samples, load
    from training.evaluate import evaluate

    service = client.application.config["crackal.service"]
    registry = service.holder.registry
    serving = registry.load(registry.resolve("current", 44))
    cracks = load(find_samples(crack_data / "cfd")[:3])
    everything = [Loaded(i.sample, i.image, np.ones_like(i.mask)) for i in cracks]
    measured = evaluate(serving.model, serving.encoder, everything).per_image()
    fresh = refit_threshold(service, 44, cracks)
    assert fresh["version"] == serving.version and fresh["labels_ods"] < 1.0
    assert refit_threshold(service, 44, cracks, {"v99": measured}) == fresh
    used = refit_threshold(service, 44, cracks, {serving.version: measured})
    assert used["labels_ods"] == 1.0 and used["refit"] == 0.0  # every pixel marked: F 1 at 0
    one_known = {serving.version: {cracks[0].sample.image: measured[cracks[0].sample.image]}}
    mixed = refit_threshold(service, 44, cracks, one_known)  # the other two predicted now
    assert mixed["labels"] == 3
    assert mixed["labels_ods"] not in (used["labels_ods"], fresh["labels_ods"])


def test_setup_queues_a_scoring_once_per_version_and_options(settings):
    """Label Studio calls /setup often: a project is scored once per model version and
    project options in this process. A scoring another process finished counts only when
    Label Studio confirms it is the same project (here it is unreachable: scored again)."""
    import fakeredis

    from backend.queues import RedisQueue, _keys

    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())  # not shared with other tests
    queue = RedisQueue(connection=redis)  # no worker: jobs stay queued
    client = create_app(settings, queue=queue).test_client()
    current = Registry(settings.registry).current(71)
    PoolStore(settings.registry, 72).save_scored((current, "{}", "2026-01-01"))
    PoolStore(settings.registry, 73).save_scored(("v0", "{}", "2026-01-01"))  # older version

    def setup(project: int, params: dict | None = None) -> None:
        body = {"schema": CONFIG, "project": project, "extra_params": params}
        assert client.post("/setup", json=body).status_code == 200

    def queued() -> list[str]:
        keys = [k for k in queue.status()["queued"] if k.startswith("rescore:")]
        for key in keys:  # as if a worker ran it
            redis.delete(*_keys(key))
        queue.queue.empty()
        return keys

    for project in (71, 72, 73):
        setup(project)
    assert queued() == ["rescore:71", "rescore:72", "rescore:73"]
    for project in (71, 72, 73):
        setup(project)  # the same version and options: nothing new
    assert queued() == []
    setup(71, {"strategy": "band"})  # other options: another order, so scored again
    assert queued() == ["rescore:71"]


def test_setup_scores_again_a_pool_whose_scoring_stopped_half_way(settings):
    """A scoring that stopped before its last page leaves a note: /setup queues a scoring
    again although this process remembers the version as scored, but not while a job of
    the project runs (that scoring leaves the same note until its end)."""
    import threading

    import fakeredis

    from backend.project_lock import project_lock
    from backend.queues import RedisQueue, _keys

    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    queue = RedisQueue(connection=redis)  # no worker: jobs stay queued
    client = create_app(settings, queue=queue).test_client()
    store = PoolStore(settings.registry, 75)

    def setup_queued() -> list[str]:
        body = {"schema": CONFIG, "project": 75}
        assert client.post("/setup", json=body).status_code == 200
        keys = [k for k in queue.status()["queued"] if k.startswith("rescore:")]
        for key in keys:
            redis.delete(*_keys(key))
        queue.queue.empty()
        return keys

    assert setup_queued() == ["rescore:75"]  # first seen: scored once
    assert setup_queued() == []  # remembered
    store.begin_pages()
    holding, release = threading.Event(), threading.Event()

    def running_job() -> None:
        with project_lock(settings.registry, 75):
            holding.set()
            release.wait(30)

    job = threading.Thread(target=running_job)
    job.start()
    try:
        assert holding.wait(10)
        assert setup_queued() == []  # a job of the project runs: its scoring is under way
    finally:
        release.set()
        job.join()
    assert setup_queued() == ["rescore:75"]  # stopped: scored again
    store.end_pages()
    assert setup_queued() == []


def test_the_scoring_key_is_of_the_options_a_scoring_uses(settings):
    """A project is scored again when the order it is served in changes, also when that
    comes from the backend's default (an upgrade, or a new CRACKAL_STRATEGY)."""
    from dataclasses import replace

    from backend.project_options import ProjectOptions

    other_default = replace(settings, strategy=Strategy.KCENTER, band=(0.5, 1.0))
    plain = ProjectOptions.parse({})
    assert plain.key(settings) != plain.key(other_default)
    assert json.loads(plain.key(other_default)) == {
        "crack_label": "", "strategy": "kcenter", "band": [0.5, 1.0]
    }  # fmt: skip
    own = ProjectOptions.parse({"strategy": "band", "band": [0.6, 0.9]})
    assert own.key(settings) == own.key(other_default)  # the project's own order holds


def test_the_label_threshold_queues_a_reconcile_and_arms_the_idle_deadline(settings):
    """At the threshold the webhook queues a `reconcile` job (it counts the changed labels
    again in Label Studio, so labels another job trains on are not trained twice), also
    beside a queued retrain, and arms the idle deadline (events on fewer labels than they
    count, e.g. one task edited thrice, still train once labelling pauses)."""
    from dataclasses import replace

    import fakeredis

    from backend.queues import RedisQueue

    queue = RedisQueue(connection=fakeredis.FakeRedis())  # no worker: jobs stay queued
    client = create_app(replace(settings, retrain_threshold=3), queue=queue).test_client()

    def label(project: int) -> str:
        body = {"action": "ANNOTATION_CREATED", "project": {"id": project}, "annotation": {}}
        return client.post("/webhook", json=body).get_json()["status"]

    assert [label(61) for _ in range(3)] == ["counted", "counted", "queued"]
    status = queue.status()
    assert [k for k in status["queued"] if k.endswith(":61")] == ["reconcile:61"]
    assert "61" in status["train_when_idle"] and status["label_changes"].get("61", 0) == 0
    assert client.post("/train", json={"project": 62}).get_json()["status"] == "queued"
    assert [label(62) for _ in range(3)] == ["counted", "counted", "queued"]
    assert [k for k in queue.status()["queued"] if k.endswith(":62")] == [
        "reconcile:62",
        "retrain:62",
    ]


def test_what_a_task_shows_is_read_from_one_crackal_prediction_or_none():
    """The scoring job keeps a prediction Label Studio already shows (same version, score
    and brush result) instead of importing it again; anything unusual is replaced, never a
    crash."""
    from backend.brush import rle_result
    from backend.label_config import parse_brush_target
    from backend.service import shown_key, shown_of

    target = parse_brush_target(CONFIG)
    result = rle_result([0, 1, 2, 250], (4, 5), target)
    ours = {"model_version": "crackal-v2", "score": 0.25, "result": [result]}
    other = {"model_version": "someone-else", "score": 0.9, "result": []}
    assert shown_of({"predictions": [ours, other]}) == shown_key("crackal-v2", 0.25, result)
    for changed in (
        rle_result([0, 1, 2, 251], (4, 5), target),  # another mask
        rle_result([0, 1, 2, 250], (5, 4), target),  # another image size
        {**result, "from_name": "cracks"},  # the config's control renamed
        {**result, "value": {**result["value"], "brushlabels": ["Fissure"]}},  # label renamed
    ):
        assert shown_key("crackal-v2", 0.25, changed) != shown_key("crackal-v2", 0.25, result)
    assert shown_key("crackal-v2", 0.25, result) != shown_key("crackal-v2", 0.2500001, result)
    assert shown_key("crackal-v2", 0.25, result) != shown_key("crackal-v3", 0.25, result)
    for bad in (
        {"predictions": [ours, ours]},  # two of ours: replace both
        {"predictions": [other]},
        {"predictions": None},
        {},
        {"predictions": [{**ours, "result": []}]},
        {"predictions": [{**ours, "result": [result, result]}]},
        {"predictions": [{**ours, "result": "text"}]},
        {"predictions": [{**ours, "score": "high"}]},
        {"predictions": [{**ours, "score": None}]},
        {"predictions": [{**ours, "result": [{**result, "value": {"rle": [300]}}]}]},
        {"predictions": [{**ours, "result": [{**result, "value": {"rle": "abc"}}]}]},
        {"predictions": [{**ours, "result": [{**result, "original_width": "wide"}]}]},
        {"predictions": [{**ours, "result": [{"value": None}]}]},
        {"predictions": ["not a dict", ours, ours]},
    ):
        assert shown_of(bad) is None, bad


def test_shard_settings_refuse_nonsense():
    assert Settings.from_env({"CRACKAL_SHARD_TASKS": "0"}).shard_tasks == 0  # never split
    for bad in ({"CRACKAL_SHARD_HELPERS": "-1"}, {"CRACKAL_SHARD_TASKS": "many"}):
        with pytest.raises(ValueError):
            Settings.from_env(bad)

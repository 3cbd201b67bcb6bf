"""train -> evaluate -> adapt on a handful of real images: files, metric ranges, registry."""

import csv
import json
import shutil
import time

import numpy as np
import pytest
import torch
from scipy import ndimage

from crackal.cli import build_parser, main
from crackal.train import config_from_args
from selection.images import DatasetError
from tests.conftest import TINY, cli
from training.data import Loaded, find_samples, load, random_crop
from training.evaluate import evaluate
from training.fit import Promotion, fit_version, validation_key
from training.losses import skeleton_recall_loss, tubed_skeletons
from training.model import DEFAULT_ENCODER, build_model
from training.registry import Registry
from training.train import StopReason, TrainConfig, TrainingStoppedError, lr_factor, train


@pytest.fixture(scope="module")
def registry(tiny_registry):
    return tiny_registry


def test_find_samples_pairs_masks_and_treats_maskless_sets_as_crack_free(crack_data, tmp_path):
    pairs = find_samples(crack_data / "cfd")
    assert len(pairs) == 118 and all(s.mask and s.mask.stem == s.image.stem for s in pairs)
    free = find_samples(crack_data / "bsds500")
    assert free[0].mask is None and free[0].set_name == "bsds500"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "a.jpg").symlink_to(pairs[0].image)
    with pytest.raises(DatasetError, match="no mask for 1 image"):
        find_samples(tmp_path)


def test_random_crops_keep_image_and_mask_aligned(crack_data):
    item = load(find_samples(crack_data / "crack500")[:1])[0]
    # An image whose red channel is the mask: every augmentation must move both together.
    image = item.image.copy()
    image[..., 0] = item.mask * 255
    rng = np.random.default_rng(0)
    for size in (64, 300):  # 300 is larger than the image: reflect padding
        for _ in range(20):
            img, msk = random_crop(Loaded(item.sample, image, item.mask), size, rng)
            assert img.shape == (size, size, 3) and msk.shape == (size, size)
            assert np.array_equal(img[..., 0] > 0.5, msk > 0.5)


def test_crops_on_a_crack_cover_one_wherever_the_photo_has_one(crack_data):
    # A 1920 x 1080 road photo whose cracks cover about 1% of it: a plain random crop
    # often misses them, a crop asked to sit on a crack never does.
    item = load(find_samples(crack_data / "large")[:1])[0]
    assert 0 < item.mask.mean() < 0.05
    rng = np.random.default_rng(0)
    plain = [random_crop(item, 64, rng)[1].any() for _ in range(200)]
    on_crack = [random_crop(item, 64, rng, on_crack=True)[1].any() for _ in range(200)]
    assert all(on_crack) and sum(plain) < 150
    empty = Loaded(item.sample, item.image, np.zeros_like(item.mask))
    img, msk = random_crop(empty, 64, rng, on_crack=True)  # no crack: a random crop
    assert img.shape == (64, 64, 3) and not msk.any()


def test_a_cracks_skeleton_tube_weighs_it_by_length_not_width(crack_data):
    # Crack500's wide cracks: the tube around the centre line is a small part of the mask;
    # CFD's thin ones: most of it. Both tubes lie inside their masks and follow every crack.
    shares = {}
    for name in ("crack500", "cfd"):
        crack_pixels = tube_pixels = 0.0
        for item in load(find_samples(crack_data / name)[:6]):  # sizes differ in crack500
            mask = torch.from_numpy(item.mask)[None, None]
            tube = tubed_skeletons(mask)
            assert tube.shape == mask.shape and tube.dtype == torch.float32
            assert not ((tube > 0) & (mask <= 0.5)).any()
            labels, n = ndimage.label(item.mask > 0.5, structure=np.ones((3, 3)))
            big = [k for k in range(1, n + 1) if (labels == k).sum() >= 20]
            assert all(tube[0, 0].numpy()[labels == k].any() for k in big)
            crack_pixels, tube_pixels = crack_pixels + mask.sum(), tube_pixels + tube.sum()
        shares[name] = float(tube_pixels / crack_pixels)
    assert shares["crack500"] < 0.5 < shares["cfd"]
    assert not tubed_skeletons(torch.zeros(2, 1, 32, 32)).any()


def test_skeleton_recall_loss_is_the_missed_share_of_the_skeleton():
    skeleton = torch.zeros(1, 1, 8, 8)
    skeleton[0, 0, 2, 1:7] = 1
    sure, none = torch.full_like(skeleton, 20.0), torch.full_like(skeleton, -20.0)
    half = none.clone()
    half[0, 0, 2, 1:4] = 20.0  # half the centre line found
    assert skeleton_recall_loss(sure, skeleton) == pytest.approx(0.0, abs=1e-6)
    assert skeleton_recall_loss(none, skeleton) == pytest.approx(1.0, abs=1e-6)
    assert skeleton_recall_loss(half, skeleton) == pytest.approx(0.5, abs=1e-6)
    logits = torch.zeros(1, 1, 8, 8, requires_grad=True)
    empty = skeleton_recall_loss(logits, torch.zeros_like(skeleton))  # no crack in the batch
    empty.backward()
    assert empty.item() == 0 and not logits.grad.any()
    low = torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16, requires_grad=True)  # autocast's
    loss = skeleton_recall_loss(low, skeleton)
    loss.backward()
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(0.5)
    assert (low.grad[skeleton > 0] < 0).all() and not low.grad[skeleton == 0].any()


def test_the_skeleton_term_changes_what_training_learns(crack_data):
    items = load(find_samples(crack_data / "cfd")[:2])
    model = build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    states = []
    for weight in (0.0, 0.0, 1.0):  # the same start, crops and seed; only the loss differs
        model.load_state_dict(start)
        # an hours-long budget: the schedule reads the clock, which must not differ the runs
        config = TrainConfig(
            steps=3, batch_size=2, crop=64, warmup_steps=1, skeleton_recall=weight, max_minutes=1e6
        )
        states.append(train(model, DEFAULT_ENCODER, items, [], config, progress=False).state_dict)

    def gap(a: dict, b: dict) -> float:
        return max((a[k].float() - b[k].float()).abs().max().item() for k in start)

    assert gap(states[0], states[2]) > 100 * gap(states[0], states[1]) + 1e-6


def test_training_fits_the_images_it_sees(crack_data):
    items = load(find_samples(crack_data / "deepcrack" / "train")[:4])
    model = build_model()
    before = evaluate(model, DEFAULT_ENCODER, items).scores.ods
    result = train(
        model,
        DEFAULT_ENCODER,
        items,
        items,
        TrainConfig(steps=40, batch_size=4, crop=96, eval_every=20, warmup_steps=5),
        progress=False,
    )
    assert result.val_ods > before + 0.1
    assert result.steps == 40 and len(result.history) == 2 and 0 <= result.threshold < 1


def test_a_stop_callback_gives_a_run_up_between_steps(crack_data):
    items = load(find_samples(crack_data / "deepcrack" / "train")[:2])
    config = TrainConfig(steps=3, batch_size=2, crop=64, eval_every=3, warmup_steps=1)
    asked = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return True

    with pytest.raises(TrainingStoppedError, match="step 1 of 3"):  # asked before any step
        train(build_model(), DEFAULT_ENCODER, items, (), config, progress=False, stop=stop)
    assert len(asked) == 1
    result = train(
        build_model(), DEFAULT_ENCODER, items, (), config, progress=False, stop=lambda: False
    )
    assert result.steps == 3 and result.stopped is StopReason.STEPS


def test_a_run_ends_by_its_patience_or_its_clock_and_says_which(crack_data):
    items = load(find_samples(crack_data / "deepcrack" / "train")[:2])
    # a crack-free validation image scores F 1 wherever no pixel is marked, so a model kept
    # near its start (tiny rates) never betters its first evaluation
    crack_free = load(find_samples(crack_data / "bsds500")[:1])
    still = dict(lr_decoder=1e-9, lr_encoder=1e-9, batch_size=2, crop=64, warmup_steps=1)
    config = TrainConfig(steps=50, eval_every=1, patience=2, **still)
    result = train(build_model(), DEFAULT_ENCODER, items, crack_free, config, progress=False)
    assert result.val_ods == 1.0 and [h["val_ods"] for h in result.history] == [1.0] * 3
    assert result.stopped is StopReason.PATIENCE and result.steps == 3  # 2 evaluations, no gain
    clock = TrainConfig(steps=1000, max_minutes=1e-4, **still)  # 6 ms: less than one step
    result = train(build_model(), DEFAULT_ENCODER, items, (), clock, progress=False)
    assert result.stopped is StopReason.TIME and result.steps == 1


def test_train_command_passes_patience_and_refuses_an_unknown_promotion(tmp_path, capsys):
    args = build_parser().parse_args(
        ["train", "--train", "x", "--registry", "r", "--patience", "7", "--promote", "never"]
    )
    assert config_from_args(args, adapting=False).patience == 7
    assert args.promote is Promotion.NEVER
    with pytest.raises(SystemExit):
        main(["train", "--train", "x", "--registry", str(tmp_path / "r"), "--promote", "maybe"])
    assert "promote must be always, if-better or never, got 'maybe'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="promote must be"):  # before any training
        fit_version(Registry(tmp_path / "r"), [], promote="sometimes")
    assert Registry(tmp_path / "r").current() is None  # nothing registered


def test_a_frozen_encoder_keeps_every_tensor_and_the_decoder_still_learns(crack_data):
    items = load(find_samples(crack_data / "deepcrack" / "train")[:4])
    model = build_model()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    before = evaluate(model, DEFAULT_ENCODER, items).scores.ods
    config = TrainConfig(steps=30, batch_size=4, crop=96, eval_every=30, warmup_steps=5,
                         freeze_encoder=True)  # fmt: skip
    result = train(model, DEFAULT_ENCODER, items, items, config, progress=False)
    after = model.encoder.state_dict()  # BatchNorm running statistics included
    assert all(torch.equal(after[k], v) for k, v in encoder_before.items())
    assert any(not torch.equal(model.decoder.state_dict()[k], v) for k, v in decoder_before.items())
    assert result.val_ods > before + 0.05
    assert all(p.requires_grad for p in model.parameters())  # trainable again afterwards
    kept_off = next(model.encoder.parameters())
    kept_off.requires_grad_(False)  # frozen by the caller: stays so

    def stop(*_):
        raise RuntimeError("stopped at the first checkpoint")

    with pytest.raises(RuntimeError, match="first checkpoint"):
        train(model, DEFAULT_ENCODER, items, items[:1], config, on_checkpoint=stop, progress=False)
    flags = [p.requires_grad for p in model.encoder.parameters()]
    assert not flags[0] and all(flags[1:])  # the caller's flags again, also after an error


def test_the_adaptation_preset_trains_the_decoder_only_at_half_the_base_rate():
    adapt, base = TrainConfig.adapt(), TrainConfig.base()
    assert adapt.freeze_encoder and not base.freeze_encoder
    assert adapt.lr_decoder == base.lr_decoder / 2 and adapt.steps == 60
    assert adapt.skeleton_recall == 1.0 and base.skeleton_recall == 1.0


def test_learning_rate_anneals_over_whichever_budget_ends_first():
    config = TrainConfig(steps=1010, warmup_steps=10)
    assert lr_factor(0, config) == pytest.approx(0.1)  # warm-up: 1/10
    assert lr_factor(510, config) == pytest.approx(0.525)  # half the steps: half-way down
    # a slow machine: 10% of the steps done, but all the time spent -> fully annealed
    assert lr_factor(110, config, time_used=1.0) == pytest.approx(0.05)
    assert lr_factor(110, config, time_used=0.5) == pytest.approx(0.525)
    # the steps ahead of the clock: the steps decide
    assert lr_factor(1010, config, time_used=0.1) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("crop", 100),
        ("batch_size", 0),
        ("max_minutes", 0.0),
        ("crack_crops", 1.5),
        ("crack_crops", float("nan")),
        ("lr_encoder", -1e-3),
        ("skeleton_recall", -1.0),
        ("skeleton_recall", float("nan")),
        ("skeleton_recall", 11.0),
        ("skeleton_recall", float("inf")),
        ("patience", 0),
    ],
)
def test_training_settings_no_run_can_use_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--crop", "100", "crop must be a multiple of 32"),
        ("--skeleton-recall", "-1", "skeleton_recall must be within [0, 10]"),
        ("--skeleton-recall", "nan", "skeleton_recall must be within [0, 10]"),
        ("--patience", "0", "patience must be at least 1"),
    ],
)
def test_train_command_refuses_bad_settings_before_loading_images(
    tmp_path, capsys, flag, value, message
):
    missing = tmp_path / "no-such-set"  # would fail on loading, after the check
    code = main(["train", "--train", str(missing), "--registry", str(tmp_path / "r"), flag, value])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_registers_a_current_version_with_metadata(registry, sets):
    assert registry.current() == "v1"
    meta = registry.meta()
    assert meta["parent"] is None and meta["encoder"] == DEFAULT_ENCODER
    assert len(meta["training"]["images"]) == 8
    assert all(len(r["sha256"]) == 64 for r in meta["training"]["images"])
    val = meta["metrics"]["val"]
    assert 0 <= val["ods"] <= 1 and 0 <= val["ois"] <= 1 and 0 <= val["ap"] <= 1
    assert val["images"] == 4 and 0 <= meta["threshold"] < 1


def test_fine_tune_from_a_version_and_roll_back(registry, sets, capsys):
    args = ["train", "--train", sets["train"], "--registry", registry.root, *TINY]
    assert cli(*args, "--from", "v1") == 0
    assert registry.current() == "v2" and registry.meta("v2")["parent"] == "v1"
    assert cli("models", "--registry", registry.root, "rollback") == 0
    assert registry.current() == "v1"
    assert "* v1" in capsys.readouterr().out
    assert cli(*args, "--from", "v7") == 2


def test_evaluate_writes_metrics_per_image_scores_and_overlays(registry, sets, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--registry", registry.root, "--data", sets["cfd"], "--data",
            sets["crack500"], "--out", out, "--worst", "2"]  # fmt: skip
    assert cli(*args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["version"] == "v1"
    for name in ("cfd", "crack500"):
        s = metrics["sets"][name]
        assert 0 <= s["ods"] <= 1 and s["images"] == 6 and "ods_tolerance_2px" in s
        assert s["ods_tolerance_2px"] >= s["ods"] - 1e-9
        assert (out / f"worst_{name}.png").stat().st_size > 0
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert len(rows) == 12 and all(0 <= float(r["f_at_ods"]) <= 1 for r in rows)


def test_score_with_the_model_encoder_as_extractor(registry, sets, tmp_path):
    out = tmp_path / "score"
    args = ["score", "--train", str(sets["train"]), "--pool", str(sets["cfd"]), "--out", str(out),
            "--extractor", "model:current"]  # fmt: skip
    assert main(args) == 2  # model features need a registry
    extra = ["--registry", str(registry.root), "--size", "224", "--no-cache", "--save-features"]
    assert main(args + extra) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extractor"] == "model:v1"
    assert np.load(out / "features" / "cfd.npz")["features"].shape == (6, 512)


def test_adapt_experiment_end_to_end(registry, sets, tmp_path):
    out = tmp_path / "adapt"
    args = ["adapt", "--registry", registry.root, "--train", sets["train"], "--val", sets["val"],
            "--secondary", sets["crack500"], "--secondary", sets["cfd"], "--q", 1, 2,
            "--strategy", "band", "random", "--steps", 2, "--test-per-set", 2,
            "--out", out]  # fmt: skip
    assert cli(*args) == 0
    for name in (
        "ods.csv",
        "per_image.csv",
        "parts.csv",
        "fig7_ods.png",
        "parts.png",
        "f_vs_distance_band_seed0.png",
        "f_vs_distance_random_seed0.png",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean_ods_over_sets"]["band/seed0"]) == {"M", "M1", "M2"}
    m_q = [v for v in registry.versions() if "adapt experiment" in registry.meta(v)["note"]]
    parent = {v: registry.meta(registry.meta(v)["parent"]) for v in m_q}  # M
    assert len(m_q) == 4 and all(  # every layer retrained, as the paper's M_q
        registry.meta(v)["encoder_sha256"] != parent[v]["encoder_sha256"] for v in m_q
    )
    configs = [registry.meta(v)["training"]["config"] for v in m_q]
    assert all(c["lr_decoder"] == 3e-4 and c["skeleton_recall"] == 0 for c in configs)
    runs = {(r["strategy"], r["q"]): r for r in summary["chosen"]}
    assert len(runs) == 4
    # Nested choices; one test part per set, shared by every model, never chosen.
    band1, band2 = runs[("band", 1)]["images"], runs[("band", 2)]["images"]
    assert all(set(band1[s]) <= set(band2[s]) and len(band2[s]) == 2 for s in band2)
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    test = summary["test"]
    assert set(test) == {"crack500", "cfd"} and all(len(v) >= 2 for v in test.values())
    for (strategy, _), run in runs.items():
        for set_name, chosen in run["images"].items():
            for model in ("M", "M1", "M2"):
                evaluated = {
                    r["image"]
                    for r in rows
                    if (r["strategy"], r["set"], r["model"]) == (strategy, set_name, model)
                }
                assert evaluated == set(test[set_name]) and not evaluated & set(chosen)
    # The first band pick of every set lies in the band of the base model's distances.
    distances = {
        (r["set"], r["image"]): r
        for r in csv.DictReader((out / "distances.csv").read_text().splitlines())
    }
    assert len(distances) == 12
    for set_name, (first,) in band1.items():
        candidates = [
            d for (n, img), d in distances.items() if n == set_name and img not in test[n]
        ]
        if any(d["in_band"] == "1" for d in candidates):
            assert distances[(set_name, first)]["in_band"] == "1"
        else:  # no candidate in the band: the farthest candidate comes first
            farthest = max(candidates, key=lambda d: float(d["i_dist"]))
            assert first == farthest["image"]
    # Adapted versions are registered from M but never made current by the experiment.
    assert registry.current() == "v1"
    assert {registry.meta(r["version"])["parent"] for r in summary["chosen"]} == {"v1"}


def test_a_parents_validation_ods_is_measured_again_only_for_another_set(registry, sets, tmp_path):
    shutil.copytree(registry.root, tmp_path / "reg")
    copy = Registry(tmp_path / "reg")
    meta_file = copy.versions_dir / "v1" / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["training"]["validation_key"]  # what the registered ODS was measured on
    train_items, val = load(find_samples(sets["train"])), load(find_samples(sets["val"]))
    config = TrainConfig.adapt(steps=2, batch_size=2, crop=64)

    def judged_against(val_items, stored):
        meta_file.write_text(json.dumps(stored))
        outcome = fit_version(copy, train_items, val_items, parent="v1", config=config,
                              promote="if-better", progress=False, guard=1.0)  # fmt: skip
        return outcome.reason

    marked = copy_meta(meta, ods=0.123)  # a stored figure no model here would reach
    assert "vs its 0.1230" in judged_against(val, marked)  # the same set: as registered
    assert "vs its 0.1230" not in judged_against(val[:-1], marked)  # another: measured again
    for hostile in (copy_meta(meta, ods=float("nan")), copy_meta(meta, ods=True),
                    copy_meta(meta, ods=7.0), {**meta, "training": "x"}):  # fmt: skip
        assert "vs its 0." in judged_against(val, hostile)  # measured again, not trusted


def test_a_validation_key_names_the_pixels_and_the_device(crack_data):
    items = load(find_samples(crack_data / "deepcrack" / "val")[:3])
    key = validation_key(items, "cpu")
    assert key == validation_key(items, "cpu") and validation_key([], "cpu") is None
    assert key != validation_key(items, "cuda") and key != validation_key(items[:2], "cpu")
    items[0].mask[0, 0] = not items[0].mask[0, 0]  # one pixel of one mask
    assert key != validation_key(items, "cpu")


def copy_meta(meta: dict, ods: object) -> dict:
    return {**meta, "metrics": {**meta["metrics"], "val": {**meta["metrics"]["val"], "ods": ods}}}

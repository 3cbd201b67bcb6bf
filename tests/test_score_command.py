"""`crackal score` end to end on real crack sets (small spread subsets of ../shared/data)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from crackal.cli import main

POOLS = ("crack500", "gaps384", "cfd", "bsds500")


@pytest.fixture(scope="module")
def run(real_subset, tmp_path_factory):
    """One full scoring run: train 40 DeepCrack images, 20 images from each pool."""
    out = tmp_path_factory.mktemp("report")
    cache = tmp_path_factory.mktemp("cache")
    train = real_subset("deepcrack/train", 40)
    args = [
        "score",
        "--train",
        str(train),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--save-features",
    ]
    for name in POOLS:
        args += ["--pool", f"{name}={real_subset(name, 20)}"]
    assert main(args) == 0
    return {"out": out, "cache": cache, "args": args}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_writes_every_artifact(run):
    out = run["out"]
    for name in ("scores.csv", "summary.json", "violin.png", "sorted_distance.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("train", *POOLS):
        assert (out / "features" / f"{name}.npz").exists()


def test_csv_rows_ranks_and_band(run):
    rows = read_csv(run["out"] / "scores.csv")
    assert list(rows[0]) == ["set", "image", "i_dist", "scaled", "rank", "in_band"]
    assert len(rows) == 20 * len(POOLS)
    for name in POOLS:
        mine = [r for r in rows if r["set"] == name]
        assert sorted(int(r["rank"]) for r in mine) == list(range(1, 21))
        farthest = max(mine, key=lambda r: float(r["i_dist"]))
        assert farthest["rank"] == "1" and float(farthest["scaled"]) == 1.0
        for r in mine:
            assert 0.0 <= float(r["scaled"]) <= 1.0
            assert r["in_band"] == str(int(float(r["scaled"]) >= 0.6))


def test_csv_equals_recomputation_from_saved_features(run):
    out = run["out"]
    rows = read_csv(out / "scores.csv")
    train = np.load(out / "features" / "train.npz")
    assert train["features"].shape == (40, 512)
    for name in POOLS:
        pool = np.load(out / "features" / f"{name}.npz")
        x = np.vstack([train["features"], pool["features"]]).astype(np.float64)
        y = PCA(n_components=25, svd_solver="full").fit_transform(x)
        expected = cdist(y[40:], y[:40]).sum(axis=1)
        mine = {r["image"]: float(r["i_dist"]) for r in rows if r["set"] == name}
        got = np.array([mine[n] for n in pool["names"]])
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_non_crack_photos_are_the_farthest_set(run):
    summary = json.loads((run["out"] / "summary.json").read_text())
    sets = summary["sets"]
    assert max(sets, key=lambda name: sets[name]["o_dist"]) == "bsds500"
    assert sum(s["o_dist_scaled"] for s in sets.values()) == pytest.approx(1.0)
    assert summary["train_size"] == 40 and summary["extractor"] == "imagenet"
    rows = read_csv(run["out"] / "scores.csv")
    for name, s in sets.items():
        assert s["n"] == 20 and s["components"] == 25 and 0 < s["explained_variance"] <= 1
        mean = np.mean([float(r["i_dist"]) for r in rows if r["set"] == name])
        assert s["o_dist"] == pytest.approx(mean)


def test_second_run_reuses_the_cache(run, tmp_path):
    entries = sorted(p.stat().st_mtime_ns for p in run["cache"].rglob("*.npy"))
    assert len(entries) == 40 + 20 * len(POOLS)
    args = list(run["args"])
    args[args.index("--out") + 1] = str(tmp_path)
    assert main(args) == 0
    assert sorted(p.stat().st_mtime_ns for p in run["cache"].rglob("*.npy")) == entries
    assert (tmp_path / "scores.csv").read_text() == (run["out"] / "scores.csv").read_text()


def test_unreadable_file_is_skipped_listed_and_fails_the_run(run, real_subset, tmp_path, capsys):
    pool = real_subset("cfd", 5)
    (pool / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    train = run["args"][run["args"].index("--train") + 1]
    code = main(
        [
            "score",
            "--train",
            train,
            "--pool",
            str(pool),
            "--out",
            str(tmp_path),
            "--cache",
            str(run["cache"]),
        ]
    )
    assert code == 1
    assert "zz-broken.png" in capsys.readouterr().err
    rows = read_csv(tmp_path / "scores.csv")
    assert len(rows) == 5
    skipped = json.loads((tmp_path / "summary.json").read_text())["skipped"]
    assert [s["file"].endswith("zz-broken.png") for s in skipped] == [True]


@pytest.mark.parametrize("problem", ["missing", "empty", "duplicate"])
def test_bad_folders_are_one_line_errors(problem, real_subset, tmp_path, capsys):
    good = str(real_subset("cfd", 3))
    pools = {
        "missing": [str(tmp_path / "nope")],
        "empty": [str(tmp_path)],
        "duplicate": [f"a={good}", f"a={good}"],
    }[problem]
    args = ["score", "--train", good, "--out", str(tmp_path / "out")]
    for p in pools:
        args += ["--pool", p]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crackal score: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "crackal", "score", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--pool" in result.stdout and "--save-features" in result.stdout

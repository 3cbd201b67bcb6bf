"""A tiny simulated labelling campaign on real images: paired seeds, one test split grouped
by photo, resumable, and a summary that reproduces from its CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selection.strategies import RoundState, Strategy, choose, k_center_greedy
from tests.conftest import cli
from training.campaign import read_runs
from training.data import Sample


def test_a_tiny_campaign_resumes_and_its_summary_reproduces(
    tiny_registry, sets, real_subset, tmp_path, capsys
):
    out = tmp_path / "sim"
    plain = real_subset("bsds500", 4)
    args = [
        "simulate", "--registry", tiny_registry.root, "--train", sets["train"],
        "--pool", sets["crack500"], "--pool", sets["cfd"], "--pool", plain,
        "--out", out, "--seeds", "2", "--budgets", "0", "2", "--steps", "2",
        "--test-per-set", "2",
    ]  # fmt: skip
    assert cli(*args) == 0
    rows = read_runs(out / "runs.csv")
    strategies = {s.value for s in Strategy}
    assert {r["strategy"] for r in rows} == strategies
    # per strategy, seed and budget: crack500, cfd and the pooled score (bsds500 is pooled)
    assert len(rows) == len(strategies) * 2 * 2 * 3
    base = {(r["seed"], r["set"], r["ods"]) for r in rows if r["budget"] == "0"}
    assert len(base) == 2 * 3  # budget 0 is the same model M for every strategy
    split = json.loads((out / "split.json").read_text())["test"]
    picks = [json.loads(line) for line in (out / "picks.jsonl").read_text().splitlines()]
    for pick in picks:
        assert len(pick["images"]) == 2
        for name in pick["images"]:
            set_name, image = name.split("/")
            stem_photo = image.rsplit(".", 1)[0].rsplit("-", 1)[0]
            assert all(not t.startswith(stem_photo) for t in split.get(set_name, []))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and (out / "learning_curves.png").stat().st_size > 5000
    first = (out / "runs.csv").read_text()
    assert cli(*args) == 0  # resumed: every trajectory is done, nothing is re-run
    assert (out / "runs.csv").read_text() == first
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert cli("simulate", "--out", out, "--summarise-only") == 0  # needs nothing else
    assert json.loads((out / "summary.json").read_text()) == summary
    printed = capsys.readouterr().out
    for name in ("crack500", "cfd", "pooled"):
        assert f"{name}: difference against random" in printed
    head_to_head = printed.index("AULC head to head")
    pooled = printed[printed.index("pooled: mean ODS") : head_to_head].splitlines()
    for strategy in strategies - {"random"}:  # a mean row, then a row of differences
        assert sum(line.split()[:1] == [strategy] for line in pooled) == 2
    # every pair of the other strategies, per set: the difference of their AULCs
    others = sorted(strategies - {"random"})
    area = {(a["strategy"], a["set"]): a["aulc"] for a in summary["aulc"]}
    pairs = summary["aulc_pairs"]
    assert len(pairs) == 3 * len(others) * (len(others) - 1) // 2
    for d in pairs:
        assert d["a"] < d["b"] and d["a"] != "random" != d["b"]
        assert d["mean_diff"] == pytest.approx(area[(d["a"], d["set"])] - area[(d["b"], d["set"])])
    assert printed[head_to_head:].count(f"{others[0]} - {others[1]}") == 1
    for bad in ("2", "-0.1", "nan", "half"):  # a share outside [0, 1] is refused alone
        with pytest.raises(SystemExit) as refused:
            cli(*args, "--crack-crops", bad)
        assert refused.value.code == 2 and "--crack-crops" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == first  # nothing ran
    for other in (["--steps", "3"], ["--crack-crops", "0.5"]):  # would mix unlike runs
        assert cli(*args, *other) == 2
        assert f"holds runs with {other[0]}" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == first
    with pytest.raises(SystemExit) as refused:  # a campaign needs its registry, P and pool
        cli("simulate", "--out", tmp_path / "other")
    assert refused.value.code == 2 and "--registry, --train, --pool" in capsys.readouterr().err


def test_strategies_pick_what_they_promise():
    rng = np.random.default_rng(0)
    primary = rng.normal(size=(20, 6))
    far = rng.normal(size=(5, 6)) + 8.0  # a far cluster
    near = rng.normal(size=(30, 6))
    pool = np.vstack([near, far])
    state = RoundState(primary, pool, np.random.default_rng(1), components=5)
    assert set(choose(Strategy.FARTHEST, state, 5)) == set(range(30, 35))
    coreset = k_center_greedy(pool, primary, 2)
    assert coreset[0] in range(30, 35)
    assert (
        coreset[1] not in range(30, 35) or np.linalg.norm(pool[coreset[0]] - pool[coreset[1]]) > 1
    )
    picks = choose(Strategy.BAND_KCENTER, state, 3)
    assert len(set(picks)) == 3 and picks[0] in range(30, 35)
    state.uncertainty = lambda: np.arange(len(pool))[::-1].astype(float)
    assert choose(Strategy.UNCERTAINTY, state, 2) == [0, 1]
    assert len(set(choose(Strategy.RANDOM, state, 35))) == 35


def test_the_test_split_keeps_every_photo_on_one_side(crack_data):
    from training.campaign import grouped_split, photo_of
    from training.data import find_samples

    samples: list[Sample] = find_samples(crack_data / "crack500")
    test, pool = grouped_split(samples, 30, seed=0)
    assert len(test) >= 30 and len(test) + len(pool) == len(samples)
    assert not {photo_of(s) for s in test} & {photo_of(s) for s in pool}

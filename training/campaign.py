"""A simulated labelling campaign: does labelling by one strategy give a better model per
label than another?

- Sets: labelled secondary sets (crack500, gaps384, cfd, ...) and crack-free ones (bsds500).
  Each set is split once into a test part and a pool part, **grouped by original photo**
  (`<original>-<k>` crops of one photo fall on one side); the split is shared by every
  strategy and seed (`split.json`).
- Base model M (trained on P). Features for selection are M's encoder features, computed
  once; distance strategies refit PCA on P u labelled u pool every round.
- A trajectory (strategy, seed): rounds up to each budget; a round picks the next images
  (`selection.strategies`), their ground truth becomes the annotation, and a model is
  fine-tuned **from M** on P plus every label so far for a fixed number of steps (no wall
  clock, no early stop) and evaluated on the test parts. Budget 0 is M itself.
- Pairing: a seed fixes the training randomness (identical for every strategy) and each
  strategy's own draws (random, band).
- Resumable: a trajectory's rows go to `runs.csv` when it ends; on restart finished
  trajectories are skipped and an unfinished one starts again. Each row names its base
  model (weights hash): a finished seed is kept; an unfinished seed whose rows came from
  another M is restarted on the current one, so every seed's pairs share one M. A resume
  with another test split is refused.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selection.atomic import atomic_write
from selection.embed import embed_paths
from selection.extractors import FeatureExtractor
from selection.strategies import RoundState, Strategy, choose, mean_entropy
from training.data import Loaded, Sample
from training.evaluate import evaluate
from training.metrics import Counts, scores
from training.predict import predict_probs
from training.registry import LoadedModel
from training.train import TrainConfig, train

RUN_COLUMNS = (
    "base",
    "strategy",
    "seed",
    "budget",
    "set",
    "ods",
    "threshold",
    "labels_per_set",
    "steps",
    "seconds",
)
POOLED = "pooled"
# `<photo>-<k>` crops; GAPs384 names also carry the crop's offset: `<photo>_<y>_<x>-<k>`
_CROP = re.compile(r"^(?P<photo>.+?)(?:_\d+_\d+)?-\d+$")


def photo_of(sample: Sample) -> str:
    """The original photo a crop was cut from (`<photo>-<k>`, `<photo>_<y>_<x>-<k>`), else
    the image itself."""
    match = _CROP.match(sample.image.stem)
    return f"{sample.set_name}/{match['photo'] if match else sample.image.stem}"


def grouped_split(
    samples: Sequence[Sample], test_images: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(test, pool): whole photos drawn at random until the test part holds at least
    `test_images` images; no photo has crops on both sides."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(photo_of(s), []).append(s)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    test: list[Sample] = []
    chosen = set()
    for i in order:
        if len(test) >= test_images:
            break
        test.extend(groups[names[i]])
        chosen.add(names[i])
    pool = [s for s in samples if photo_of(s) not in chosen]
    if not pool:
        raise ValueError(f"set {samples[0].set_name!r}: no pool left after the test split")
    return test, pool


@dataclass
class CampaignSpec:
    strategies: Sequence[Strategy]
    seeds: Sequence[int]
    budgets: Sequence[int]  # label counts, ascending; 0 = the base model
    steps: int = 40  # fine-tuning steps per round
    added_fraction: float = 0.25  # share of each batch from the labels (as the backend's retrain)
    crack_crops: float = 0.0  # share of crops placed over a crack pixel (TrainConfig)
    # fine-tuning as the committed campaigns ran it (every layer, these rates), whatever
    # the backend's retrains use now: a resumed campaign never mixes two regimes
    lr_decoder: float = 3e-4
    lr_encoder: float = 1.5e-4
    components: int = 25
    device: str | None = None
    uncertainty_side: int = 256  # pool images are predicted at most this large for entropy

    def __post_init__(self) -> None:
        self.budgets = sorted(set(self.budgets))
        if self.budgets[0] < 0:
            raise ValueError("budgets must be >= 0")
        self.strategies = [Strategy(s) for s in self.strategies]


@dataclass
class Campaign:
    """Everything shared by the trajectories: M, P's features, the pool and the test parts."""

    base: LoadedModel
    train_items: Sequence[Loaded]
    train_features: np.ndarray
    pool: list[Loaded]
    pool_features: np.ndarray
    tests: dict[str, list[Loaded]]  # set -> test images
    spec: CampaignSpec
    base_rows: list[dict] = field(default_factory=list)


def prepare(
    base: LoadedModel,
    extractor: FeatureExtractor,
    train_items: Sequence[Loaded],
    pool: list[Loaded],
    tests: dict[str, list[Loaded]],
    spec: CampaignSpec,
) -> Campaign:
    """Embed P and the pool once with M's features."""
    train_features = embed_paths([i.sample.image for i in train_items], extractor).features
    emb = embed_paths([i.sample.image for i in pool], extractor)
    if len(emb.paths) != len(pool):
        raise ValueError("some pool images could not be read")
    return Campaign(base, train_items, train_features, pool, emb.features, tests, spec)


def evaluate_tests(model: torch.nn.Module, encoder: str, tests: dict[str, list[Loaded]]):
    """ODS and threshold per set with masks, and pooled over every test image (crack-free
    sets add their false positives to the pooled counts only)."""
    out, every = {}, []
    for name, items in tests.items():
        ev = evaluate(model, encoder, items)
        every.append(ev.counts)
        if any(item.sample.mask is not None for item in items):
            out[name] = (ev.scores.ods, ev.scores.ods_threshold)
    pooled = scores(Counts.stack(every))
    out[POOLED] = (pooled.ods, pooled.ods_threshold)
    return out


def run_trajectory(
    campaign: Campaign, strategy: Strategy, seed: int, log: Callable[[str], None] = print
) -> tuple[list[dict], list[dict]]:
    """Rows of runs.csv for every budget > 0, and the picks of every round."""
    spec = campaign.spec
    remaining = list(range(len(campaign.pool)))
    labelled: list[int] = []
    rows, picks_log = [], []
    model = campaign.base.model
    base_state = {k: v.clone() for k, v in campaign.base.model.state_dict().items()}
    for round_no, budget in enumerate(b for b in spec.budgets if b > 0):
        rng = np.random.default_rng([seed, round_no, list(Strategy).index(strategy)])
        state = RoundState(
            primary=np.vstack([campaign.train_features, campaign.pool_features[labelled]]),
            pool=campaign.pool_features[remaining],
            rng=rng,
            uncertainty=lambda m=model, r=tuple(remaining): _entropies(campaign, m, r),
            components=spec.components,
        )
        chosen = [remaining[i] for i in choose(strategy, state, budget - len(labelled))]
        labelled += chosen
        remaining = [i for i in remaining if i not in set(chosen)]
        picks_log.append(
            {
                "strategy": str(strategy),
                "seed": seed,
                "budget": budget,
                "images": [_name(campaign.pool[i]) for i in chosen],
            }
        )
        model = campaign.base.model
        model.load_state_dict(base_state)
        config = TrainConfig.adapt(
            steps=spec.steps,
            seed=seed,
            eval_every=10**9,
            max_minutes=10**6,
            added_fraction=spec.added_fraction,
            crack_crops=spec.crack_crops,
            lr_decoder=spec.lr_decoder,
            lr_encoder=spec.lr_encoder,
            freeze_encoder=False,
            skeleton_recall=0.0,  # the loss every committed campaign used
        )
        added = [campaign.pool[i] for i in labelled]
        result = train(
            model,
            campaign.base.encoder,
            campaign.train_items,
            (),
            config,
            added,
            progress=False,
            device=spec.device,
        )
        evaluations = evaluate_tests(model, campaign.base.encoder, campaign.tests)
        per_set = _labels_per_set(added)
        for name, (ods, threshold) in evaluations.items():
            rows.append(
                _row(
                    base_id(campaign.base),
                    strategy,
                    seed,
                    budget,
                    name,
                    ods,
                    threshold,
                    per_set,
                    result.steps,
                    result,
                )
            )
        log(
            f"[{strategy} seed {seed}] {budget} labels: pooled ODS "
            f"{evaluations[POOLED][0]:.4f} ({result.seconds:.0f} s)"
        )
    campaign.base.model.load_state_dict(base_state)
    return rows, picks_log


def _entropies(campaign: Campaign, model: torch.nn.Module, indices: Sequence[int]) -> np.ndarray:
    side = campaign.spec.uncertainty_side
    out = []
    for i in indices:
        image = campaign.pool[i].image
        probs = predict_probs(model, image, campaign.base.encoder, max_side=side)
        out.append(mean_entropy(probs))
    return np.array(out)


def _name(item: Loaded) -> str:
    return f"{item.sample.set_name}/{item.sample.image.name}"


def _labels_per_set(items: Sequence[Loaded]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.sample.set_name] = counts.get(item.sample.set_name, 0) + 1
    return ";".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _row(base, strategy, seed, budget, name, ods, threshold, per_set, steps, result=None):
    return {
        "base": base,
        "strategy": str(strategy),
        "seed": seed,
        "budget": budget,
        "set": name,
        "ods": f"{ods:.6f}",
        "threshold": f"{threshold:.2f}",
        "labels_per_set": per_set,
        "steps": steps,
        "seconds": f"{result.seconds:.1f}" if result is not None else "0",
    }


def base_id(base: LoadedModel) -> str:
    """The base model's identity in runs.csv: its version and weights hash."""
    return f"{base.version}:{base.meta['weights_sha256'][:12]}"


def _seed_complete(rows: Sequence[dict], seed: int, spec: CampaignSpec) -> bool:
    cells = {(r["strategy"], int(r["budget"])) for r in rows if r["seed"] == str(seed)}
    return all((str(s), b) in cells for s in spec.strategies for b in spec.budgets)


def read_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_runs(path: Path, rows: Sequence[dict]) -> None:
    """Rewrite runs.csv atomically (sorted, so a resumed campaign writes the same file)."""
    key = _sort_key
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=RUN_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=key))


def _sort_key(row: dict) -> tuple:
    return (row["strategy"], int(row["seed"]), int(row["budget"]), row["set"])


def run_campaign(campaign: Campaign, out: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Every (seed, strategy) trajectory not yet in `out/runs.csv`; seeds outermost, so a
    stopped campaign holds whole paired seeds. Returns all rows."""
    spec = campaign.spec
    out.mkdir(parents=True, exist_ok=True)
    runs_path, picks_path = out / "runs.csv", out / "picks.jsonl"
    rows = read_runs(runs_path)
    wanted = [b for b in spec.budgets if b > 0]
    if 0 in spec.budgets and not campaign.base_rows:
        t0 = time.monotonic()
        evaluations = evaluate_tests(campaign.base.model, campaign.base.encoder, campaign.tests)
        log(f"base model: pooled ODS {evaluations[POOLED][0]:.4f} ({time.monotonic() - t0:.0f} s)")
        campaign.base_rows = [
            {"set": name, "ods": ods, "threshold": thr} for name, (ods, thr) in evaluations.items()
        ]
    base = base_id(campaign.base)
    for seed in spec.seeds:
        if any(r["seed"] == str(seed) and r["base"] != base for r in rows):
            if _seed_complete(rows, seed, spec):
                continue  # finished with another base model: keep it as it is
            rows = [r for r in rows if r["seed"] != str(seed)]  # restart it on this base
        for strategy in spec.strategies:
            done = {
                int(r["budget"])
                for r in rows
                if (r["strategy"], r["seed"]) == (strategy, str(seed))
            }
            if all(b in done for b in wanted) and (0 not in spec.budgets or 0 in done):
                continue
            rows = [r for r in rows if (r["strategy"], r["seed"]) != (strategy, str(seed))]
            new, picks = run_trajectory(campaign, strategy, seed, log)
            if 0 in spec.budgets:
                new += [
                    _row(base, strategy, seed, 0, b["set"], b["ods"], b["threshold"], "", 0)
                    for b in campaign.base_rows
                ]
            rows += new
            write_runs(runs_path, rows)
            with open(picks_path, "a") as fh:
                for p in picks:
                    fh.write(json.dumps(p) + "\n")
    return rows

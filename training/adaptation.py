"""The paper's adaptation experiment (section 4.3): add q far images of each unseen set to P,
fine-tune, and see whether the model improves on those sets.

Every secondary set S is split once, by original photo (crops of one photo stay on one
side), into a test part and a candidate part (`training.campaign.grouped_split`); every
model of every strategy and seed is evaluated on the same test parts. I_dist(S, P) is
computed with the base model's own encoder features for all of S. For each strategy ("band":
uniformly among candidates whose scaled I_dist is in the band; "random": uniformly among the
candidates) and seed, one seeded ordering of the candidates is drawn and M_q takes its first
q images from every S, so the choices are nested (M_1's image is among M_3's). `crackal
adapt` fine-tunes for a fixed number of steps (no wall-clock stop, no early stop), so its
results do not depend on the machine's load; without `config_for_seed`, `run_experiment`
uses `TrainConfig.adapt` with the paper's settings (`PAPER_RETRAIN`), whose 3-minute
budget can end a run and anneal it by the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from selection.embed import embed_paths
from selection.extractors import FeatureExtractor
from selection.ranking import DEFAULT_BAND
from selection.scoring import SetScores, score_set
from training.campaign import grouped_split
from training.data import Loaded
from training.evaluate import Evaluation, evaluate
from training.fit import Promotion, fit_version
from training.registry import Registry
from training.train import TrainConfig

STRATEGIES = ("band", "random")
# how M_q are retrained: every layer, as the paper's are, at the rates and with the loss this
# experiment has always used (the backend's retrain, `TrainConfig.adapt()`, freezes the
# encoder and adds the skeleton recall term)
PAPER_RETRAIN = {
    "freeze_encoder": False,
    "lr_decoder": 3e-4,
    "lr_encoder": 1.5e-4,
    "skeleton_recall": 0.0,
}


@dataclass
class Run:
    """One fine-tuned model M_q and its evaluations."""

    strategy: str
    seed: int
    q: int
    version: str
    chosen: dict[str, list[str]]  # set -> image names added to P
    evaluations: dict[str, Evaluation] = field(default_factory=dict)


@dataclass
class Experiment:
    base_version: str
    distances: dict[str, SetScores]  # set -> I_dist of its images from P (base features)
    base_evaluations: dict[tuple[str, int], dict[str, Evaluation]]  # (strategy, seed) -> set
    runs: list[Run]
    test: dict[str, list[str]]  # set -> the images every model is evaluated on


def candidate_order(
    scores: SetScores, strategy: str, rng: np.random.Generator, candidates: Sequence[int]
) -> list[int]:
    """Indices of S (among `candidates`) in the order they are taken: a seeded shuffle of
    the candidates in the band (or of all candidates). With too few in the band, the
    farthest candidates outside it follow, farthest first."""
    pool = np.asarray(sorted(candidates), dtype=int)
    if strategy == "random":
        return [int(i) for i in rng.permutation(pool)]
    if strategy != "band":
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    band = pool[scores.in_band[pool]]
    rest = [
        i
        for i in np.argsort(-scores.i_dist, kind="stable")
        if i in set(pool) and not scores.in_band[i]
    ]
    return [int(i) for i in rng.permutation(band)] + [int(i) for i in rest]


def run_experiment(
    registry: Registry,
    base_version: str,
    extractor: FeatureExtractor,
    train_items: Sequence[Loaded],
    val_items: Sequence[Loaded],
    secondaries: dict[str, Sequence[Loaded]],
    qs: Sequence[int] = (1, 3, 7),
    strategies: Sequence[str] = STRATEGIES,
    seeds: Sequence[int] = (0,),
    config_for_seed: Callable[[int], TrainConfig] | None = None,
    band: tuple[float, float] = DEFAULT_BAND,
    test_per_set: int = 30,
    split_seed: int = 0,
    log: Callable[[str], None] = print,
) -> Experiment:
    """Fine-tune M_q for every strategy, seed and q; evaluate every model on the same test
    part of every S."""
    qs = sorted(set(qs))
    if not qs or qs[0] < 1:
        raise ValueError("q values must be positive")
    test_names: dict[str, set[str]] = {}
    for name, items in secondaries.items():
        test, pool = grouped_split([it.sample for it in items], test_per_set, split_seed)
        if len(pool) < qs[-1] or not test:
            raise ValueError(
                f"set {name!r} has {len(items)} images: too few for a test part of "
                f"{test_per_set} and q={qs[-1]}"
            )
        test_names[name] = {s.image.name for s in test}

    train_feats = embed_paths(
        [i.sample.image for i in train_items], extractor, desc="embed train"
    ).features
    distances = {}
    for name, items in secondaries.items():
        emb = embed_paths([i.sample.image for i in items], extractor, desc=f"embed {name}")
        if len(emb.paths) != len(items):
            raise ValueError(f"set {name!r}: some images could not be read")
        distances[name] = score_set(name, emb.names, emb.features, train_feats, band=band)

    base = registry.load(base_version)
    kept = {
        n: [it for it in items if it.sample.image.name in test_names[n]]
        for n, items in secondaries.items()
    }
    candidates = {
        n: [i for i, it in enumerate(items) if it.sample.image.name not in test_names[n]]
        for n, items in secondaries.items()
    }
    log(f"evaluating base {base_version} on the test parts")
    base_eval = {n: evaluate(base.model, base.encoder, kept[n], desc=f"eval {n}") for n in kept}
    runs, base_evals = [], {}
    for strategy in strategies:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            orders = {
                n: candidate_order(distances[n], strategy, rng, candidates[n]) for n in secondaries
            }
            base_evals[(strategy, seed)] = base_eval
            for q in qs:
                added = [secondaries[n][i] for n in secondaries for i in orders[n][:q]]
                log(f"[{strategy} seed {seed}] fine-tuning M{q} on P + {len(added)} images")
                outcome = fit_version(
                    registry,
                    train_items,
                    val_items,
                    parent=base_version,
                    config=(
                        config_for_seed or (lambda k: TrainConfig.adapt(seed=k, **PAPER_RETRAIN))
                    )(seed),
                    added_items=added,
                    promote=Promotion.NEVER,
                    note=f"adapt experiment: {strategy}, seed {seed}, q={q}",
                )
                model = registry.load(outcome.version)
                run = Run(
                    strategy,
                    seed,
                    q,
                    outcome.version,
                    {
                        n: [secondaries[n][i].sample.image.name for i in orders[n][:q]]
                        for n in secondaries
                    },
                )
                run.evaluations = {
                    n: evaluate(model.model, model.encoder, kept[n], desc=f"eval {n}") for n in kept
                }
                summary = ", ".join(f"{n} {e.scores.ods:.3f}" for n, e in run.evaluations.items())
                log(f"  M{q} = {outcome.version}: ODS {summary}")
                runs.append(run)
    test = {n: sorted(names) for n, names in test_names.items()}
    return Experiment(base_version, distances, base_evals, runs, test)

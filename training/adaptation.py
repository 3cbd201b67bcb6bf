"""The paper's adaptation experiment (section 4.3): add q far images of each unseen set to P,
fine-tune, and see whether the model improves on those sets.

For every secondary set S, I_dist(S, P) is computed with the base model's own encoder
features. For each strategy ("band": uniformly among images whose scaled I_dist is in the
band; "random": uniformly among all of S) and seed, one seeded ordering of the candidates is
drawn and M_q takes its first q images from every S, so the choices are nested
(M_1's image is among M_3's). Every model of one (strategy, seed) - M and each M_q - is
evaluated on every S without the images chosen for the largest q, so they are compared on
the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from selection.embed import embed_paths
from selection.extractors import FeatureExtractor
from selection.ranking import DEFAULT_BAND
from selection.scoring import SetScores, score_set
from training.data import Loaded
from training.evaluate import Evaluation, evaluate
from training.fit import fit_version
from training.registry import Registry
from training.train import TrainConfig

STRATEGIES = ("band", "random")


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
    held_out: dict[tuple[str, int], dict[str, list[str]]]  # images excluded from evaluation


def candidate_order(scores: SetScores, strategy: str, rng: np.random.Generator) -> list[int]:
    """Indices of S in the order they are taken: a seeded shuffle of the band (or of all S).

    With too few images in the band, the farthest images outside it follow, farthest first.
    """
    if strategy == "random":
        return [int(i) for i in rng.permutation(len(scores.images))]
    if strategy != "band":
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    band = np.flatnonzero(scores.in_band)
    rest = [i for i in np.argsort(-scores.i_dist, kind="stable") if not scores.in_band[i]]
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
    log: Callable[[str], None] = print,
) -> Experiment:
    """Fine-tune M_q for every strategy, seed and q; evaluate everything on every S."""
    qs = sorted(set(qs))
    if not qs or qs[0] < 1:
        raise ValueError("q values must be positive")
    for name, items in secondaries.items():
        if len(items) <= qs[-1]:
            raise ValueError(f"set {name!r} has {len(items)} images: too few for q={qs[-1]}")

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
    runs, base_evals, held_out = [], {}, {}
    for strategy in strategies:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            orders = {n: candidate_order(distances[n], strategy, rng) for n in secondaries}
            excluded = {
                n: [secondaries[n][i].sample.image.name for i in orders[n][: qs[-1]]]
                for n in secondaries
            }
            held_out[(strategy, seed)] = excluded
            kept = {
                n: [it for it in items if it.sample.image.name not in excluded[n]]
                for n, items in secondaries.items()
            }
            log(f"[{strategy} seed {seed}] evaluating base {base_version}")
            base_evals[(strategy, seed)] = {
                n: evaluate(base.model, base.encoder, kept[n], desc=f"eval {n}") for n in kept
            }
            for q in qs:
                added = [secondaries[n][i] for n in secondaries for i in orders[n][:q]]
                log(f"[{strategy} seed {seed}] fine-tuning M{q} on P + {len(added)} images")
                outcome = fit_version(
                    registry,
                    train_items,
                    val_items,
                    parent=base_version,
                    config=(config_for_seed or (lambda k: TrainConfig.adapt(seed=k)))(seed),
                    added_items=added,
                    promote="never",
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
    return Experiment(base_version, distances, base_evals, runs, held_out)

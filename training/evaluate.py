"""Evaluating a model on image/mask pairs: counts per image, then ODS / OIS / AP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from training.data import Loaded
from training.metrics import Counts, Scores, image_counts, scores
from training.predict import predict_probs

# raise when a change alters the scores `evaluate` gives the same weights and images: stored
# validation scores measured before are then measured again (training.fit)
EVALUATION_VERSION = 1


@dataclass
class Evaluation:
    """Metrics of one set; `paths[i]` is the image behind row i of the counts."""

    paths: list[Path]
    counts: Counts
    scores: Scores
    tolerant: Scores | None = None  # with the pixel tolerance, when one was asked for

    @property
    def names(self) -> list[str]:
        """The images' file names, row by row."""
        return [p.name for p in self.paths]

    def per_image(self) -> dict[Path, Counts]:
        """Image path -> its own row of the counts."""
        return {p: self.counts.subset(np.array([i])) for i, p in enumerate(self.paths)}


def evaluate(
    model: nn.Module,
    encoder: str,
    items: Sequence[Loaded],
    tolerance: float = 0.0,
    desc: str | None = None,
) -> Evaluation:
    """Predict every image at its original size and score it against its mask."""
    exact, tolerant = [], []
    for item in tqdm(items, desc=desc, unit="img", disable=desc is None, leave=False):
        probs = predict_probs(model, item.image, encoder)
        exact.append(image_counts(probs, item.mask))
        if tolerance > 0:
            tolerant.append(image_counts(probs, item.mask, tolerance))
    counts = Counts.stack(exact)
    return Evaluation(
        paths=[item.sample.image for item in items],
        counts=counts,
        scores=scores(counts),
        tolerant=scores(Counts.stack(tolerant)) if tolerant else None,
    )

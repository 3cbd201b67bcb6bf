"""Expected pre-annotation F of a task, read off its scaled distance.

The method's finding is that a model's F falls as images get farther from its training
set. The annotators' labels measure it on the project: each label gives the F of the
pre-annotation it replaced, at that task's scaled distance (backend/edit_records.py). An
isotonic regression, non-increasing in distance, turns those points into a curve; a task's
expected F is the curve at its distance. Nearer than every label the curve stays at its
nearest value: as F does not fall towards the training set, that is a lower bound.

As a queue score the curve is blended with 1 - scaled distance by `TIE` (1e-3): the score
then stays within 0.001 of the expected F and is strictly decreasing in the distance, so
serving the lowest score first still serves the farthest task first.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.isotonic import IsotonicRegression

MIN_LABELS = 3  # labels with a distance before a curve is fitted
TIE = 1e-3


class ExpectedF:
    """The fitted curve: expected F against scaled distance."""

    def __init__(self, points: Iterable[tuple[float, float]]) -> None:
        pairs = [(float(d), float(f)) for d, f in points]
        if len(pairs) < MIN_LABELS:
            raise ValueError(f"need at least {MIN_LABELS} labels, got {len(pairs)}")
        d, f = np.array(pairs).T
        self.labels = len(pairs)
        self.nearest = float(d.min())  # nearer than this the curve is only a lower bound
        self._fit = IsotonicRegression(
            increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip"
        ).fit(d, f)

    @classmethod
    def from_labels(cls, points: Iterable[tuple[float | None, float]]) -> ExpectedF | None:
        """The curve of the labels that have a distance; None with fewer than MIN_LABELS."""
        placed = [(d, f) for d, f in points if _finite(d) and _finite(f)]
        return cls(placed) if len(placed) >= MIN_LABELS else None

    def __call__(self, scaled: np.ndarray) -> np.ndarray:
        """Expected F in [0, 1] at each scaled distance."""
        return np.clip(self._fit.predict(np.asarray(scaled, dtype=np.float64)), 0.0, 1.0)

    def queue_scores(self, scaled: np.ndarray) -> np.ndarray:
        """Expected F, blended by TIE with 1 - distance: strictly decreasing in distance."""
        scaled = np.asarray(scaled, dtype=np.float64)
        return (1.0 - TIE) * self(scaled) + TIE * (1.0 - scaled)


def _finite(value: object) -> bool:
    """A real, finite number (a damaged record may hold None, text or NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)

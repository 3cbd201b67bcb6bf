"""Label Studio serves a project's tasks lowest prediction score first ("Uncertainty
sampling"). These scores make it serve the pool in a selection strategy's order; for
`farthest` they also say something: the expected F of the task's pre-annotation once the
project's labels give a curve (selection/expected_f.py), else 1 - scaled distance."""

from __future__ import annotations

import numpy as np

from selection.expected_f import ExpectedF
from selection.strategies import RoundState, Strategy, choose

# Strategies the backend can order a queue by (uncertainty needs probability maps that the
# mask cache does not keep).
QUEUE_STRATEGIES = (
    Strategy.FARTHEST,
    Strategy.BAND,
    Strategy.BAND_KCENTER,
    Strategy.KCENTER,
    Strategy.RANDOM,
)


def queue_scores(
    strategy: Strategy,
    primary: np.ndarray,
    pool: np.ndarray,
    scaled: np.ndarray,
    band: tuple[float, float],
    components: int,
    seed: int,
    curve: ExpectedF | None = None,
) -> np.ndarray:
    """One score in [0, 1] per pool image, lowest served first. `farthest`: the expected F
    read off `curve` (strictly decreasing in distance), or 1 - scaled I_dist without one
    (the same order either way); every other strategy: its pick rank divided by (m - 1),
    the first pick scoring 0."""
    strategy = Strategy(strategy)
    if strategy not in QUEUE_STRATEGIES:
        raise ValueError(f"the queue cannot be ordered by {strategy.value!r}")
    scaled = np.asarray(scaled, dtype=np.float64)
    if strategy is Strategy.FARTHEST:
        return 1.0 - scaled if curve is None else curve.queue_scores(scaled)
    m = len(pool)
    state = RoundState(
        primary=primary,
        pool=pool,
        rng=np.random.default_rng(seed),
        components=components,
        band=band,
    )
    order = choose(strategy, state, m)
    scores = np.empty(m)
    scores[order] = np.arange(m) / max(m - 1, 1)
    return scores

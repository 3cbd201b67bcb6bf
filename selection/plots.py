"""Figures of a scoring run: I_dist per set (paper's figure 3) and sorted I_dist (figure 10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from selection.scoring import SetScores


def violin_plot(path: Path, sets: Sequence[SetScores], title: str = "") -> None:
    """One violin of I_dist per secondary set, its O_dist marked."""
    fig, ax = plt.subplots(figsize=(1.6 * len(sets) + 2.5, 4.5))
    data = [s.i_dist for s in sets]
    # A violin needs spread; a set of one value is drawn as a point.
    spread = [i for i, d in enumerate(data) if len(d) > 1 and np.ptp(d) > 0]
    if spread:
        ax.violinplot(
            [data[i] for i in spread], positions=[i + 1 for i in spread], showmedians=True
        )
    for i, s in enumerate(sets):
        ax.scatter(
            [i + 1],
            [s.o_dist],
            marker="D",
            color="black",
            zorder=3,
            label="O_dist (mean I_dist)" if i == 0 else None,
        )
    ax.set_xticks(range(1, len(sets) + 1), [f"{s.name}\n(n={len(s.images)})" for s in sets])
    ax.set_ylabel("I_dist (sum of distances to the training set)")
    ax.set_title(title or "Image-to-dataset distance per set (PCA on train + each set)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def sorted_distance_plot(path: Path, sets: Sequence[SetScores], title: str = "") -> None:
    """I_dist sorted ascending against the image's position, one line per set."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in sets:
        ax.plot(np.arange(1, len(s.i_dist) + 1), np.sort(s.i_dist), label=s.name)
    ax.set_xlabel("image (sorted by distance)")
    ax.set_ylabel("I_dist")
    ax.set_title(title or "Sorted image-to-dataset distance")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_figure(fig: plt.Figure, path: Path, dpi: int = 120) -> None:
    """Lay out, write (creating folders) and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)

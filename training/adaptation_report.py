"""Writing the adaptation experiment: CSVs and the paper's figures 4-7 and tables 3-5.

- `distances.csv`: I_dist of every secondary image from P with the base model's features;
- `ods.csv`: ODS / OIS / AP of every model on every secondary set (figure 7's numbers);
- `per_image.csv`: per-image F (at the set's ODS threshold) with I_dist and scaled I_dist;
- `parts.csv` and `parts.png`: the test part of S sorted by I_dist, split in halves and
  thirds; per part the F-score (ODS over the part's images), and the mean and std of the
  scaled I_dist (as the paper's tables): F(mu, sigma);
- `fig7_ods.png`: ODS per set for M, M_1, M_3, M_7 (mean over seeds; bars span the seeds);
- `f_vs_distance_<strategy>_seed<k>.png`: per-image F against scaled I_dist, smoothed with
  a moving average of window |S|/10, one line per model (figures 4-6);
- `summary.json`: mean ODS over the secondary sets per model, strategy and seed.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from selection.atomic import atomic_write
from selection.plots import save_figure
from selection.ranking import moving_average, smoothing_window, sorted_parts
from training.adaptation import Experiment
from training.evaluate import Evaluation
from training.metrics import scores


def _models(exp: Experiment, strategy: str, seed: int) -> list[tuple[str, str, dict]]:
    """(label, version, evaluations per set) for M and every M_q of one strategy and seed."""
    out = [("M", exp.base_version, exp.base_evaluations[(strategy, seed)])]
    for run in exp.runs:
        if run.strategy == strategy and run.seed == seed:
            out.append((f"M{run.q}", run.version, run.evaluations))
    return out


def _keys(exp: Experiment) -> list[tuple[str, int]]:
    return list(exp.base_evaluations)


def _distance_of(exp: Experiment, set_name: str, ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    d = exp.distances[set_name]
    index = {name: i for i, name in enumerate(d.images)}
    rows = [index[name] for name in ev.names]
    return d.i_dist[rows], d.scaled[rows]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_report(exp: Experiment, out: Path) -> dict[str, Any]:
    """Write every table and figure of the experiment under `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    ods_rows, image_rows, part_rows = [], [], []
    mean_ods: dict[str, dict[str, float]] = defaultdict(dict)
    for strategy, seed in _keys(exp):
        for label, version, evals in _models(exp, strategy, seed):
            for set_name, ev in evals.items():
                s = ev.scores
                ods_rows.append(
                    [strategy, seed, label, version, set_name, s.ods, s.ois, s.ap, len(ev.names)]
                )
                i_dist, scaled = _distance_of(exp, set_name, ev)
                for name, d, x, f in zip(ev.names, i_dist, scaled, s.per_image_f, strict=True):
                    image_rows.append([strategy, seed, label, set_name, name, d, x, f])
                for parts in (2, 3):
                    if len(ev.names) < parts:
                        continue  # a test part too small to split this finely
                    for k, part in enumerate(
                        sorted_parts(
                            scaled, parts, lambda idx, ev=ev: scores(ev.counts.subset(idx)).ods
                        )
                    ):
                        part_rows.append(
                            [
                                strategy,
                                seed,
                                label,
                                set_name,
                                parts,
                                k + 1,
                                part.f_score,
                                part.mean,
                                part.std,
                            ]
                        )
            mean_ods[f"{strategy}/seed{seed}"][label] = float(
                np.mean([ev.scores.ods for ev in evals.values()])
            )
    _write_csv(
        out / "ods.csv",
        ["strategy", "seed", "model", "version", "set", "ods", "ois", "ap", "images"],
        ods_rows,
    )
    _write_csv(
        out / "per_image.csv",
        ["strategy", "seed", "model", "set", "image", "i_dist", "scaled_i_dist", "f"],
        image_rows,
    )
    _write_csv(
        out / "parts.csv",
        ["strategy", "seed", "model", "set", "parts", "part", "f", "mean_scaled", "std_scaled"],
        part_rows,
    )
    _write_csv(
        out / "distances.csv",
        ["set", "image", "i_dist", "scaled", "rank", "in_band"],
        [
            [d.name, img, d.i_dist[i], d.scaled[i], d.rank[i], int(d.in_band[i])]
            for d in exp.distances.values()
            for i, img in enumerate(d.images)
        ],
    )
    _figure7(exp, out / "fig7_ods.png")
    for strategy, seed in _keys(exp):
        _f_vs_distance(exp, strategy, seed, out / f"f_vs_distance_{strategy}_seed{seed}.png")
    _parts_table(part_rows, out / "parts.png")
    summary = {
        "base_version": exp.base_version,
        "mean_ods_over_sets": mean_ods,
        "test": exp.test,
        "chosen": [
            {
                "strategy": r.strategy,
                "seed": r.seed,
                "q": r.q,
                "version": r.version,
                "images": r.chosen,
            }
            for r in exp.runs
        ],
    }
    with atomic_write(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _figure7(exp: Experiment, path: Path) -> None:
    strategies = sorted({k[0] for k in _keys(exp)})
    sets = list(exp.distances)
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(6 * len(strategies), 4.2), squeeze=False, sharey=True
    )
    for ax, strategy in zip(axes[0], strategies, strict=True):
        per_model: dict[str, list[list[float]]] = defaultdict(list)
        for s, seed in _keys(exp):
            if s == strategy:
                for label, _, evals in _models(exp, s, seed):
                    per_model[label].append([evals[n].scores.ods for n in sets])
        labels = list(per_model)
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            values = np.array(per_model[label])
            mean = values.mean(0)
            err = np.vstack([mean - values.min(0), values.max(0) - mean])
            ax.bar(np.arange(len(sets)) + j * width, mean, width, yerr=err, capsize=2, label=label)
        ax.set_xticks(np.arange(len(sets)) + width * (len(labels) - 1) / 2, sets)
        ax.set_title(f"ODS per unseen set ({strategy} selection)")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("ODS (F-score)")
    save_figure(fig, path, dpi=110)


def _f_vs_distance(exp: Experiment, strategy: str, seed: int, path: Path) -> None:
    sets = list(exp.distances)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.8), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        for label, _, evals in _models(exp, strategy, seed):
            ev = evals[set_name]
            _, scaled = _distance_of(exp, set_name, ev)
            order = np.argsort(scaled, kind="stable")
            w = smoothing_window(len(order))
            ax.plot(
                moving_average(scaled[order], w),
                moving_average(ev.scores.per_image_f[order], w),
                label=label,
            )
        ax.set_title(set_name)
        ax.set_xlabel("scaled I_dist")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"per-image F (moving average, |S|/10)\n{strategy}, seed {seed}")
    axes[0][-1].legend()
    save_figure(fig, path, dpi=110)


def _parts_table(part_rows: list[list[Any]], path: Path) -> None:
    """Tables 3-5 for the base model M of the first strategy and seed: F(mu, sigma)."""
    first = (part_rows[0][0], part_rows[0][1]) if part_rows else None
    rows = [r for r in part_rows if (r[0], r[1]) == first and r[2] == "M"]
    sets = list(dict.fromkeys(r[3] for r in rows))
    header = ["set", "half 1", "half 2", "third 1", "third 2", "third 3"]
    cells = []
    for s in sets:
        mine = [r for r in rows if r[3] == s]
        cells.append([s] + [f"{r[6]:.3f} ({r[7]:.0f}, {r[8]:.0f})" for r in mine])
    fig, ax = plt.subplots(figsize=(11, 0.5 + 0.45 * (len(cells) + 1)))
    ax.axis("off")
    if cells:
        ax.table(cellText=cells, colLabels=header, loc="center").scale(1, 1.4)
    ax.set_title("Base model M: F-score (mean I_dist, std I_dist) by distance part")
    save_figure(fig, path, dpi=110)

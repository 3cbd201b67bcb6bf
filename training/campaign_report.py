"""The campaign's statistics and figures, computed from `runs.csv` alone (so the summary
reproduces from the committed CSV).

- Learning curves: mean ODS over seeds per strategy, budget and set, with a 95% t-interval.
- Paired differences against `random` per budget and set (same seed = same training
  randomness and test split): mean, 95% t-interval, paired t-test p, Holm-corrected over
  every strategy x budget comparison of that set.
- Area under the learning curve (trapezoids over the budgets, divided by the budget span:
  a mean ODS over the curve), per seed, then the same paired comparison; and, as a
  secondary reading, every pair of the other strategies head to head in AULC (Holm over
  the pairs of a set).
Only seeds that every strategy finished are used (pairs must be complete). Within a seed
every strategy shares one base model (runs.csv's `base`); seeds may differ in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from selection.atomic import atomic_write

REFERENCE = "random"


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))
    return mean, mean - half, mean + half


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    order = np.argsort(pvalues)
    adjusted = np.empty(len(pvalues))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return [float(a) for a in adjusted]


def complete_seeds(rows: Sequence[dict]) -> list[int]:
    """Seeds for which every strategy has every budget of every set."""
    cells = {(r["strategy"], int(r["seed"]), int(r["budget"]), r["set"]) for r in rows}
    strategies = sorted({c[0] for c in cells})
    budgets = sorted({c[2] for c in cells})
    sets = sorted({c[3] for c in cells})
    seeds = sorted({c[1] for c in cells})
    return [
        s
        for s in seeds
        if all((st, s, b, n) in cells for st in strategies for b in budgets for n in sets)
    ]


def _table(rows: Sequence[dict], seeds: Sequence[int]) -> dict[tuple[str, str, int], np.ndarray]:
    """(strategy, set, budget) -> ODS per seed, in `seeds` order."""
    by = {
        (r["strategy"], r["set"], int(r["budget"]), int(r["seed"])): float(r["ods"]) for r in rows
    }
    keys = {(k[0], k[1], k[2]) for k in by}
    return {k: np.array([by[(*k, s)] for s in seeds]) for k in keys}


def _aulc(table, strategy: str, name: str, budgets: Sequence[int]) -> np.ndarray:
    curve = np.stack([table[(strategy, name, b)] for b in budgets])  # budgets x seeds
    span = budgets[-1] - budgets[0]
    return np.trapezoid(curve, x=budgets, axis=0) / span if span else curve[0]


def summarise(rows: Sequence[dict]) -> dict[str, Any]:
    """Learning curves, paired differences against random and AULC, as one JSON object."""
    seeds = complete_seeds(rows)
    if not seeds:
        raise ValueError("no seed is complete for every strategy: nothing to compare yet")
    rows = [r for r in rows if int(r["seed"]) in seeds]
    table = _table(rows, seeds)
    strategies = sorted({k[0] for k in table})
    sets = sorted({k[1] for k in table})
    budgets = sorted({k[2] for k in table})
    curves, paired, aulc, pairs = [], [], [], []
    for name in sets:
        comparisons = []
        for strategy in strategies:
            for budget in budgets:
                mean, lo, hi = t_interval(table[(strategy, name, budget)])
                curves.append(
                    {
                        "strategy": strategy,
                        "set": name,
                        "budget": budget,
                        "mean_ods": mean,
                        "ci95": [lo, hi],
                        "n": len(seeds),
                    }
                )
                if strategy == REFERENCE or budget == 0 or REFERENCE not in strategies:
                    continue
                diff = table[(strategy, name, budget)] - table[(REFERENCE, name, budget)]
                comparisons.append((strategy, budget, diff))
        pvalues = [paired_p(d) for _, _, d in comparisons]
        for (strategy, budget, diff), p, p_holm in zip(
            comparisons, pvalues, holm(pvalues), strict=True
        ):
            mean, lo, hi = t_interval(diff)
            paired.append(
                {
                    "strategy": strategy,
                    "set": name,
                    "budget": budget,
                    "mean_diff": mean,
                    "ci95": [lo, hi],
                    "p": p,
                    "p_holm": p_holm,
                    "n": len(seeds),
                    "significant": bool(p_holm < 0.05),
                }
            )
        if REFERENCE in strategies and len(budgets) > 1:
            ref = _aulc(table, REFERENCE, name, budgets)
            entries = []
            for strategy in strategies:
                area = _aulc(table, strategy, name, budgets)
                mean, lo, hi = t_interval(area)
                entry = {"strategy": strategy, "set": name, "aulc": mean, "ci95": [lo, hi]}
                if strategy != REFERENCE:
                    d_mean, d_lo, d_hi = t_interval(area - ref)
                    entry.update(
                        diff_vs_random=d_mean, diff_ci95=[d_lo, d_hi], p=paired_p(area - ref)
                    )
                entries.append(entry)
            compared = [e for e in entries if "p" in e]
            for e, p_holm in zip(compared, holm([e["p"] for e in compared]), strict=True):
                e.update(p_holm=p_holm, significant=bool(p_holm < 0.05))
            aulc += entries
        if len(budgets) > 1:
            pairs += _aulc_pairs(table, [s for s in strategies if s != REFERENCE], name, budgets)
    return {
        "seeds": seeds,
        "strategies": strategies,
        "budgets": budgets,
        "sets": sets,
        "reference": REFERENCE,
        "test": "paired t-test against random per set and budget, Holm-corrected per set",
        "learning_curves": curves,
        "paired_vs_random": paired,
        "aulc": aulc,
        "aulc_pairs": pairs,
    }


def _aulc_pairs(table, strategies: Sequence[str], name: str, budgets: Sequence[int]) -> list:
    """AULC of a minus b per seed for every pair a < b: mean, 95% CI, paired p, Holm over
    the pairs of this set."""
    out = []
    for i, a in enumerate(strategies):
        for b in strategies[i + 1 :]:
            diff = _aulc(table, a, name, budgets) - _aulc(table, b, name, budgets)
            mean, lo, hi = t_interval(diff)
            out.append(
                {"a": a, "b": b, "set": name, "mean_diff": mean, "ci95": [lo, hi],
                 "p": paired_p(diff)}
            )  # fmt: skip
    for e, p_holm in zip(out, holm([e["p"] for e in out]), strict=True):
        e.update(p_holm=p_holm, significant=bool(p_holm < 0.05))
    return out


def paired_p(diff: np.ndarray) -> float:
    """Two-sided paired t-test p; a constant difference has no spread: 1 when it is 0, else
    0 (every seed moved by the same amount)."""
    if len(diff) < 2:
        return 1.0
    if np.allclose(diff, diff[0]):
        return 1.0 if np.isclose(diff[0], 0.0) else 0.0
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def plot_curves(summary: dict[str, Any], path: Path) -> None:
    """Learning curves (mean ODS and 95% CI against labels), one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = summary["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        for strategy in summary["strategies"]:
            pts = [
                c
                for c in summary["learning_curves"]
                if c["set"] == name and c["strategy"] == strategy
            ]
            pts.sort(key=lambda c: c["budget"])
            x = [c["budget"] for c in pts]
            y = [c["mean_ods"] for c in pts]
            lo = [c["ci95"][0] for c in pts]
            hi = [c["ci95"][1] for c in pts]
            (line,) = ax.plot(x, y, marker="o", ms=3, label=strategy)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12)
        ax.set_title(name)
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("ODS on the test split")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(
        f"Simulated labelling campaign: mean and 95% CI over {len(summary['seeds'])} paired seeds",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def format_summary(summary: dict[str, Any], sets: Sequence[str] | None = None) -> str:
    """The summary as text, per set: mean ODS per budget and the AULC, then each strategy's
    paired difference against the reference per budget and in AULC (mean, 95% CI,
    Holm-corrected p; '*' where significant at 0.05)."""
    budgets = summary["budgets"]
    reference = summary["reference"]
    aulc = {(a["strategy"], a["set"]): a for a in summary["aulc"]}
    mean = {(c["strategy"], c["set"], c["budget"]): c for c in summary["learning_curves"]}
    paired = {(d["strategy"], d["set"], d["budget"]): d for d in summary["paired_vs_random"]}
    lines = [f"{len(summary['seeds'])} paired seeds; {summary['test']}"]

    def cell(d: dict[str, Any] | None, key: str, ci: str) -> str:
        if d is None or key not in d:
            return f"{'':>30s}"
        (lo, hi), star = d[ci], "*" if d["significant"] else " "
        text = f"{d[key]:+.3f} [{lo:+.3f},{hi:+.3f}] {d['p_holm']:.2f}{star}"
        return f"{text:>30s}"

    for name in sets or summary["sets"]:
        lines += [
            "",
            f"{name}: mean ODS",
            f"  {'labels':<14s}" + "".join(f"{b:>8d}" for b in budgets),
        ]
        lines[-1] += "    AULC"
        for strategy in summary["strategies"]:
            row = "".join(f"{mean[(strategy, name, b)]['mean_ods']:8.3f}" for b in budgets)
            area = aulc.get((strategy, name))
            lines.append(f"  {strategy:<14s}{row}" + (f"{area['aulc']:8.3f}" if area else ""))
        compared = [b for b in budgets if any(k[1:] == (name, b) for k in paired)]
        lines += [
            f"{name}: difference against {reference}: mean [95% CI] Holm p",
            f"  {'labels':<14s}" + "".join(f"{b:>30d}" for b in compared) + f"{'AULC':>30s}",
        ]
        for strategy in summary["strategies"]:
            if strategy == reference:
                continue
            row = "".join(
                cell(paired.get((strategy, name, b)), "mean_diff", "ci95") for b in compared
            )
            area = cell(aulc.get((strategy, name)), "diff_vs_random", "diff_ci95")
            lines.append(f"  {strategy:<14s}{row}{area}")
    shown = sets or summary["sets"]
    pairs = {(d["a"], d["b"], d["set"]): d for d in summary.get("aulc_pairs", [])}
    if pairs:
        lines += [
            "",
            "AULC head to head, a - b: mean [95% CI] Holm p over the pairs of a set",
            f"  {'':<28s}" + "".join(f"{n:>30s}" for n in shown),
        ]
        for a, b in dict.fromkeys((k[0], k[1]) for k in pairs):
            row = "".join(cell(pairs.get((a, b, n)), "mean_diff", "ci95") for n in shown)
            lines.append(f"  {a + ' - ' + b:<28s}{row}")
    return "\n".join(lines)


def write_summary(rows: Sequence[dict], out: Path) -> dict[str, Any]:
    summary = summarise(rows)
    with atomic_write(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    plot_curves(summary, out / "learning_curves.png")
    return summary

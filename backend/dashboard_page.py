"""The dashboard as one server-rendered HTML page: matplotlib figures inlined as PNG data
URLs (no scripts, no CDN: deployments are often offline) and the numbers as tables."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_figure(data: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    placed = [e for e in data["edits"] if e["scaled_distance"] is not None]
    for version in sorted({e["model_version"] for e in placed}):
        mine = [e for e in placed if e["model_version"] == version]
        ax.scatter([e["scaled_distance"] for e in mine], [e["f"] for e in mine], s=14, alpha=0.6)
        curve = data["curves"].get(version) or []
        if curve:
            ax.plot(*zip(*curve, strict=True), label=f"{version} (moving mean)")
    ax.axvline(data["stop"]["far_from"], color="grey", linestyle=":", label="far band")
    ax.set(xlabel="scaled distance at prediction", ylabel="pre-annotation F", ylim=(-0.02, 1.02))
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Live generalisation curve")
    return _png(fig)


def _distance_figure(data: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    bins = [i / 20 for i in range(21)]
    remaining = data["remaining"]["scaled_distances"]
    labelled = [e["scaled_distance"] for e in data["edits"] if e["scaled_distance"] is not None]
    ax.hist(remaining, bins=bins, alpha=0.6, label=f"remaining ({len(remaining)})")
    ax.hist(labelled, bins=bins, alpha=0.6, label=f"labelled ({len(labelled)})")
    ax.set(xlabel="scaled distance", ylabel="tasks", title="Where the pool is")
    ax.legend(fontsize=7)
    return _png(fig)


def _effort_figure(data: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    timed = [e for e in data["edits"] if e["lead_time"] is not None]
    ax.scatter([e["f"] for e in timed], [e["lead_time"] for e in timed], s=14)
    ax.set(xlabel="pre-annotation F", ylabel="seconds spent", title="Effort per task")
    ax.set_xlim(-0.02, 1.02)
    return _png(fig)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _side(name: str, side: dict[str, Any]) -> str:
    return (
        f"<tr><td>{name}</td><td>{side['n']}</td><td>{_num(side['mean'])}</td>"
        f"<td>{_num(side['low'])} - {_num(side['high'])}</td></tr>"
    )


def render_page(data: dict[str, Any]) -> str:
    stop = data["stop"]
    verdict = (
        "Stop: the far images are pre-annotated as well as the near ones"
        if stop["stop"]
        else "Keep labelling"
        if stop["enough_labels"]
        else "Too few labels to tell"
    )
    edits = "".join(
        f"<tr><td>{e['task']}</td><td>{_num(e['scaled_distance'])}</td><td>{_num(e['f'])}</td>"
        f"<td>{_num(e['tolerant_f'])}</td><td>{html.escape(str(e['model_version']))}</td>"
        f"<td>{_num(e['lead_time'])}</td></tr>"
        for e in data["edits"]
    )
    versions = "".join(
        f"<tr><td>{html.escape(str(v.get('version')))}</td><td>{_num(v.get('val_ods'))}</td>"
        f"<td>{_num(v.get('held_out_ods'))}</td><td>{_num(v.get('labels'))}</td>"
        f"<td>{html.escape(str(v.get('reason')))}</td></tr>"
        for v in data["versions"]
    )
    expected = data["remaining"]["expected_f"]["mean"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>crackal: project {data["project"]}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
.verdict{{font-size:1.3em;font-weight:bold}}</style></head><body>
<h1>crackal: project {data["project"]}</h1>
<p class="verdict" id="verdict">{verdict}</p>
<p id="rule">{html.escape(stop["rule"])}.</p>
<table id="stop-inputs"><tr><th>side</th><th>labels</th><th>mean F</th><th>95% interval</th></tr>
{_side("near", stop["near"])}{_side("far", stop["far"])}</table>
<p>Remaining queue: {data["remaining"]["tasks"]} tasks, expected pre-annotation F
<span id="expected-f">{_num(expected)}</span> (read off the curve's distance bins).</p>
<img id="curve" alt="live curve" src="{_curve_figure(data)}">
<img id="distances" alt="distances" src="{_distance_figure(data)}">
<img id="effort" alt="effort" src="{_effort_figure(data)}">
<h2>Model versions</h2>
<table id="versions"><tr><th>version</th><th>validation ODS</th><th>held-out ODS</th>
<th>labels</th><th>why</th></tr>{versions}</table>
<h2>Labels against their pre-annotations</h2>
<table id="edits"><tr><th>task</th><th>scaled distance</th><th>F</th><th>F (2 px)</th>
<th>version</th><th>seconds</th></tr>{edits}</table>
</body></html>"""

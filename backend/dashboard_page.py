"""The dashboard as server-rendered HTML pages: matplotlib figures inlined as PNG data URLs
or SVG (no scripts, no CDN: deployments are often offline) and the numbers as tables; the
map's pool points are SVG links to one page per task."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from backend.task_view import TaskView


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
    expected = data["remaining"]["expected_f"]["curve"]
    if expected:
        ax.plot(*zip(*expected, strict=True), "k--", label="expected F (score in Label Studio)")
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


def _map_svg(data: dict[str, Any]) -> str:
    """The pool's map as inline SVG: each pool point links to its drill-down page."""
    found = data["map"]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    train = [p for p in found["training"] if p["task"] is None]
    labelled = [p for p in found["training"] if p["task"] is not None]
    ax.scatter(
        [p["x"] for p in train],
        [p["y"] for p in train],
        s=10,
        marker="s",
        c="#9ecae1",
        label=f"training images ({len(train)})",
    )
    pool = found["pool"]
    colours = plt.get_cmap("tab10")
    points = ax.scatter(
        [p["x"] for p in pool],
        [p["y"] for p in pool],
        s=[40 if p["band"] else 16 for p in pool],
        c=[colours(p["cluster"] % 10) if p["cluster"] >= 0 else "#555555" for p in pool],
        edgecolors=["black" if p["band"] else "none" for p in pool],
        label=f"pool ({len(pool)}; black edge: band, colour: cluster, dark grey: noise)",
    )
    project = data["project"]
    points.set_urls([f"dashboard/task?project={project}&task={p['task']}" for p in pool])
    ax.scatter(
        [p["x"] for p in labelled],
        [p["y"] for p in labelled],
        s=36,
        marker="x",
        c="black",
        label=f"labelled tasks ({len(labelled)})",
    )
    ax.set(xticks=[], yticks=[], title=f"Map of the pool ({found['clusters']} clusters)")
    ax.legend(fontsize=7, loc="best")
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):  # text as text, not glyph paths
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _map_section(data: dict[str, Any]) -> str:
    found = data["map"]
    if found is None:
        return '<p id="map">No map yet: it is drawn when the project is scored.</p>'
    return (
        f'<div id="map">{_map_svg(data)}</div><p id="map-facts">{found["drawn"]} of '
        f"{found['points']} points drawn (t-SNE of the distances' PCA space), "
        f"{found['clusters']} DBSCAN clusters, {found['noise']} noise points; model "
        f"{html.escape(found['version'])}. Click a pool point to open it.</p>"
    )


def _below(data: dict[str, Any]) -> str:
    """The share of the queue where the curve is only a lower bound, when there is one."""
    expected = data["remaining"]["expected_f"]
    below = expected.get("nearer_than_labels") or 0
    if not below:
        return ""
    return (
        f'. <span id="lower-bound">{below} of them are nearer than every label (scaled '
        f"distance below {expected['nearest_label']:.2f}): F does not fall towards the "
        "training set, so for them the curve gives a lower bound: label a few near tasks "
        "to measure it</span>"
    )


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
<span id="expected-f">{_num(expected)}</span> (each task's read off a non-increasing fit of
F against distance; for a farthest-first queue Label Studio shows it as the prediction
score, sortable and filterable in the Data Manager, once 3 labels give the fit){_below(data)}.</p>
<img id="curve" alt="live curve" src="{_curve_figure(data)}">
<img id="distances" alt="distances" src="{_distance_figure(data)}">
<img id="effort" alt="effort" src="{_effort_figure(data)}">
<h2>Map of the pool</h2>
{_map_section(data)}
<h2>Model versions</h2>
<table id="versions"><tr><th>version</th><th>validation ODS</th><th>held-out ODS</th>
<th>labels</th><th>why</th></tr>{versions}</table>
<h2>Labels against their pre-annotations</h2>
<table id="edits"><tr><th>task</th><th>scaled distance</th><th>F</th><th>F (2 px)</th>
<th>version</th><th>seconds</th></tr>{edits}</table>
</body></html>"""


def render_task_page(view: TaskView) -> str:
    """One pool task: image and pre-annotation, Grad-CAM, nearest training images."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    axes[0].imshow(view.image)
    axes[0].set_title("image")
    axes[1].imshow(view.image)
    if view.mask is not None:
        overlay = np.zeros((*view.mask.shape, 4))
        overlay[view.mask] = (1, 0, 0, 0.7)
        axes[1].imshow(overlay)
    axes[1].set_title("pre-annotation" if view.mask is not None else "pre-annotation not cached")
    for ax in axes:
        ax.axis("off")
    shown = _png(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(view.image)
    ax.imshow(view.cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax.set_title("Grad-CAM of the crack logit")
    ax.axis("off")
    cam = _png(fig)
    count = max(1, len(view.nearest))
    fig, axes = plt.subplots(1, count, figsize=(2.4 * count, 2.6), squeeze=False)
    for ax, neighbour in zip(axes[0], view.nearest, strict=False):
        if neighbour.image is not None:
            ax.imshow(neighbour.image)
        ax.set_title(neighbour.name[-28:], fontsize=7)
        ax.axis("off")
    nearest = _png(fig)
    names = "".join(
        f"<li>{html.escape(n.name)}{' (' + html.escape(n.problem) + ')' if n.problem else ''}</li>"
        for n in view.nearest
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>crackal: task {view.task}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}</style></head><body>
<p><a href="../dashboard?project={view.project}">project {view.project}</a></p>
<h1>Task {view.task}</h1>
<p id="facts">scaled distance <span id="distance">{view.scaled_distance:.3f}</span> and
cluster <span id="cluster">{"-" if view.cluster is None else view.cluster}</span> (scoring by
{html.escape(view.scored_by)}); pre-annotation and Grad-CAM of {html.escape(view.version)}</p>
<img id="shown" alt="image and pre-annotation" src="{shown}">
<img id="cam" alt="Grad-CAM" src="{cam}">
<h2>Nearest training images</h2>
<ol id="nearest">{names}</ol>
<img id="nearest-images" alt="nearest training images" src="{nearest}">
</body></html>"""

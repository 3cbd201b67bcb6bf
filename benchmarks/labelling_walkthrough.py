"""What annotators see change: the pixel F of the pre-annotations a project receives after
0, 3 and 7 labels, labels taken in the queue's own order, one project per set, against a
real Label Studio, Redis, rq worker and backend on this machine.

For each set a fresh project holds all of its images. At each stage the annotator asks
Label Studio for the next task (`/api/projects/<id>/next`: the queue in the order of
`--strategy`, the shipped default unless named), paints the set's ground-truth mask and
submits; the backend retrains (3 labels reach its threshold; with fewer new labels the
script asks for a retrain, as a user can), judges the candidate on the project and
re-scores. The script waits for that, then reads every task's pre-annotation back from
Label Studio.

Printed per set and stage: the version serving the project and why, the wall-clock
seconds from the first label (and from the last) to the end of the retrain and re-score,
from the first label until Label Studio's queue follows a new version (its first page of
pre-annotations imported; only where a version was promoted), and the
pooled pixel F (and mean per-image F) of the pre-annotations on the tasks no stage
labelled (one fixed set per project, so stages compare). With `--idle-delay S` labelling
pauses after each stage's retrain until the idle job's thorough pass is done (a CPU
backend's second pass), and the stage is read again (`pass`: thorough). Results go to
`--out` as JSON after each set (a stop keeps the finished sets; a rerun skips them).

    .venv/bin/python benchmarks/labelling_walkthrough.py --registry REG \\
        [--sets gaps384 cfd large] [--labels 0 3 7] [--workdir DIR] [--out FILE] \\
        [--strategy kcenter] [--idle-delay 200]

`REG` holds the base model (e.g. the one `crackal demo` trained); it is copied, never
changed. Needs Label Studio in .venv-ls and redis-server (./scripts/setup-services).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image

from backend.brush import mask_result
from backend.label_config import parse_brush_target
from backend.last_retrain import read_last_retrain
from backend.prediction_label import labelled_version
from backend.settings import Settings
from crackal.demo import CONFIG, create_project, local_stack
from selection.images import list_images
from selection.queue_order import QUEUE_STRATEGIES
from training.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="+", default=["gaps384", "cfd", "large"])
    parser.add_argument("--labels", nargs="+", type=int, default=[0, 3, 7])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crackal-walkthrough"))
    parser.add_argument("--out", type=Path, default=Path("walkthrough.json"))
    parser.add_argument(
        "--strategy",
        default=Settings().strategy.value,
        choices=[q.value for q in QUEUE_STRATEGIES],
        help="the queue's order (default: the shipped one; session 9's figures: farthest)",
    )
    parser.add_argument("--label-studio", type=Path, default=REPO / ".venv-ls/bin/label-studio")
    parser.add_argument(
        "--idle-delay",
        type=float,
        help="CRACKAL_IDLE_DELAY: after each stage's retrain, wait for the idle job's "
        "thorough pass (a CPU backend's second pass) and read F again",
    )
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.sets:
        if name in done:
            if done[name].get("strategy", "farthest") != args.strategy:  # older: farthest
                raise SystemExit(f"{args.out} holds {name} under another order: use a new --out")
            print(f"{name}: done earlier, skipped")
            continue
        work = args.workdir / name
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(args.registry, work / "registry")
        done[name] = walk(args, name, work)
        args.out.write_text(json.dumps(done, indent=1))
        report(name, done[name])


def walk(args: argparse.Namespace, name: str, work: Path) -> dict[str, Any]:
    registry = Registry(work / "registry")
    images = list_images(args.data / name)
    stages = sorted({n for n in args.labels if n < len(images)})
    extra = {
        "CRACKAL_RETRAIN_THRESHOLD": "3",
        "CRACKAL_IDLE_DELAY": str(args.idle_delay or 86400),
        "CRACKAL_STRATEGY": args.strategy,
    }
    with local_stack(args.label_studio, work, registry, args.data, extra_env=extra) as stack:
        http = requests.Session()
        http.headers["Authorization"] = f"Token {stack.ls.token}"
        base = registry.current()
        pid = create_project(stack.ls, stack.backend, stack.auth, images, base, f"walk {name}")
        masks = {p.name: args.data / name / "masks" / f"{p.stem}.png" for p in images}
        target = parse_brush_target(CONFIG)
        labelled: list[int] = []
        seen: list[dict[str, Any]] = []
        for stage in stages:
            started = time.monotonic()
            before = read_last_retrain(registry.root, pid)
            shown_before = project_version(http, stack.ls.url, pid)
            while len(labelled) < stage:
                task = http.get(f"{stack.ls.url}/api/projects/{pid}/next", timeout=120).json()
                mask = np.asarray(Image.open(masks[file_name(task)])) > 127
                body = {"result": [mask_result(mask, target)], "lead_time": 30.0}
                body["parent_prediction"] = newest_prediction(task)
                http.post(
                    f"{stack.ls.url}/api/tasks/{task['id']}/annotations", json=body, timeout=120
                ).raise_for_status()
                labelled.append(task["id"])
            last_label = time.monotonic()
            if stage:
                time.sleep(5)  # the webhooks of the last labels
                idle = not busy(stack.backend, stack.auth, pid)
                if idle and read_last_retrain(registry.root, pid) == before:
                    requests.post(  # fewer new labels than the threshold: ask, as a user can
                        f"{stack.backend}/train", json={"project": pid}, auth=stack.auth, timeout=30
                    ).raise_for_status()
                switched = wait_retrained(
                    stack.backend, stack.auth, registry.root, pid, before,
                    lambda was=shown_before: project_version(http, stack.ls.url, pid) != was,
                )  # fmt: skip
            retrain_s = time.monotonic() - started if stage else 0.0
            after_last_s = time.monotonic() - last_label if stage else 0.0
            trained = read_last_retrain(registry.root, pid)
            seen.append(
                {
                    "labels": stage,
                    "labelled": list(labelled),
                    "pass": "quick" if stage else "base",
                    "serving": registry.current(pid),
                    "decision": trained.get("decision") if stage else "base model",
                    "seconds": round(retrain_s, 1),
                    "after_last_label": round(after_last_s, 1),
                    # first label -> Label Studio serving a new version (its queue ordered)
                    "new_version_served": None
                    if not stage or switched is None
                    else round(switched - started, 1),
                    "masks": predicted_masks(http, stack.ls.url, pid),
                }
            )
            print(f"{name} {stage} labels: {seen[-1]['serving']} ({seen[-1]['decision']})")
            if stage and args.idle_delay:
                seen.append(thorough_stage(stack, http, registry, pid, seen[-1], started))
                print(f"{name} {stage} labels, thorough: {seen[-1]['serving']} "
                      f"({seen[-1]['decision']})")  # fmt: skip
    never = [t for t in seen[-1]["masks"] if int(t) not in labelled]
    files = {str(t): m for t, m in seen[-1]["masks"].items()}
    for stage in seen:
        stage.update(f_scores(stage.pop("masks"), never, files, masks))
    return {
        "images": len(images),
        "evaluated": len(never),
        "strategy": args.strategy,
        "stages": seen,
    }


def thorough_stage(
    stack: Any,
    http: requests.Session,
    registry: Registry,
    pid: int,
    quick: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """The stage again once labelling paused long enough for the idle job's thorough pass
    (the last retrain's preset is `thorough`) and no job of the project runs."""
    deadline = time.monotonic() + 2700
    while time.monotonic() < deadline:
        trained = read_last_retrain(registry.root, pid)
        if trained.get("preset") == "thorough" and not busy(stack.backend, stack.auth, pid):
            return {
                **{k: quick[k] for k in ("labels", "labelled")},
                "pass": "thorough",
                "serving": registry.current(pid),
                "decision": trained.get("decision"),
                "seconds": round(time.monotonic() - started, 1),  # from the stage's first label
                "masks": predicted_masks(http, stack.ls.url, pid),
            }
        time.sleep(2)
    raise TimeoutError(f"project {pid}: no thorough pass within 45 minutes")


def file_name(task: dict[str, Any]) -> str:
    """The uploaded file's original name (Label Studio prefixes 8 characters and a dash)."""
    return Path(task["data"]["image"]).name.split("-", 1)[1]


def newest_prediction(task: dict[str, Any]) -> int | None:
    ours = [p for p in task.get("predictions") or [] if labelled_version(p.get("model_version"))]
    return max(ours, key=lambda p: p.get("created_at") or "")["id"] if ours else None


def wait_retrained(
    backend: str,
    auth: tuple[str, str],
    registry: Path,
    pid: int,
    before: dict[str, Any],
    switched: Callable[[], bool],
) -> float | None:
    """Until the project's retrain recorded a new decision and no job of it is queued or
    running (the re-score that follows a retrain included). Returns when (`time.monotonic`,
    to about a second) `switched` first held, or None if it never did."""
    deadline = time.monotonic() + 1800
    seen: float | None = None
    while time.monotonic() < deadline:
        if seen is None and switched():
            seen = time.monotonic()
        if not busy(backend, auth, pid) and read_last_retrain(registry, pid) != before:
            return seen
        time.sleep(1)
    raise TimeoutError(f"project {pid}: no retrain within 30 minutes")


def project_version(http: requests.Session, url: str, pid: int) -> str | None:
    """The model version whose predictions Label Studio's queue follows."""
    return http.get(f"{url}/api/projects/{pid}", timeout=60).json().get("model_version")


def busy(backend: str, auth: tuple[str, str], pid: int) -> bool:
    """Whether a job of the project is queued or running."""
    jobs = requests.get(f"{backend}/health", auth=auth, timeout=30).json()["jobs"]
    return any(k.endswith(f":{pid}") for k in jobs["queued"] + jobs["running"])


def predicted_masks(http: requests.Session, url: str, pid: int) -> dict[str, dict[str, Any]]:
    """Task id -> its crackal pre-annotation (file name, RLE and size) as Label Studio has it."""
    data = http.get(
        f"{url}/api/tasks",
        params={"project": pid, "page_size": 10000, "fields": "all"},
        timeout=300,
    ).json()
    out = {}
    for task in data["tasks"] if isinstance(data, dict) else data:
        ours = [p for p in task["predictions"] if labelled_version(p.get("model_version"))]
        if ours:
            value = max(ours, key=lambda p: p.get("created_at") or "")["result"][0]
            out[str(task["id"])] = {
                "file": file_name(task),
                "rle": value["value"]["rle"],
                "shape": [value["original_height"], value["original_width"]],
            }
    return out


def f_scores(
    predicted: dict[str, dict[str, Any]],
    tasks: list[str],
    files: dict[str, dict[str, Any]],
    masks: dict[str, Path],
) -> dict[str, float]:
    """Pooled pixel F and mean per-image F of the pre-annotations of `tasks`."""
    tp = fp = fn = 0
    per_image = []
    for t in tasks:
        truth = np.asarray(Image.open(masks[files[t]["file"]])) > 127
        h, w = predicted[t]["shape"]
        shown = decode_rle(predicted[t]["rle"]).reshape(h, w, 4)[..., 3] > 0
        a, b, c = (
            int((shown & truth).sum()),
            int((shown & ~truth).sum()),
            int((~shown & truth).sum()),
        )
        tp, fp, fn = tp + a, fp + b, fn + c
        per_image.append(2 * a / (2 * a + b + c) if a + b + c else 1.0)
    return {
        "pooled_f": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "mean_image_f": float(np.mean(per_image)),
    }


def report(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {result['images']} images, F on the {result['evaluated']} never labelled")
    print(
        "labels  pass      pooled F  mean image F  seconds  after last  new served  serving  "
        "decision"
    )
    for s in result["stages"]:
        # absent from results written before they were timed
        after, served = s.get("after_last_label"), s.get("new_version_served")
        print(
            f"{s['labels']:6d}  {s.get('pass', ''):8s}  {s['pooled_f']:8.3f}  "
            f"{s['mean_image_f']:12.3f}  "
            f"{s['seconds']:7.0f}  {'-' if after is None else f'{after:10.0f}':>10s}  "
            f"{'-' if served is None else f'{served:10.0f}':>10s}  "
            f"{s['serving']:7s}  {s['decision']}"
        )


if __name__ == "__main__":
    main()

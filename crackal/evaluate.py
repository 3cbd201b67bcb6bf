"""`crackal evaluate`: ODS / OIS / AP of a registry version on labelled sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from selection.report import write_json
from training.data import find_samples, load
from training.evaluate import evaluate
from training.overlays import worst_overlays
from training.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model version on sets with masks")
    p.add_argument("--registry", required=True, type=Path, metavar="DIR")
    p.add_argument("--version", default="current", help="current, latest or vN")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        type=Path,
        metavar="DIR",
        help="a set with images/ and masks/ (repeatable)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="report folder (default: reports/evaluate-<version>)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="pixel tolerance reported beside the exact scores (default: 2)",
    )
    p.add_argument("--worst", type=int, default=6, help="overlays of the N worst images per set")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    loaded = registry.load(args.version)
    sets = {folder.name: find_samples(folder) for folder in args.data}
    out = args.out or Path("reports") / f"evaluate-{loaded.version}"
    per_image, results = [], {}
    for name, samples in sets.items():
        items = load(samples, desc=f"load {name}")
        ev = evaluate(loaded.model, loaded.encoder, items, args.tolerance, desc=f"eval {name}")
        results[name] = ev.scores.as_dict()
        if ev.tolerant:
            results[name][f"ods_tolerance_{args.tolerance:g}px"] = ev.tolerant.ods
        per_image += [
            {"set": name, "image": n, "f_at_ods": float(f)}
            for n, f in zip(ev.names, ev.scores.per_image_f, strict=True)
        ]
        worst = np.argsort(ev.scores.per_image_f, kind="stable")[: args.worst]
        worst_overlays(
            loaded, [items[i] for i in worst], ev.scores.ods_threshold, out / f"worst_{name}.png"
        )
    write_json(out / "metrics.json", {"version": loaded.version, "sets": results})
    with open(out / "per_image.csv", "w") as fh:
        fh.write("set,image,f_at_ods\n")
        fh.writelines(f"{r['set']},{r['image']},{r['f_at_ods']!r}\n" for r in per_image)
    print(f"{loaded.version}:")
    print(json.dumps(results, indent=2))
    print(f"report written to {out}/")
    return 0

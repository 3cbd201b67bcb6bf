"""A walk-through's versions at other thresholds: what the served threshold cost.

Reads a `labelling_walkthrough.py` result (`--walkthrough`, one set) and the registry its
backend wrote (`--registry`, under its `--workdir`), and evaluates each named version
(torch, on this machine) on the set's images that no stage labelled: the pooled ODS with
its threshold, and the pooled F at each of `--thresholds` and at the version's own.
Task ids are the set's images in file order, from 1 (as the walk-through imports them).

    .venv/bin/python benchmarks/walkthrough_thresholds.py --walkthrough W.json \\
        --registry WORKDIR/gaps384/registry --versions v3 v5 [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.data import find_samples, load
from training.evaluate import evaluate
from training.metrics import pooled_f, scores
from training.registry import Registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--walkthrough", type=Path, required=True)
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--versions", nargs="+", required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    )
    args = p.parse_args()
    ((name, result),) = json.loads(args.walkthrough.read_text()).items()
    labelled = {t for stage in result["stages"] for t in stage["labelled"]}
    items = load(find_samples(args.data / name))
    never = [item for task, item in enumerate(items, start=1) if task not in labelled]
    registry = Registry(args.registry)
    print(f"{name}: {len(never)} images never labelled")
    for version in args.versions:
        loaded = registry.load(version)
        counts = evaluate(loaded.model.cpu(), loaded.encoder, never).counts
        best = scores(counts)
        at = "  ".join(f"{t:.2f}: {pooled_f(counts, t):.3f}" for t in args.thresholds)
        print(
            f"{version}: ODS {best.ods:.3f} at {best.ods_threshold:.2f}; own "
            f"{loaded.threshold:.2f}: {pooled_f(counts, loaded.threshold):.3f}; {at}"
        )


if __name__ == "__main__":
    main()

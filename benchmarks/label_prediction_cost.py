"""What predicting a project's labelled images again costs: the work the threshold refit
did after every retrain until it reused the counts the fit had measured (session 20).

Loads a version from a registry (e.g. one a `labelling_walkthrough.py` backend wrote under
its `--workdir`) and evaluates it on a labels folder the retrain exported
(`<registry>/labels/project-<id>`), `--repeat` times; prints the seconds of each run (the
model's load, the prediction at full size and the counts), torch on this machine.

    .venv/bin/python benchmarks/label_prediction_cost.py --registry WORKDIR/large/registry \\
        --version v2 --labels WORKDIR/large/registry/labels/project-1 [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from training.data import find_samples, load
from training.evaluate import evaluate
from training.registry import Registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    items = load(find_samples(args.labels))
    sizes = sorted({f"{i.image.shape[1]} x {i.image.shape[0]}" for i in items})
    print(f"{len(items)} labelled images ({', '.join(sizes)}), version {args.version}")
    registry = Registry(args.registry)
    for run in range(1, args.repeat + 1):
        started = time.perf_counter()
        loaded = registry.load(args.version)
        evaluate(loaded.model, loaded.encoder, items)
        seconds = time.perf_counter() - started
        print(f"run {run}: {seconds:.1f} s ({seconds / len(items):.1f} s an image)")


if __name__ == "__main__":
    main()

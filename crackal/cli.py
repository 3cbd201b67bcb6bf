"""The `crackal` command: one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crackal import (
    __version__,
    adapt,
    demo,
    evaluate,
    models,
    report,
    score,
    serve,
    simulate,
    status,
    train,
    worker,
)
from selection.images import DatasetError
from training.registry import RegistryError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crackal", description="Active-learning labelling assistant for crack segmentation."
    )
    parser.add_argument("--version", action="version", version=f"crackal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    score.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    adapt.add_parser(sub)
    simulate.add_parser(sub)
    models.add_parser(sub)
    serve.add_parser(sub)
    worker.add_parser(sub)
    status.add_parser(sub)
    report.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (DatasetError, RegistryError, ValueError) as exc:
        print(f"crackal {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crackal {args.command}: interrupted", file=sys.stderr)
        return 130

"""`crackal models`: list the registry's versions, switch or roll back a line: the shared
base model's, or with --project a project's own."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model versions, set or roll back the current one")
    p.add_argument("--registry", required=True, type=Path, metavar="DIR")
    p.add_argument("action", nargs="?", choices=("list", "use", "rollback"), default="list")
    p.add_argument("version", nargs="?", help="for use (required) and rollback (optional)")
    p.add_argument(
        "--project", type=int, help="a Label Studio project's line (default: the shared one)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    if args.action == "use":
        if not args.version:
            raise ValueError("models use needs a VERSION")
        registry.set_current(args.version, reason="crackal models use", project=args.project)
    elif args.action == "rollback":
        registry.rollback(args.version, project=args.project)
    current = registry.current(args.project)
    print(f"{'':2}{'version':<9}{'parent':<9}{'val ODS':>9}{'threshold':>11}  created")
    for name in registry.versions():
        meta = registry.meta(name)
        ods = meta.get("metrics", {}).get("val", {}).get("ods")
        print(
            f"{'*' if name == current else ' ':<2}{name:<9}{meta.get('parent') or '-':<9}"
            f"{'-' if ods is None else f'{ods:.4f}':>9}{meta.get('threshold', 0.5):>11.2f}  "
            f"{meta.get('created', '')}"
        )
    lines = {p: registry.own_current(p) for p in registry.projects()}
    for project, version in lines.items():
        print(f"project {project}: {version} (its own line)")
    return 0

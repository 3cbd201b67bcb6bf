"""`crackal report`: a project's dashboard as files (dashboard.html, dashboard.json), the
same page and numbers that `GET /dashboard?project=N` serves."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.dashboard import dashboard_data
from backend.dashboard_page import render_page


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a project's dashboard (HTML and JSON)")
    p.add_argument("--registry", required=True, type=Path, metavar="DIR")
    p.add_argument("--project", required=True, type=int, help="the Label Studio project id")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = dashboard_data(args.registry, args.project)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dashboard.json").write_text(json.dumps(data, indent=1))
    (args.out / "dashboard.html").write_text(render_page(data))
    stop = data["stop"]
    print(
        f"project {args.project}: {len(data['edits'])} labels against their pre-annotations; "
        f"near F {stop['near']['mean']}, far F {stop['far']['mean']}, stop: {stop['stop']}"
    )
    print(f"wrote {args.out / 'dashboard.html'} and {args.out / 'dashboard.json'}")
    return 0

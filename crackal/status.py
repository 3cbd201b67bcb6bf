"""`crackal status`: what a running backend serves and what its jobs are doing."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import requests

from backend.project_threshold import RULE, threshold_for


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="current model version, queued/running jobs, last results")
    p.add_argument(
        "--url",
        default=os.environ.get("CRACKAL_URL", "http://127.0.0.1:9090"),
        help="the backend's address (default: $CRACKAL_URL or http://127.0.0.1:9090)",
    )
    p.set_defaults(run=run)


def threshold_line(record: Any, serving: str | None) -> str | None:
    """What status says of a project's mask threshold decision (None: none recorded for the
    serving version). Read with the backend's own rule, so odd values are not trusted."""
    if not isinstance(record, dict) or record.get("version") != serving:
        return None
    value = threshold_for(record, serving)
    labels, reason = record.get("labels"), record.get("reason", "not refitted")
    if value is not None:
        return f"  mask threshold {value:.2f} after {labels} labels ({reason})"
    if record.get("rule") != RULE:
        reason = "a decision by an earlier release's rule, not used"
    return f"  mask threshold: the version's own ({reason})"


def run(args: argparse.Namespace) -> int:
    user, password = os.environ.get("BASIC_AUTH_USER"), os.environ.get("BASIC_AUTH_PASS")
    auth = (user, password) if user and password else None
    try:
        health = requests.get(f"{args.url.rstrip('/')}/health", timeout=10, auth=auth).json()
    except (requests.RequestException, ValueError) as exc:
        raise ValueError(f"no backend answering at {args.url} ({exc.__class__.__name__})") from None
    if "jobs" not in health:
        raise ValueError(
            f"the backend at {args.url} is up but shows details only with its credentials: "
            "set BASIC_AUTH_USER and BASIC_AUTH_PASS"
        )
    jobs = health.get("jobs", {})
    print(f"model version: {health.get('model_version')}")
    val = (health.get("metrics") or {}).get("val") or {}
    if val:
        print(f"validation ODS: {val.get('ods'):.4f} (threshold {val.get('ods_threshold')})")
    for name, problem in (health.get("damaged") or {}).items():
        print(f"DAMAGED version {name}: {problem}")
    for pid, view in sorted((health.get("projects") or {}).items(), key=lambda kv: int(kv[0])):
        line = "its own line" if view.get("own_line") else "the shared base model"
        print(f"project {pid}: serving {view.get('serving')} ({line})")
        said = threshold_line(view.get("threshold"), view.get("serving"))
        if said:
            print(said)
        trained = view.get("last_trained")
        if trained:
            preset = f" ({trained['preset']})" if trained.get("preset") else ""
            print(f"  last retrain{preset}: {trained.get('version')}: {trained.get('decision')}")
        for kind, count in sorted((view.get("skipped_counts") or {}).items()):
            print(f"  skipped {count} x {kind}")
        for what in ("skipped_tasks", "skipped_labels"):
            for tid, reason in sorted((view.get(what) or {}).items()):
                print(f"    {what.removeprefix('skipped_')[:-1]} {tid}: {reason}")
    print(
        f"jobs ({jobs.get('backend')}): queued {jobs.get('queued')}, running {jobs.get('running')}"
    )
    for key, record in sorted((jobs.get("last") or {}).items()):
        where = f", attempt {record['attempt']}" if record.get("attempt") else ""
        if record.get("host"):
            where += f", on {record['host']} pid {record.get('pid')}"
        print(
            f"  {key}: {record.get('state')}{where}"
            + (f" - {record['error']}" if record.get("error") else "")
        )
        if record.get("result"):
            print("    " + json.dumps(record["result"], default=str)[:300])
    return 0

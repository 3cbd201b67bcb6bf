"""`crackal status`: what a running backend serves and what its jobs are doing."""

from __future__ import annotations

import argparse
import json
import os

import requests


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="current model version, queued/running jobs, last results")
    p.add_argument(
        "--url",
        default=os.environ.get("CRACKAL_URL", "http://127.0.0.1:9090"),
        help="the backend's address (default: $CRACKAL_URL or http://127.0.0.1:9090)",
    )
    p.set_defaults(run=run)


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
        own = view.get("threshold") or {}
        if own.get("version") == view.get("serving"):
            value, labels = own.get("threshold"), own.get("labels")
            if own.get("in_use"):
                print(f"  mask threshold {value:.2f} after {labels} labels ({own.get('reason')})")
            elif isinstance(value, int | float):
                print(f"  mask threshold: the version's own ({value:.2f} was chosen by an "
                      "earlier release's rule, not used)")  # fmt: skip
            else:
                print(f"  mask threshold: the version's own ({own.get('reason', 'not refitted')})")
        trained = view.get("last_trained")
        if trained:
            print(f"  last retrain: {trained.get('version')}: {trained.get('decision')}")
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

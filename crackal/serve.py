"""`crackal serve`: the Label Studio ML backend (gunicorn; WORKERS processes, THREADS threads)."""

from __future__ import annotations

import argparse
import logging

from gunicorn.app.base import BaseApplication

from backend.app import create_app
from backend.settings import Settings


class _Gunicorn(BaseApplication):
    """Builds the app inside the worker process, after the fork: the job thread, the model
    and the HTTP sessions must belong to the process that serves."""

    def __init__(self, settings: Settings, options: dict) -> None:
        self.crackal_settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app(self.crackal_settings)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the Label Studio ML backend (configured by env)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--threads", type=int, help="request threads (default: THREADS or 4)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve without authentication (a network you trust only; same as CRACKAL_INSECURE=1)",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=120,
        help="seconds before a stuck request is aborted (default: 120)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()  # read (and checked) before serving
    settings.insecure = settings.insecure or args.insecure
    if not settings.basic_auth_user and not settings.insecure:
        raise SystemExit(
            "crackal serve: no authentication configured. Set BASIC_AUTH_USER and "
            "BASIC_AUTH_PASS (and the same under the model's 'Use basic auth' in Label "
            "Studio), or pass --insecure on a network you trust."
        )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # Without Redis one worker process: the model, the caches and the job thread live in it.
    _Gunicorn(
        settings,
        {
            "bind": f"{args.host}:{args.port}",
            "workers": settings.workers,
            "threads": args.threads or settings.threads,
            "timeout": args.timeout,
            "accesslog": "-",
        },
    ).run()
    return 0

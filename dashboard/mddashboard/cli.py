"""`modeldeploy dashboard`: the read-only (unless --allow-actions) web dashboard over the Kubernetes API.

    modeldeploy dashboard [--kubeconfig K] [--context C] [-n NS ...] [--prometheus-url URL]
                          [--host 127.0.0.1] [--port 8765] [--allow-actions [--identity-header H]]

Prints `dashboard: http://HOST:PORT/` once it listens (port 0 picks a free one) and serves until
SIGINT/SIGTERM. Exit 2 on a configuration that would let a request act under a name it did not prove.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction) -> None:
    """`modeldeploy dashboard` (entry point ``dashboard`` in group ``modeldeploy.commands``)."""
    p = sub.add_parser("dashboard", help="web dashboard of every ModelDeployment's rollout (read-only by default)")
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig (default: in-cluster, else $KUBECONFIG / ~/.kube/config)"
    )
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument(
        "-n", "--namespace", action="append", default=None, dest="namespaces",
        help="watch this namespace (repeatable; default: every namespace)",
    )  # fmt: skip
    p.add_argument(
        "--prometheus-url", default=os.environ.get("MODELDEPLOY_PROMETHEUS_URL"),
        help="Prometheus the charts query (default $MODELDEPLOY_PROMETHEUS_URL; none: no metric charts)",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)")
    p.add_argument(
        "--allow-actions", action="store_true",
        help="show promote/abort/pause/resume/retry buttons (they set modeldeploy.io/action like kubectl modeldeploy)",
    )  # fmt: skip
    p.add_argument(
        "--identity-header", default=None, metavar="HEADER",
        help="trust this request header for who acts (set by your authenticating proxy, e.g. X-Forwarded-User); "
        "without it actions are recorded as the local user and only a loopback --host is allowed",
    )  # fmt: skip
    p.add_argument("--series-interval", type=float, default=5.0, help="seconds between metric chart refreshes")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import asyncio

    from mddashboard.server import Settings, check_settings

    settings = Settings(
        host=args.host,
        port=args.port,
        allow_actions=args.allow_actions,
        identity_header=args.identity_header,
        local_user=None if args.identity_header else (os.environ.get("USER") or getpass.getuser()),
        series_interval=args.series_interval,
    )
    try:
        check_settings(settings)
    except ValueError as exc:
        print(f"modeldeploy dashboard: {exc}", file=sys.stderr)
        return 2
    from mddashboard.app import run

    try:
        return asyncio.run(
            run(
                settings,
                kubeconfig=args.kubeconfig,
                context=args.context,
                namespaces=args.namespaces,
                prometheus_url=args.prometheus_url,
            )
        )
    except KeyboardInterrupt:
        return 0

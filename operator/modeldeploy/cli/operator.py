"""`modeldeploy operator`: run the kopf operator in this process (what the operator image runs)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operator", help="run the ModelDeployment operator (kopf)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    p.add_argument(
        "--liveness", default=None, metavar="URL", help="kopf health endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    import modeldeploy.main  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    namespaces = args.namespace or []
    asyncio.run(
        kopf.operator(
            namespaces=namespaces,
            clusterwide=bool(args.all_namespaces or not namespaces),
            liveness_endpoint=args.liveness,
        )
    )
    return 0

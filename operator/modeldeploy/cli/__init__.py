"""The one command-line tool, ``modeldeploy``: every user-facing command hangs off it.

Each command group lives in its own module with a ``register(subparsers)`` function; this module
only assembles them. Commands import their heavy dependencies (TensorFlow, kopf, the sandbox)
inside their handlers, so ``modeldeploy validate`` starts fast and the operator never loads TF.

    modeldeploy validate FILE...        offline checks: CRD schema, CEL rules, semantic rules
    modeldeploy render FILE             every object the operator would create, as YAML
    modeldeploy operator                run the operator (kopf) in this process
    modeldeploy sandbox run SCENARIO    the whole platform on one machine (see docs/scenarios.md)
    modeldeploy demo                    good + bad rollout in the sandbox with a live view
    modeldeploy model ...               train / evaluate / export / quantize / gradcam
    modeldeploy evaluator run           online golden-set evaluator service
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order they appear in --help. A module that cannot be
# imported (an optional extra that is not installed) is skipped, not fatal.
COMMAND_MODULES = (
    "modeldeploy.cli.manifests",
    "modeldeploy.cli.operator",
    "modeldeploy.cli.sandbox",
    "xraymodel.cli",
    "xraymodel.evaluator.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy",
        description="ModelDeploy: accuracy- and metric-gated rollouts of TF Serving models on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # optional part not installed or not written yet
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # python -m modeldeploy.cli
    sys.exit(main())

"""The one ``modeldeploy`` command. Each installed ModelDeploy distribution contributes its command groups.

A command group is an entry point in the group ``modeldeploy.commands`` (ENTRY_POINT_GROUP): the
entry point's name is the subcommand, its value a ``register(subparsers)`` function that adds
exactly that subcommand with ``subparsers.add_parser(name, ...)``. A distribution registers its
groups in its pyproject.toml:

    [project.entry-points."modeldeploy.commands"]
    dashboard = "mddashboard.cli:register"

Handlers import their heavy dependencies (kopf, TensorFlow, the sandbox) inside, so ``--help`` and
``modeldeploy validate`` stay fast. A known group whose distribution is not installed (PROVIDERS)
answers with the distribution to install and exit code 2, instead of argparse's "invalid choice":

    operator distribution (modeldeploy, `pip install .`)         validate, render, operator
    sandbox distribution (modeldeploy-sandbox, sandbox/)          sandbox, demo
    model distribution (modeldeploy-model, model/)                model (TensorFlow: its [ml] extra), evaluator
    dashboard distribution (modeldeploy-dashboard, dashboard/)    dashboard
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

ENTRY_POINT_GROUP = "modeldeploy.commands"
EXIT_NOT_INSTALLED = 2


@dataclass(frozen=True)
class Provider:
    """Where a command group comes from (for the message when it is missing)."""

    distribution: str
    install: str  # the command that installs it, from a ModelDeploy checkout


OPERATOR = Provider("modeldeploy", "pip install .")
SANDBOX = Provider("modeldeploy-sandbox", "pip install '.[sandbox]' ./model ./sandbox")
MODEL = Provider("modeldeploy-model", "pip install '.[ml]' ./model ./model/tensorflow-is-tensorflow-cpu")
EVALUATOR = Provider("modeldeploy-model", "pip install '.[model]' ./model")
DASHBOARD = Provider(
    "modeldeploy-dashboard",
    "pip install '.[dashboard]' ./dashboard (after `npm ci && npm run build` in dashboard/frontend)",
)

# Known groups in --help order. A new optional group adds its line here to get the install hint;
# an unlisted one still works when installed (listed after these, alphabetically).
PROVIDERS: dict[str, Provider] = {
    "validate": OPERATOR,
    "render": OPERATOR,
    "operator": OPERATOR,
    "sandbox": SANDBOX,
    "demo": SANDBOX,
    "model": MODEL,
    "evaluator": EVALUATOR,
    "dashboard": DASHBOARD,
}


def installed_groups() -> dict[str, metadata.EntryPoint]:
    """The command groups of every installed distribution, by subcommand name."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # the same distribution may be visible twice (editable + path)
    return found


def missing_message(name: str) -> str:
    provider = PROVIDERS[name]
    return (
        f"modeldeploy {name}: not installed. It comes with the {provider.distribution} distribution: "
        f"from a ModelDeploy checkout run `{provider.install}` (or `make setup` for everything)."
    )


def _order(name: str) -> tuple[int, str]:
    known = list(PROVIDERS)
    return (known.index(name) if name in known else len(known), name)


def _broken(name: str, exc: BaseException) -> Callable[[argparse._SubParsersAction], None]:
    """A stand-in for a group whose module cannot be imported: it says why, instead of breaking every command."""

    def register(sub: argparse._SubParsersAction) -> None:
        p = sub.add_parser(name, help=f"(cannot be loaded: {exc})", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda _args: _fail(f"modeldeploy {name}: cannot be loaded: {exc!r}"))

    return register


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_NOT_INSTALLED


def build_parser(groups: dict[str, metadata.EntryPoint] | None = None) -> argparse.ArgumentParser:
    groups = installed_groups() if groups is None else groups
    missing = [name for name in PROVIDERS if name not in groups]
    epilog = (
        ("not installed: " + ", ".join(missing) + " (run `modeldeploy NAME` to see what to install)")
        if missing
        else None
    )
    parser = argparse.ArgumentParser(
        prog="modeldeploy",
        description="ModelDeploy: accuracy- and metric-gated rollouts of TF Serving models on Kubernetes.",
        epilog=epilog,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(groups, key=_order):
        try:
            register = groups[name].load()
        except ImportError as exc:
            register = _broken(name, exc)
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = installed_groups()
    if argv and argv[0] in PROVIDERS and argv[0] not in groups:
        return _fail(missing_message(argv[0]))
    args = build_parser(groups).parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # python -m mdcommon.cli
    sys.exit(main())

"""`modeldeploy validate` and `modeldeploy render`: what the operator would say and do, offline.

validate FILE...   every ModelDeployment in the files (multi-document YAML, or - for stdin) checked
                   against the CRD schema, its CEL rules and the semantic rules; exit 1 with one
                   line per problem naming the field (`FILE: spec.analysis.metrics[0]: ...`).
render FILE        every object the operator would create for it, as YAML (what a GitOps diff
                   shows); --canary/--weight preview the objects during a rollout step,
                   --cluster-domain renders the hosts of a cluster with another DNS domain.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import yaml

from modeldeploy import GROUP, KIND


def register_validate(sub: argparse._SubParsersAction) -> None:
    """`modeldeploy validate` (entry point ``validate`` in group ``modeldeploy.commands``)."""
    p = sub.add_parser("validate", help="check ModelDeployment manifests offline (schema, CEL, semantic rules)")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files (multi-document allowed; - = stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.set_defaults(func=cmd_validate)


def register_render(sub: argparse._SubParsersAction) -> None:
    """`modeldeploy render` (entry point ``render`` in group ``modeldeploy.commands``)."""
    p = sub.add_parser("render", help="print every object the operator would create for a ModelDeployment")
    p.add_argument("file", metavar="FILE", help="ModelDeployment YAML (- = stdin)")
    p.add_argument("--namespace", "-n", help="namespace when the manifest has none (default: default)")
    p.add_argument("--stable", type=int, help="stable version (default: spec.model.version)")
    p.add_argument("--canary", type=int, help="preview a rollout of this version")
    p.add_argument("--weight", type=int, default=None, help="canary weight in percent (Canary strategy)")
    p.add_argument("--cluster-domain", default=None, metavar="DOMAIN",
                   help="the cluster's DNS domain, as the operator's MODELDEPLOY_CLUSTER_DOMAIN "
                        "(default: that variable, else cluster.local)")  # fmt: skip
    p.set_defaults(func=cmd_render)


def _documents(path: str) -> Iterator[tuple[str, object]]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for i, doc in enumerate(docs):
        yield (path if len(docs) == 1 else f"{path}[{i}]"), doc


def cmd_validate(args: argparse.Namespace) -> int:
    from modeldeploy.validation import validate_manifest

    failed = False
    for path in args.files:
        try:
            docs = list(_documents(path))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}".replace("\n", " "))
            failed = True
            continue
        for where, doc in docs:
            if isinstance(doc, dict) and not str(doc.get("apiVersion", GROUP)).startswith(GROUP):
                if not args.quiet:
                    print(f"{where}: skipped ({doc.get('kind')})")
                continue
            result = validate_manifest(doc)
            if result.ok:
                if not args.quiet:
                    print(f"{where}: valid")
                continue
            failed = True
            for problem in result.problems:
                print(f"{where}: {problem}")
    return 1 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    from modeldeploy.plans import Target
    from modeldeploy.render import desired_objects
    from modeldeploy.rollout import plans
    from modeldeploy.validation import validate_manifest

    docs = [d for _, d in _documents(args.file) if isinstance(d, dict) and d.get("kind") == KIND]
    if len(docs) != 1:
        print(f"{args.file}: expected exactly one ModelDeployment, found {len(docs)}", file=sys.stderr)
        return 2
    doc = docs[0]
    result = validate_manifest(doc)
    if not result.ok:
        for problem in result.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    spec = result.spec
    assert spec is not None  # a valid manifest has a typed spec
    meta = doc["metadata"]
    namespace = meta.get("namespace") or args.namespace or "default"
    status: dict = {"stableVersion": args.stable or spec.model.version, "strategy": spec.strategy.type}
    if args.canary is not None:
        weight = (
            args.weight
            if args.weight is not None
            else (spec.strategy.canary.steps[0] if spec.strategy.type == "Canary" else 0)
        )
        status.update({"canaryVersion": args.canary, "canaryWeight": weight, "rollout": {"readyAt": "preview"}})
    versions, route = plans(spec, status)
    from modeldeploy.names import DEFAULT_CLUSTER_DOMAIN, check_cluster_domain
    from modeldeploy.settings import CLUSTER_DOMAIN_ENV

    raw_domain = args.cluster_domain or os.environ.get(CLUSTER_DOMAIN_ENV) or DEFAULT_CLUSTER_DOMAIN
    try:
        domain = check_cluster_domain(raw_domain)
    except ValueError as exc:
        print(f"--cluster-domain: {exc}", file=sys.stderr)
        return 2
    target = Target(name=meta["name"], namespace=namespace, spec=spec, cluster_domain=domain)
    objects = desired_objects(target, list(versions), route)
    sys.stdout.write(dump_yaml(objects))
    return 0


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the TF Serving config files) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_yaml(objects: list[dict]) -> str:
    return yaml.dump_all(objects, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=120)

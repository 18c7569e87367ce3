"""`kubectl modeldeploy` — the kubectl plugin for manual control and for reading a rollout.

    kubectl modeldeploy promote NAME [--full]   advance one step now (--full: promote to 100% now)
    kubectl modeldeploy abort NAME              roll back to the stable version now
    kubectl modeldeploy pause|resume NAME       freeze / continue progression (rollback on breach still fires)
    kubectl modeldeploy retry NAME              roll out a rolled-back or failed version again
    kubectl modeldeploy status NAME             phase, versions, weight, each metric against its bounds
    kubectl modeldeploy history NAME [-o json]  the recent decisions: who/what promoted or rolled back, and why
    kubectl modeldeploy audit verify NAME       check the decision record's hash chain; names the first broken record
    kubectl modeldeploy audit show NAME [-o json]   every record of the chain (it outlives the ModelDeployment)

Actions set the annotation `modeldeploy.io/action` (plain `kubectl annotate` works the same) plus
`modeldeploy.io/action-by` (who, for the audit trail: by default the AUTHENTICATED user name the API
server reports for this kubeconfig, `kubectl auth whoami`; the chart's admission policy rejects any
other value) through `modeldeploy.actions` (the dashboard's buttons use the same code); the operator
acts, records it in status.history and the audit chain and removes the
annotation. The plugin waits for that and prints the result.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any

from modeldeploy import actions

ACTIONS = ("promote", "abort", "pause", "resume", "retry")


def build_parser() -> argparse.ArgumentParser:
    # kubectl style: the connection flags work before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the kubeconfig context's)"
    )
    common.add_argument(
        "--kubeconfig", default=argparse.SUPPRESS, help="path to a kubeconfig (default: $KUBECONFIG or ~/.kube/config)"
    )
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    parser = argparse.ArgumentParser(
        prog="kubectl modeldeploy", description="Control and inspect ModelDeployment rollouts.", parents=[common]
    )
    parser.set_defaults(namespace=None, kubeconfig=None, context=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} the rollout of a ModelDeployment", parents=[common])
        p.add_argument("name")
        if action == "promote":
            p.add_argument("--full", action="store_true", help="promote to 100%% at once, skipping the remaining steps")
        p.add_argument("--no-wait", action="store_true", help="do not wait for the operator to act")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the operator (default 60)")
        p.add_argument("--by", default=None, help="who asks, for the audit trail (default: $USER)")
    p = sub.add_parser("status", help="show a ModelDeployment's rollout and analysis", parents=[common])
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p = sub.add_parser("history", help="show the recent promotions, rollbacks and manual actions", parents=[common])
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p = sub.add_parser("audit", help="the tamper-evident decision record (hash chain of ConfigMaps)", parents=[common])
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="verify|show")
    for what, text in (("verify", "check the hash chain; exit 1 naming the first broken record"),
                       ("show", "print every record of the chain")):  # fmt: skip
        q = audit_sub.add_parser(what, help=text, parents=[common])
        q.add_argument("name")
        q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    return parser


def _client(args: argparse.Namespace):
    import kubernetes

    from modeldeploy.kube import Kube

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=args.kubeconfig or os.environ.get("KUBECONFIG") or None,
        context=args.context,
        client_configuration=configuration,
    )
    namespace = args.namespace
    if not namespace:
        try:
            _, active = kubernetes.config.list_kube_config_contexts(
                config_file=args.kubeconfig or os.environ.get("KUBECONFIG") or None
            )
            if args.context:
                contexts, _ = kubernetes.config.list_kube_config_contexts(
                    config_file=args.kubeconfig or os.environ.get("KUBECONFIG") or None
                )
                active = next(c for c in contexts if c["name"] == args.context)
            namespace = (active.get("context") or {}).get("namespace") or "default"
        except (kubernetes.config.ConfigException, StopIteration):
            namespace = "default"
    return Kube(kubernetes.client.ApiClient(configuration), workers=2), namespace


def main(argv: list[str] | None = None) -> int:
    import kubernetes

    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except kubernetes.config.ConfigException as exc:
        print(f"Error: no usable kubeconfig: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    import kopf

    kube, namespace = _client(args)
    try:
        body = await kube.get_modeldeployment(namespace, args.name)
        if args.command == "audit":
            return await _audit(kube, namespace, args, body)
        if body is None:
            print(f"Error: modeldeployment {args.name!r} not found in namespace {namespace!r}", file=sys.stderr)
            return 1
        if args.command == "status":
            print(json.dumps(body.get("status") or {}, indent=2) if args.output == "json" else format_status(body))
            return 0
        if args.command == "history":
            history = (body.get("status") or {}).get("history") or []
            print(json.dumps(history, indent=2) if args.output == "json" else format_history(history))
            return 0
        action = "promote-full" if args.command == "promote" and args.full else args.command
        who = args.by or await kube.whoami() or os.environ.get("USER") or getpass.getuser()
        before = len((body.get("status") or {}).get("history") or [])
        await actions.request(kube, namespace, args.name, action, who)
        print(f"modeldeployment.modeldeploy.io/{args.name} {action} requested")
        if args.no_wait:
            return 0
        body = await actions.wait_handled(kube, namespace, args.name, timeout=args.timeout)
        if body is not None:
            history = (body.get("status") or {}).get("history") or []
            for record in history[before:]:
                print(f"  {record.get('at')}  {record.get('action')} v{record.get('version')}: {record.get('reason')}")
            print(format_status(body, brief=True))
            return 0
        print(
            f"Error: the operator did not act on {action!r} within {args.timeout:.0f}s (is it running?)",
            file=sys.stderr,
        )
        return 1
    except actions.ActionError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except kopf.PermanentError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except kopf.TemporaryError as exc:
        print(f"Error: API server unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        await kube.aclose()


async def _audit(kube: Any, namespace: str, args: argparse.Namespace, body: dict | None) -> int:
    """`audit verify|show`: the chain outlives the ModelDeployment, so it works without one."""
    from modeldeploy import audit
    from modeldeploy.kube import KINDS

    items = await kube.list(KINDS[("v1", "ConfigMap")], namespace, label_selector=audit.selector(args.name))
    items.sort(key=lambda cm: int(((cm.get("metadata") or {}).get("labels") or {}).get(audit.LABEL_AUDIT_SEQ, 0) or 0))
    head = ((body or {}).get("status") or {}).get("audit")
    if args.audit_command == "show":
        records = [json.loads((cm.get("data") or {}).get(audit.RECORD_KEY) or "{}") for cm in items]
        if args.output == "json":
            print(json.dumps(records, indent=2))
        else:
            for r in records:
                actor = (r.get("actor") or {}).get("name", "?")
                print(f"{r.get('seq', '?'):>5}  {r.get('at', '')}  {r.get('action', ''):<13} v{r.get('version')}  by {actor}: "
                      f"{r.get('reason', '')}")  # fmt: skip
        return 0
    verdict = audit.verify(items, head)
    if args.output == "json":
        print(json.dumps({"ok": verdict.ok, "records": verdict.records, "head": verdict.head,
                          "brokenAt": verdict.broken_at, "object": verdict.object_name, "problem": verdict.problem}))  # fmt: skip
    else:
        print(verdict.text(f"{namespace}/{args.name}"))
        if body is None:
            print("  (the ModelDeployment is gone: its newest records cannot be checked against status.audit)")
    return 0 if verdict.ok else 1


def format_status(body: dict[str, Any], brief: bool = False) -> str:
    st = body.get("status") or {}
    spec = body.get("spec") or {}
    lines = [
        f"{body['metadata']['name']}: {st.get('phase', 'Unknown')} — {st.get('message', '')}",
        f"  stable v{st.get('stableVersion', '?')}"
        + (
            f", canary v{st['canaryVersion']} at {st.get('canaryWeight', 0)}% (step {st.get('step', 0)})"
            if st.get("canaryVersion")
            else ""
        )
        + f", strategy {st.get('strategy') or (spec.get('strategy') or {}).get('type', 'Canary')}"
        + f", failed checks {st.get('failedChecks', 0)}",
    ]
    gate_state = st.get("gates") or {}
    if gate_state.get("version") == st.get("canaryVersion") and gate_state.get("answers"):
        awaiting = f", awaiting {gate_state['awaiting']}" if gate_state.get("awaiting") else ""
        lines.append(f"  gates for v{gate_state.get('version')}{awaiting}:")
        for name, a in sorted(gate_state["answers"].items()):
            by = f" by {a['by']}" if a.get("by") else ""
            lines.append(
                f"    {name} ({a.get('type')}): {a.get('verdict')}{by} at {a.get('at')} ({a.get('detail', '')}; asked {a.get('asks', 1)}x)"
            )
    if brief:
        return "\n".join(lines)
    last = st.get("lastAnalysis") or {}
    if last:
        lines.append(f"  last analysis {last.get('time')} ({last.get('kind', 'interval')}): {last.get('verdict')}")
        lines.append(f"    {'METRIC':<20} {'VALUE':>12} {'MIN':>8} {'MAX':>8}  RESULT")
        for m in last.get("metrics") or []:
            value = "no data" if m.get("value") is None else f"{m['value']:.4g}"
            lo = "" if m.get("min") is None else f"{m['min']:g}"
            hi = "" if m.get("max") is None else f"{m['max']:g}"
            verdict = "pass" if m.get("passed") else ("NO DATA" if m.get("value") is None else "FAIL")
            lines.append(f"    {m.get('name', ''):<20} {value:>12} {lo:>8} {hi:>8}  {verdict}: {m.get('reason', '')}")
            lines.extend(format_findings(m.get("detail") or {}, indent="      "))
    for c in st.get("conditions") or []:
        lines.append(f"  {c['type']}={c['status']} ({c.get('reason', '')}): {c.get('message', '')}")
    return "\n".join(lines)


def format_findings(detail: dict[str, Any], indent: str) -> list[str]:
    """The per-finding rows of a nonInferiority result, the per-subgroup rows of a worstSubgroup one
    (status and history)."""
    out = []
    for row in detail.get("subgroups") or []:
        auc = row.get("aurocMean")
        shown = "n/a" if auc is None else f"{auc:.4f}"
        name = f"{row.get('attribute', '')}={row.get('subgroup', '')}"
        out.append(
            f"{indent}{name:<20} mean AUROC {shown} ({row.get('images')} images, {row.get('positives')} positives): "
            f"{row.get('verdict', '')}" + (f" - {row['reason']}" if row.get("reason") else "")
        )
    for row in detail.get("findings") or []:
        auc = row.get("auroc") or {}
        if not auc:
            out.append(f"{indent}{row.get('finding', ''):<20} {row.get('verdict', '')}: {row.get('reason', '')}")
            continue
        lo, hi = auc.get("ci") or [None, None]
        text = (
            f"{indent}{row.get('finding', ''):<20} ΔAUROC {auc.get('delta', 0):+.4f} CI [{lo:+.4f}, {hi:+.4f}] "
            f"p={auc.get('pValue')} margin {auc.get('margin')} power {auc.get('power')} "
            f"({row.get('positives')} positives): {row.get('verdict', '')}"
        )
        out.append(text + (f" - {row['reason']}" if row.get("reason") else ""))
    return out


def format_history(history: list[dict[str, Any]]) -> str:
    if not history:
        return "no history yet"
    lines = [f"{'AT':<25} {'ACTION':<11} {'VERSION':>7} {'FROM':>5}  REASON"]
    for h in history:
        lines.append(
            f"{h.get('at', ''):<25} {h.get('action', ''):<11} {h.get('version', ''):>7} {str(h.get('fromVersion', '')):>5}  {h.get('reason', '')}"
        )
        metrics = h.get("metrics") or []
        if metrics:
            shown = ", ".join(
                f"{m.get('name')}={'n/a' if m.get('value') is None else format(m['value'], '.4g')}" for m in metrics
            )
            lines.append(f"{'':<25} {'':<11} {'':>7} {'':>5}  metrics: {shown}")
            for m in metrics:
                lines.extend(format_findings(m.get("detail") or {}, indent=" " * 53))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

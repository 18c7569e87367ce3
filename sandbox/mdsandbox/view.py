"""Terminal views of a running sandbox scenario: a live panel (TTY) or one line per change (logs, CI).

The live panel shows what a DevOps or ML engineer wants to watch: phase, versions, the traffic
split, each metric against its bounds with its verdict, failed checks, progress and what just
happened (version changes, breaches, rollbacks, promotions).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from mdsandbox.scenario import Scenario

BAR = 30


def _bar(fraction: float, width: int = BAR) -> str:
    fraction = min(1.0, max(0.0, fraction))
    full = int(round(fraction * width))
    return "█" * full + "·" * (width - full)


def _fmt(value: Any) -> str:
    if value is None:
        return "no data"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class NoView:
    def tick(self, sandbox: Any) -> None:
        pass

    def finish(self, report: dict) -> None:
        summary(report)


class LinesView(NoView):
    """One line whenever something visible changes."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.last: tuple | None = None
        self.marks = 0

    def tick(self, sandbox: Any) -> None:
        st = sandbox.state
        for mark in st.marks[self.marks :]:
            print(f"  t={mark['t']:6.1f}s  * {mark['text']}", flush=True)
        self.marks = len(st.marks)
        if not st.timeline:
            return
        s = st.timeline[-1]
        key = (
            s.phase,
            s.stableVersion,
            s.canaryVersion,
            s.canaryWeight,
            s.routedWeight,
            tuple(sorted(s.metrics.items())),
        )
        if key == self.last:
            return
        self.last = key
        metrics = " ".join(f"{k}={_fmt(v)}" for k, v in s.metrics.items())
        canary = f" canary v{s.canaryVersion} {s.routedWeight}%" if s.canaryVersion else ""
        print(f"  t={s.t:6.1f}s  {s.phase or '-':<12} stable v{s.stableVersion}{canary}  {metrics}", flush=True)


class LiveView(NoView):
    """A panel redrawn in place (ANSI), twice a second."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.lines = 0
        self.last_draw = 0.0

    def tick(self, sandbox: Any) -> None:
        if time.monotonic() - self.last_draw < 0.5:
            return
        self.last_draw = time.monotonic()
        text = self.render(sandbox)
        out = sys.stdout
        if self.lines:
            out.write(f"\x1b[{self.lines}F\x1b[J")
        out.write(text + "\n")
        out.flush()
        self.lines = text.count("\n") + 1

    def render(self, sandbox: Any) -> str:
        sc = self.scenario
        st = sandbox.state
        status = st.status or {}
        t = sandbox.now()
        lines = [f"\x1b[1m{sc.name}\x1b[0m  t={t:5.1f}s / {sc.until:.0f}s  [{_bar(t / sc.until, 40)}]"]
        phase = status.get("phase", "-")
        colour = {"RolledBack": "31", "Failed": "31", "Progressing": "33", "Promoting": "36", "Stable": "32"}.get(
            phase, "0"
        )
        stable, canary = status.get("stableVersion"), status.get("canaryVersion")
        lines.append(
            f"  phase \x1b[{colour}m{phase:<12}\x1b[0m stable v{stable}" + (f"   canary v{canary}" if canary else "")
        )
        if st.timeline:
            s = st.timeline[-1]
            lines.append(
                f"  traffic  stable {100 - s.routedWeight:3d}% [{_bar((100 - s.routedWeight) / 100, 20)}]"
                f"  canary {s.routedWeight:3d}% [{_bar(s.routedWeight / 100, 20)}]"
                + (f"  mirror {s.mirrorPercent:.0f}%" if s.mirrorPercent else "")
            )
        last = status.get("lastAnalysis") or {}
        by_name = {m["name"]: m for m in last.get("metrics") or []}
        lines.append(
            f"  analysis every {sandbox.spec.analysis.interval}, failed checks "
            f"{status.get('failedChecks', 0)}/{sandbox.spec.analysis.failure_threshold}"
            + (f", last: {last.get('verdict')} ({last.get('kind', 'interval')})" if last else "")
        )
        for metric in sandbox.spec.analysis.metrics:
            m = by_name.get(metric.name, {})
            bound = " ".join(
                b
                for b in (
                    f"min {metric.min:g}" if metric.min is not None else "",
                    f"max {metric.max:g}" if metric.max is not None else "",
                )
                if b
            )
            if not m:
                verdict = "\x1b[2m—\x1b[0m"
            elif m.get("passed"):
                verdict = "\x1b[32mpass\x1b[0m"
            elif m.get("value") is None:
                verdict = "\x1b[33mno data\x1b[0m"
            else:
                verdict = "\x1b[31mFAIL\x1b[0m"
            lines.append(f"    {metric.name:<16} {_fmt(m.get('value')) if m else '':>10}  ({bound:<18}) {verdict}")
        for mark in st.marks[-4:]:
            lines.append(f"  t={mark['t']:5.1f}s  {mark['text']}")
        return "\n".join(lines)

    def finish(self, report: dict) -> None:
        summary(report)


def summary(report: dict) -> None:
    ok = report.get("passed")
    print(
        f"{'PASS' if ok else 'FAIL'} {report['name']}: outcome {report['outcome']}, stable v{report['stableVersion']}, "
        f"rollbackSeconds {report['rollbackSeconds']}, promotionSeconds {report['promotionSeconds']}, "
        f"apiWrites {report['apiWrites']}, prometheusQueries {report['prometheusQueries']}"
    )
    for e in report.get("expectations", []):
        print(f"  {'ok ' if e['ok'] else 'BAD'} expect {e['expect']}: expected {e['expected']}, got {e['actual']}")
    for err in report.get("errors", []):
        print(f"  error: {err}")


def make_view(mode: str, scenario: Scenario) -> NoView:
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() else "lines"
    if mode == "live":
        return LiveView(scenario)
    if mode == "lines":
        return LinesView(scenario)
    return NoView()

"""The REPORT of one sandbox run (docs/scenarios.md "Report"): built from what the runner measured.

`build_report` turns a `RunState` into the report dict: outcome, stableVersion, timeline,
rollbackSeconds (from the breach becoming visible in Prometheus to traffic back at 100% stable),
promotionSeconds (setVersion to the new version being stable), clients (live answers per client
class and version, and those from a version that was not stable then), apiWrites (the OPERATOR's writes:
the emulator's total minus the Deployment controller's and the runner's), prometheusQueries (the
operator's), the breach, the analyses, the Event reasons, the history, and what each ``expect``
found (`expectations.check_expectations`). Scenario seconds are wall seconds x ``speed``.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from mdsandbox.expectations import check_expectations, passed
from mdsandbox.observe import RunState
from mdsandbox.scenario import Scenario
from modeldeploy.spec import ModelDeploymentSpec


def outcome(state: RunState, initial_version: int) -> str:
    """promoted | rolledBack | progressing | failed | stable, from the final status and history."""
    status = state.status
    phase = status.get("phase")
    stable = status.get("stableVersion")
    if phase == "Failed":
        return "failed"
    if phase in ("Progressing", "Paused") and status.get("canaryVersion") is not None:
        return "progressing"
    if (
        stable is not None
        and stable != initial_version
        and any(h.get("action") == "promoted" and h.get("version") == stable for h in state.history)
    ):
        return "promoted"
    if any(h.get("action") in ("rolledBack", "aborted") for h in state.history):
        return "rolledBack"
    if phase in ("Progressing", "Paused"):
        return "progressing"
    return "stable"


def build_report(
    scenario: Scenario,
    spec: ModelDeploymentSpec,
    state: RunState,
    *,
    speed: float,
    t0_unix: float,
    controller_writes: int,
    runner_writes: int,
    workdir: str,
    webhooks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    st = state

    def scenario_seconds(unix_a: float, unix_b: float) -> float:
        return (unix_b - unix_a) * speed

    rollback_s = None
    if st.breach_visible is not None and st.rollback_done is not None:
        rollback_s = round(max(0.0, scenario_seconds(st.breach_visible, st.rollback_done)), 2)
    promotion_s = None
    stable = st.status.get("stableVersion")
    if stable in st.promoted and stable in st.rollout_started:
        promotion_s = round(scenario_seconds(st.rollout_started[stable], st.promoted[stable]), 2)
    api_writes = st.api_writes
    operator_writes = None if api_writes is None else max(0, api_writes - controller_writes - runner_writes)
    report: dict[str, Any] = {
        "name": scenario.name,
        "outcome": outcome(st, scenario.initial_version),
        "stableVersion": stable,
        "phase": st.status.get("phase"),
        "timeline": [s.to_json() for s in st.timeline],
        "rollbackSeconds": rollback_s,
        "promotionSeconds": promotion_s,
        "apiWrites": operator_writes,
        "prometheusQueries": int(st.operator_queries),
        "breach": None
        if st.breach_started is None
        else {
            "version": st.breach_version,
            "metric": st.breach_metric,
            "startedAt": round(scenario_seconds(t0_unix, st.breach_started), 2),
            "visibleAt": None if st.breach_visible is None else round(scenario_seconds(t0_unix, st.breach_visible), 2),
            "rolledBackAt": None if st.rollback_done is None else round(scenario_seconds(t0_unix, st.rollback_done), 2),
        },
        "maxCanaryWeight": st.max_weight,
        "analyses": sorted(st.analyses.values(), key=lambda a: a["t"]),
        "routingWritesValidated": st.routing_writes_validated,
        "apiFaultsInjected": st.api_faults_injected,
        "eventReasons": st.event_reasons,
        "audit": st.audit,
        "studies": st.studies,
        "clients": st.clients,
        "marks": st.marks,
        "history": st.history,
        "analysis": {
            "interval": spec.analysis.interval,
            "failureThreshold": spec.analysis.failure_threshold,
            "metrics": [
                {
                    "name": m.name,
                    "min": m.min,
                    "max": m.max,
                    "failFast": None if m.fail_fast is None else m.fail_fast.model_dump(exclude_none=True),
                }
                for m in spec.analysis.metrics
            ],
        },
        "webhooks": webhooks or {},
        "operator": st.operator,
        "speed": speed,
        "errors": st.errors,
        "workdir": workdir,
    }
    report["expectations"] = check_expectations(scenario.expect, report, initial_version=scenario.initial_version)
    report["passed"] = passed(report["expectations"], st.errors)
    return report


__all__ = ["build_report", "outcome"]

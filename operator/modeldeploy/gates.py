"""Webhook gates (spec.gates), PURE: when each gate is asked, what its answer means, how it is recorded.

Like Flagger's webhooks (pre-rollout, confirm-promotion, rollback), with the failure policy explicit:

  preRollout        asked once the new version's pods are ready, BEFORE it gets any traffic; the rollout
                    waits until every preRollout gate said yes
  confirmPromotion  asked before the move that gives the new version all traffic (a Canary step of 100%,
                    or the promotion): the sign-off. Progression waits for every yes (a manual promote too)
  rollback          asked every analysis interval while the new version is live or waiting for a sign-off;
                    a yes rolls it back

One call's answer (`verdict`):
  2xx (but 202)  approved            202  pending (not decided yet: asked again one analysis interval later)
  403            denied              anything else, a timeout, a connection error: error
The body may carry {"by": "...", "reason": "..."} (who answered and why: recorded, self-declared by the gate).

A gate with a `deadline` still pending that long after its first ask gets an `error` answer (`overdue`).
What a verdict does (`effect`): approved -> yes; denied -> no; pending -> wait; error -> the gate's
failurePolicy: Fail = no (for a rollback gate: yes, roll back), Ignore = yes (a rollback gate: no).
"no" from a preRollout or confirmPromotion gate rolls the version back (it was refused).

State: status.gates = {"version": N, "awaiting": "preRollout"|"confirmPromotion"|None,
"answers": {gate: {type, verdict, at, askedAt, httpStatus, by, detail, asks}}}, for the version being rolled
out (another version's state is dropped). Every CHANGE of a gate's verdict is a status.history record
`{action: gate, gate: {...}}`, so it is also a record of the audit chain; repeated identical answers are
counted (`asks`), not repeated in history.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy.spec import GateSpec, ModelDeploymentSpec
from modeldeploy.status import seconds_since, to_timestamp

VERDICTS = ("approved", "pending", "denied", "error")


@dataclass(frozen=True)
class GateAnswer:
    """One call's result, as the reconciler observed it."""

    name: str
    version: int
    verdict: str  # approved | pending | denied | error
    at: datetime.datetime
    asked_at: datetime.datetime
    http_status: int | None = None
    by: str | None = None
    detail: str = ""


def interpret(http_status: int | None, body: Any, error: str | None = None) -> tuple[str, str | None, str]:
    """(verdict, by, detail) of one call: its HTTP status and JSON body, or the transport error."""
    if error is not None or http_status is None:
        return "error", None, error or "no answer"
    by = reason = None
    if isinstance(body, Mapping):
        by = str(body["by"])[:200] if body.get("by") else None
        reason = str(body["reason"])[:500] if body.get("reason") else None
    detail = f"HTTP {http_status}" + (f": {reason}" if reason else "")
    if http_status == 202:
        return "pending", by, detail
    if 200 <= http_status < 300:
        return "approved", by, detail
    if http_status == 403:
        return "denied", by, detail
    return "error", by, detail


def effect(gate: GateSpec, verdict: str | None) -> str:
    """yes | no | wait for one gate's current verdict (None: not asked yet = wait)."""
    if verdict is None or verdict == "pending":
        return "wait"
    if verdict == "error":
        fails = gate.policy == "Fail"
        if gate.type == "rollback":
            return "yes" if fails else "no"
        return "no" if fails else "yes"
    return "yes" if verdict == "approved" else "no"


def state(current: Mapping[str, Any] | None, version: int | None) -> dict[str, Any]:
    """status.gates if it belongs to the rollout of `version` ({} for another version or none)."""
    if not current or version is None or current.get("version") != version:
        return {}
    return dict(current)


def of_type(spec: ModelDeploymentSpec, kind: str) -> tuple[GateSpec, ...]:
    return tuple(g for g in spec.gates if g.type == kind)


def decision(
    spec: ModelDeploymentSpec, current: Mapping[str, Any] | None, version: int | None, kind: str
) -> tuple[str, GateSpec | None]:
    """The combined effect of every gate of `kind`: ("no", the first refusing gate) | ("wait", the first
    undecided) | ("yes", None). No gates of that kind: yes."""
    answers = state(current, version).get("answers") or {}
    waiting = None
    for gate in of_type(spec, kind):
        verdict = (answers.get(gate.name) or {}).get("verdict")
        outcome = effect(gate, verdict)
        if kind == "rollback":
            if outcome == "yes":
                return "no", gate  # a rollback gate's yes = the rollout's no
            continue
        if outcome == "no":
            return "no", gate
        if outcome == "wait" and waiting is None:
            waiting = gate
    return ("wait", waiting) if waiting is not None else ("yes", None)


def due(
    spec: ModelDeploymentSpec, status: Mapping[str, Any], now: datetime.datetime, *, canary_ready: bool
) -> tuple[GateSpec, ...]:
    """The gates to call now: preRollout once the new version is ready (before traffic), confirmPromotion
    while a promotion awaits it, rollback while the version is live or awaiting; an undecided (pending or
    never asked) gate at most once per analysis interval, a decided one never again this rollout (except
    rollback gates, asked every interval)."""
    canary = status.get("canaryVersion")
    rollout = status.get("rollout") or {}
    if canary is None or rollout.get("failedHold") or not spec.gates:
        return ()
    current = state(status.get("gates"), canary)
    answers = current.get("answers") or {}
    awaiting = current.get("awaiting")
    live = bool(rollout.get("readyAt"))
    interval = spec.analysis.interval_seconds
    out = []
    for gate in spec.gates:
        answer = answers.get(gate.name) or {}
        asked = seconds_since(answer.get("askedAt"), now)
        fresh = asked is not None and asked < interval * 0.9  # passes run about once per interval
        if gate.type == "preRollout":
            wanted = canary_ready and not live and answer.get("verdict") in (None, "pending")
        elif gate.type == "confirmPromotion":
            wanted = awaiting == "confirmPromotion" and answer.get("verdict") in (None, "pending")
        else:
            wanted = live or awaiting == "confirmPromotion"
        if wanted and not fresh:
            out.append(gate)
    return tuple(out)


def next_ask_in(
    spec: ModelDeploymentSpec, current: Mapping[str, Any] | None, version: int | None, now: datetime.datetime
) -> float | None:
    """Seconds until an undecided gate (or a rollback gate) is due again, for the loop's wake-up."""
    answers = state(current, version).get("answers") or {}
    waits = []
    for gate in spec.gates:
        answer = answers.get(gate.name) or {}
        asked = seconds_since(answer.get("askedAt"), now)
        if asked is not None and (gate.type == "rollback" or answer.get("verdict") == "pending"):
            waits.append(max(0.0, spec.analysis.interval_seconds * 0.9 - asked))
    return min(waits) if waits else None


def request_body(
    gate: GateSpec, *, namespace: str, name: str, spec: ModelDeploymentSpec, status: Mapping[str, Any]
) -> dict[str, Any]:
    """What the operator POSTs to a gate (Flagger's webhook payload, plus what an approver needs)."""
    last = status.get("lastAnalysis") or {}
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeploymentGate",
        "gate": gate.name,
        "type": gate.type,
        "namespace": namespace,
        "name": name,
        "model": spec.model.name,
        "version": status.get("canaryVersion"),
        "stableVersion": status.get("stableVersion"),
        "phase": status.get("phase"),
        "canaryWeight": status.get("canaryWeight", 0),
        "strategy": spec.strategy.type,
        "lastAnalysis": {
            "time": last.get("time"),
            "verdict": last.get("verdict"),
            "metrics": last.get("metrics") or [],
        },
        "metadata": dict(gate.metadata),
    }


def record(
    current: Mapping[str, Any] | None, version: int | None, spec: ModelDeploymentSpec, answer: GateAnswer
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """status.gates with one answer stored, and the history record when the gate's verdict CHANGED."""
    out = state(current, version) or {"version": version, "answers": {}}
    if answer.version != version:
        return out, None  # an answer for a rollout that is over
    gate = next((g for g in spec.gates if g.name == answer.name), None)
    if gate is None:
        return out, None
    answers = dict(out.get("answers") or {})
    before = answers.get(answer.name) or {}
    entry = {
        "type": gate.type,
        "verdict": answer.verdict,
        "at": to_timestamp(answer.at),
        "askedAt": to_timestamp(answer.asked_at),
        "httpStatus": answer.http_status,
        "detail": answer.detail,
        "asks": int(before.get("asks") or 0) + 1,
        "firstAskedAt": before.get("firstAskedAt") or to_timestamp(answer.asked_at),
    }
    if answer.by:
        entry["by"] = answer.by
    answers[answer.name] = entry
    out["answers"] = answers
    if before.get("verdict") == answer.verdict and before.get("by") == answer.by:
        return out, None
    policy = f"; failurePolicy {gate.policy}: {effect(gate, answer.verdict)}" if answer.verdict == "error" else ""
    who = f" by {answer.by}" if answer.by else ""
    return out, {
        "version": answer.version,
        "action": "gate",
        "reason": f"{gate.type} gate {gate.name}: {answer.verdict}{who} ({answer.detail}){policy}",
        "gate": {k: v for k, v in {"name": gate.name, **entry}.items() if k not in ("asks", "firstAskedAt")},
    }


def overdue(spec: ModelDeploymentSpec, current: Mapping[str, Any] | None, version: int | None,
            now: datetime.datetime) -> list[GateAnswer]:  # fmt: skip
    """An `error` answer for each gate still undecided past its `deadline` since it was first asked."""
    out = []
    answers = state(current, version).get("answers") or {}
    for gate in spec.gates:
        a = answers.get(gate.name) or {}
        limit = gate.deadline_seconds
        waited = seconds_since(a.get("firstAskedAt"), now)
        if limit is None or version is None or a.get("verdict") != "pending" or waited is None or waited < limit:
            continue
        out.append(GateAnswer(name=gate.name, version=version, verdict="error", at=now, asked_at=now,
                              detail=f"no decision within deadline {gate.deadline} (asked {a.get('asks', 0)} times)"))  # fmt: skip
    return out


def with_awaiting(current: Mapping[str, Any] | None, version: int | None, kind: str | None) -> dict[str, Any]:
    out = state(current, version) or {"version": version, "answers": {}}
    out["awaiting"] = kind
    return out

"""Rollout notifications, PURE: which rollout events a decision produced, and their payloads per format.

`notices(...)` turns one decision (the status before and after, and its Events) into `Notice`s:

  RolloutStarted  the Event RolloutStarted (a new version starts rolling out, also after a retry)
  Promoted        a new status.history record `promoted`
  RolledBack      a new status.history record `rolledBack` or `aborted` (the action says which)
  Failed          a new status.history record `failed` (rollback.automatic false: held for a human)

History records carry the metrics that justified the decision, so a notification says why, with numbers.
`payload(format, notice)` renders one as the body a receiver expects:

  webhook  our own JSON (kind ModelDeploymentNotification, documented in docs/operations.md)
  slack    a Slack incoming webhook message: `text` (the notification's fallback) + Block Kit blocks
           (header, section, fields, context), within Slack's block limits
  teams    a Microsoft Teams Workflows webhook message (Office 365 connectors are retired): a `message`
           with one Adaptive Card 1.4 attachment (TextBlocks + a FactSet)

Delivery (queue, retries, secrets) is modeldeploy.notifier's job; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_ACTION_EVENT = {"promoted": "Promoted", "rolledBack": "RolledBack", "aborted": "RolledBack", "failed": "Failed"}
_TITLE = {
    "RolloutStarted": "rollout started",
    "Promoted": "promoted",
    "RolledBack": "rolled back",
    "Failed": "rollout failed, held for a human",
}
_TEAMS_COLOR = {"RolloutStarted": "Accent", "Promoted": "Good", "RolledBack": "Attention", "Failed": "Attention"}
SLACK_MAX_FIELDS = 10  # Block Kit: at most 10 fields per section
SLACK_MAX_TEXT = 3000  # Block Kit: section text
SLACK_MAX_HEADER = 150  # Block Kit: header plain_text


@dataclass(frozen=True)
class Notice:
    event: str  # RolloutStarted | Promoted | RolledBack | Failed
    namespace: str
    name: str
    model: str
    version: int | None
    from_version: int | None
    action: str  # started | promoted | rolledBack | aborted | failed
    reason: str
    at: str
    strategy: str | None = None
    metrics: tuple[Mapping[str, Any], ...] = ()

    @property
    def title(self) -> str:
        what = f"{self.namespace}/{self.name}: version {self.version}"
        if self.event == "RolledBack" and self.action == "aborted":
            return f"{what} aborted"
        return f"{what} {_TITLE[self.event]}"


def _key(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def notices(
    *,
    namespace: str,
    name: str,
    model: str,
    old_status: Mapping[str, Any],
    new_status: Mapping[str, Any],
    events: Iterable[Any],
    at: str,
) -> list[Notice]:
    """The rollout events one decision produced, in the order they happened."""
    out: list[Notice] = []
    seen = {_key(h) for h in old_status.get("history") or []}
    for record in new_status.get("history") or []:
        event = _ACTION_EVENT.get(record.get("action", ""))
        if event is None or _key(record) in seen:
            continue
        out.append(Notice(
            event=event, namespace=namespace, name=name, model=model, version=record.get("version"),
            from_version=record.get("fromVersion"), action=record["action"], reason=record.get("reason", ""),
            at=record.get("at", at), strategy=record.get("strategy"), metrics=tuple(record.get("metrics") or ()),
        ))  # fmt: skip
    for ev in events:
        if getattr(ev, "reason", None) == "RolloutStarted":
            out.insert(0, Notice(
                event="RolloutStarted", namespace=namespace, name=name, model=model,
                version=new_status.get("canaryVersion"), from_version=new_status.get("stableVersion"),
                action="started", reason=ev.message, at=at, strategy=new_status.get("strategy"),
            ))  # fmt: skip
    return out


# ---- payloads --------------------------------------------------------------------------------------


def _metric_text(m: Mapping[str, Any]) -> str:
    value = m.get("value")
    shown = "no data" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)
    bounds = []
    if m.get("min") is not None:
        bounds.append(f">= {m['min']:g}")
    if m.get("max") is not None:
        bounds.append(f"<= {m['max']:g}")
    verdict = "pass" if m.get("passed") else ("no data" if value is None else "FAIL")
    return f"{shown} ({' and '.join(bounds) or 'no bound'}): {verdict}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def webhook_payload(n: Notice) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeploymentNotification",
        "event": n.event,
        "action": n.action,
        "namespace": n.namespace,
        "name": n.name,
        "model": n.model,
        "version": n.version,
        "fromVersion": n.from_version,
        "strategy": n.strategy,
        "at": n.at,
        "reason": n.reason,
        "message": n.title,
        "metrics": [dict(m) for m in n.metrics],
    }


def slack_payload(n: Notice) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(n.title, SLACK_MAX_HEADER)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(n.reason or n.title, SLACK_MAX_TEXT)}},
    ]
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{m.get('name', '?')}*\n{_metric_text(m)}", 2000)}
        for m in n.metrics[:SLACK_MAX_FIELDS]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = f"model {n.model}" + (f" · from version {n.from_version}" if n.from_version is not None else "")
    context += (f" · {n.strategy}" if n.strategy else "") + f" · {n.at}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": _clip(f"{n.title}: {n.reason}", SLACK_MAX_TEXT), "blocks": blocks}


def teams_payload(n: Notice) -> dict[str, Any]:
    facts = [{"title": "Model", "value": n.model}, {"title": "Version", "value": str(n.version)}]
    if n.from_version is not None:
        facts.append({"title": "Stable before", "value": str(n.from_version)})
    if n.strategy:
        facts.append({"title": "Strategy", "value": n.strategy})
    facts += [{"title": str(m.get("name", "?")), "value": _metric_text(m)} for m in n.metrics]
    facts.append({"title": "At", "value": n.at})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": n.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": _TEAMS_COLOR[n.event],
            },  # fmt: skip
            {"type": "TextBlock", "text": n.reason or n.title, "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


PAYLOADS = {"webhook": webhook_payload, "slack": slack_payload, "teams": teams_payload}


def payload(format_: str, notice: Notice) -> dict[str, Any]:
    return PAYLOADS[format_](notice)

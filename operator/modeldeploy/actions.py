"""Manual rollout actions, asked for through the ModelDeployment's annotations (one code path for every client).

A client sets the annotations in ONE merge patch:

    modeldeploy.io/action:     promote | promote-full | abort | pause | resume | retry
    modeldeploy.io/action-by:  who asks (recorded in status.history and the Event: "manual abort by alice")
    modeldeploy.io/action-id:  the request's idempotency key (optional: the operator stamps one on a request
                               without it before acting)

The operator acts on its next pass, records the action in status.history and removes the
annotations. Exactly once: the action's effect and its key (status.rollout.handledAction and
handledActionId) go into ONE status write, and the annotations are removed only after the children,
Events and audit records; a pass that fails in between leaves the annotations, and the next pass,
seeing the same key, only removes them (no second step, no second history record).
`kubectl modeldeploy <action>` and the dashboard's buttons both call `request()`; plain
`kubectl annotate` works the same. Who may ask is Kubernetes RBAC's business (patch on
modeldeployments); the `action-by` value is what the CLIENT says: the plugin sends the authenticated
user name (SelfSubjectReview; --by overrides), the dashboard the identity it was configured to trust
(docs/dashboard.md "Identity") plus `modeldeploy.io/action-via`, its own user name. The chart's
ValidatingAdmissionPolicy makes the API server hold them to it (docs/security.md "Who acted").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Protocol

from modeldeploy import names
from modeldeploy.rollout import MANUAL_ACTIONS

ACTOR_MAX_LENGTH = 128


class ActionError(ValueError):
    """An action that cannot be asked for (unknown name, no actor)."""


class _ModelDeployments(Protocol):
    async def get_modeldeployment(self, namespace: str, name: str) -> dict | None: ...

    async def patch_modeldeployment(self, namespace: str, name: str, patch: dict) -> dict: ...


def clean_actor(who: str) -> str:
    """The actor as it will be recorded: printable, one line, at most ACTOR_MAX_LENGTH characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in who or "").split())
    if not text:
        raise ActionError("an action needs the name of who asks (modeldeploy.io/action-by)")
    return text[:ACTOR_MAX_LENGTH]


def action_patch(action: str, who: str, via: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The merge patch that asks the operator for `action` on behalf of `who` (through the trusted
    proxy `via`, whose own authenticated user name it must be: the chart's admission policy checks).
    `request_id` (default: a fresh random one) is the request's idempotency key: the operator applies
    each (key, action) once, even when a write after the action's effect fails and it sees it again."""
    if action not in MANUAL_ACTIONS:
        raise ActionError(f"unknown action {action!r}; use one of {', '.join(MANUAL_ACTIONS)}")
    annotations = {
        names.ANNOTATION_ACTION: action,
        names.ANNOTATION_ACTION_BY: clean_actor(who),
        names.ANNOTATION_ACTION_ID: request_id or uuid.uuid4().hex,
    }
    if via:
        annotations[names.ANNOTATION_ACTION_VIA] = clean_actor(via)
    return {"metadata": {"annotations": annotations}}


async def request(
    kube: _ModelDeployments, namespace: str, name: str, action: str, who: str, via: str | None = None
) -> dict:
    """Ask for `action`; returns the patched ModelDeployment. The operator acts asynchronously."""
    return await kube.patch_modeldeployment(namespace, name, action_patch(action, who, via))


def pending_action(body: dict | None) -> str | None:
    """The action asked for and not handled yet (None when the operator has acted)."""
    return ((body or {}).get("metadata") or {}).get("annotations", {}).get(names.ANNOTATION_ACTION)


async def wait_handled(
    kube: _ModelDeployments, namespace: str, name: str, *, timeout: float, poll: float = 0.3
) -> dict | None:
    """The ModelDeployment once the operator removed the action annotation, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(poll)
        body = await kube.get_modeldeployment(namespace, name)
        if body is not None and pending_action(body) is None:
            return body
    return None

"""modeldeploy.actions: the one code path that asks the operator for a manual action (plugin and dashboard)."""

from __future__ import annotations

import asyncio

import pytest

from modeldeploy import actions
from modeldeploy.rollout import MANUAL_ACTIONS


@pytest.mark.parametrize("action", MANUAL_ACTIONS)
def test_every_manual_action_is_one_merge_patch_of_its_annotations(action):
    assert actions.action_patch(action, "alice", request_id="r1") == {
        "metadata": {"annotations": {"modeldeploy.io/action": action, "modeldeploy.io/action-by": "alice",
                                     "modeldeploy.io/action-id": "r1"}}
    }


def test_every_request_gets_its_own_idempotency_key():
    keys = {actions.action_patch("promote", "alice")["metadata"]["annotations"]["modeldeploy.io/action-id"] for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == 32 for k in keys)


@pytest.mark.parametrize(
    "who, recorded",
    [
        ("alice", "alice"),
        ("  bob  via\ndashboard ", "bob via dashboard"),
        ("eve\x00\x1b[31m", "eve [31m"),
        ("x" * 300, "x" * 128),
    ],
)
def test_the_actor_is_recorded_on_one_printable_line(who, recorded):
    assert actions.clean_actor(who) == recorded


@pytest.mark.parametrize("action, who", [("explode", "alice"), ("abort", ""), ("abort", " \n ")])
def test_an_unknown_action_or_a_missing_actor_is_refused(action, who):
    with pytest.raises(actions.ActionError):
        actions.action_patch(action, who)


class FakeKube:
    """Records patches; the operator 'acts' after two reads (removes the annotation)."""

    def __init__(self):
        self.patches, self.reads = [], 0

    async def patch_modeldeployment(self, namespace, name, patch):
        self.patches.append((namespace, name, patch))
        return {"metadata": {"name": name, "annotations": patch["metadata"]["annotations"]}}

    async def get_modeldeployment(self, namespace, name):
        self.reads += 1
        annotations = {"modeldeploy.io/action": "abort"} if self.reads < 3 else {}
        return {"metadata": {"name": name, "annotations": annotations}}


def test_request_then_wait_until_the_operator_removed_the_annotation():
    kube = FakeKube()

    async def go():
        await actions.request(kube, "radiology", "resnet50", "abort", "alice")
        return await actions.wait_handled(kube, "radiology", "resnet50", timeout=5, poll=0.01)

    body = asyncio.run(go())
    ((ns, name, patch),) = kube.patches
    key = patch["metadata"]["annotations"]["modeldeploy.io/action-id"]
    assert (ns, name, patch) == ("radiology", "resnet50", actions.action_patch("abort", "alice", request_id=key))
    assert body is not None and actions.pending_action(body) is None and kube.reads == 3


def test_a_proxy_names_itself_in_action_via():
    from modeldeploy import actions as acts

    patch = acts.action_patch("abort", "alice (via dashboard)", via="system:serviceaccount:md:dashboard", request_id="r")
    assert patch["metadata"]["annotations"] == {
        "modeldeploy.io/action": "abort",
        "modeldeploy.io/action-by": "alice (via dashboard)",
        "modeldeploy.io/action-via": "system:serviceaccount:md:dashboard",
        "modeldeploy.io/action-id": "r",
    }
    assert "modeldeploy.io/action-via" not in acts.action_patch("abort", "alice")["metadata"]["annotations"]

"""The operator's kopf diff-base storage: the same essence as kopf's own, built without copying the status."""

from __future__ import annotations

import copy

import kopf
import pytest

from modeldeploy.main import StatuslessDiffBaseStorage

KEY = dict(prefix="modeldeploy.io", key="last-handled-configuration")
BODY = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {
        "name": "cxr",
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "labels": {"team": "radiology"},
        "annotations": {"modeldeploy.io/last-handled-configuration": '{"spec": {}}', "note": "x"},
        "finalizers": ["modeldeploy.io/finalizer"],
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {"model": {"name": "m", "version": 2}, "serving": {"replicas": 2}},
    "status": {"phase": "Canary", "history": [{"version": v, "action": "deployed"} for v in range(50)]},
}


@pytest.mark.parametrize(
    "body, extra_fields",
    [
        (BODY, None),
        ({k: v for k, v in BODY.items() if k != "status"}, None),
        ({**BODY, "status": {}}, None),
        (BODY, [("status", "phase")]),  # a handler asking for status fields: kopf's own build
        ({**BODY, "metadata": {"name": "bare"}}, None),
    ],
)
def test_essence_is_kopfs(body, extra_fields):
    ours = StatuslessDiffBaseStorage(**KEY).build(body=kopf.Body(copy.deepcopy(body)), extra_fields=extra_fields)
    theirs = kopf.AnnotationsDiffBaseStorage(**KEY).build(
        body=kopf.Body(copy.deepcopy(body)), extra_fields=extra_fields
    )
    assert ours == theirs


def test_the_essence_has_no_status_and_the_body_is_untouched():
    body = copy.deepcopy(BODY)
    essence = StatuslessDiffBaseStorage(**KEY).build(body=kopf.Body(body))
    assert "status" not in essence and essence["spec"] == BODY["spec"]
    assert body == BODY

"""The pure parts of kube.apply(): when a write is needed, and what it sends."""

from __future__ import annotations

import json

import pytest

from modeldeploy.kube import LAST_APPLIED, _owned_view, _serialise, is_subset, merge_patch_for, needs_write


@pytest.mark.parametrize(
    "desired, live, expected",
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),  # server defaults add fields
        ({"a": 1}, {"a": 2}, False),
        ({"a": [1, 2]}, {"a": [1, 2]}, True),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, False),  # lists must match in length
        ({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 0}]}, True),
        ({"w": 50}, {"w": 50.0}, True),
        ({"b": True}, {"b": 1}, False),
        ({"a": {"b": "c"}}, {"a": None}, False),
    ],
)
def test_is_subset(desired, live, expected):
    assert is_subset(desired, live) is expected


def test_merge_patch_nulls_what_we_stopped_setting():
    last = {"metadata": {"labels": {"a": "1", "old": "x"}}, "spec": {"keep": 1, "gone": 2}}
    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"keep": 1}}
    patch = merge_patch_for(last, desired)
    assert patch == {"metadata": {"labels": {"a": "1", "old": None}}, "spec": {"keep": 1, "gone": None}}


def _live(desired: dict, **changes) -> dict:
    live = json.loads(json.dumps(desired))
    live.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = _serialise(_owned_view(desired))
    live["metadata"]["resourceVersion"] = "7"
    live["status"] = {"x": 1}
    for k, v in changes.items():
        live["spec"][k] = v
    return live


def test_no_write_when_live_matches():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}, "spec": {"x": 1}}
    assert needs_write(desired, _live(desired)) is False


def test_write_when_someone_changed_the_object():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}, "spec": {"x": 1}}
    assert needs_write(desired, _live(desired, x=2)) is True


def test_write_when_desired_changed():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}, "spec": {"x": 1}}
    live = _live(desired)
    desired["spec"]["x"] = 3
    assert needs_write(desired, live) is True

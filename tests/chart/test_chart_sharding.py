"""Sharding by namespace (issue 14 part 4): one Helm release per shard, each with its own watchNamespaces.

docs/operations.md ("Sharding") installs the chart once per shard. For that to be safe the releases
must not share any object (one would overwrite the other's), each operator must be started with
exactly its share (`--namespace` per namespace, never `--all-namespaces`), and each release's
namespaced RBAC and peering objects must sit only in its own share. Two operator processes doing
this against the emulator: tests/integration/test_sharding.py.
"""

from __future__ import annotations

import pytest

from chartlib import NAMESPACE, find, render

SHARDS = {"md-shard-a": ["radiology", "pathology"], "md-shard-b": ["cardiology", "oncology"]}
FEATURES = {"replicaCount": 2, "webDashboard": {"enabled": True}, "actionIdentity": {"admissionPolicy": True}}


def shard_objects(release: str, extra: dict | None = None) -> list[dict]:
    return render({"watchNamespaces": SHARDS[release], **(extra or {})}, name=release, namespace=NAMESPACE, tests=False)


def key(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


@pytest.mark.parametrize("extra", [None, FEATURES], ids=["default", "ha-dashboard-policy"])
def test_two_shard_releases_share_no_object(extra):
    a, b = (shard_objects(release, extra) for release in SHARDS)
    assert not {key(o) for o in a} & {key(o) for o in b}


@pytest.mark.parametrize("extra", [None, FEATURES], ids=["default", "ha-dashboard-policy"])
@pytest.mark.parametrize("release", sorted(SHARDS))
def test_each_shard_operator_watches_exactly_its_share(release, extra):
    objects = shard_objects(release, extra)
    (operator,) = [d for d in find(objects, "Deployment") if not d["metadata"]["name"].endswith("-dashboard")]
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" not in args
    assert sorted(a.split("=", 1)[1] for a in args if a.startswith("--namespace=")) == sorted(SHARDS[release])
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        placed = {o["metadata"]["namespace"] for o in find(objects, kind)}
        assert placed <= set(SHARDS[release]) | {NAMESPACE}, (kind, placed)
    if extra:  # peering (replicaCount > 1): one peering per shard, so one shard's leader never pauses another
        peerings = {o["metadata"]["name"] for o in find(objects, "KopfPeering")}
        assert {o["metadata"]["namespace"] for o in find(objects, "KopfPeering")} == set(SHARDS[release])
        other = next(r for r in SHARDS if r != release)
        assert not peerings & {o["metadata"]["name"] for o in find(shard_objects(other, extra), "KopfPeering")}

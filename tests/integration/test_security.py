"""No secret value ever leaves its Secret through the operator: not in logs, Events, status or children.

The operator only references Secrets by name (env valueFrom / a secret volume); it has no RBAC to read
them. This test plants a recognisable credential and looks for it everywhere the operator writes.
"""

from __future__ import annotations

import base64
import json

import pytest

from cluster import CM, DEPLOY, DR, EVENTS, MD, SVC, VS, Cluster
from test_operator import small_md

CANARY_SECRET = "AKIAZZZ-CANARY-7f3c9-not-for-logs"


@pytest.fixture
def cluster(apiserver, tmp_path):
    c = Cluster(apiserver, tmp_path)
    yield c
    c.close()


def test_secret_values_never_appear_in_logs_events_status_or_children(cluster):
    cluster.api.request("POST", f"/api/v1/namespaces/{cluster.namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-store-credentials"},
        "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(b"AKIAZZZ").decode(),
                 "AWS_SECRET_ACCESS_KEY": base64.b64encode(CANARY_SECRET.encode()).decode()},
    })
    cluster.operator.start()
    md = small_md(version=1)
    md["spec"]["model"]["credentialsSecret"] = "model-store-credentials"
    cluster.apply_md(md)
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: cluster.status("cxr").get("canaryWeight", 0) > 0, timeout=30, what="canary routed")
    cluster.operator.stop()

    dep = cluster.get(DEPLOY, "cxr-v2")
    pod = dep["spec"]["template"]["spec"]
    # s3:// is copied by the model-sync init container (stock TF Serving has no s3 filesystem): only it
    # holds the credentials, by reference; TF Serving itself never sees them.
    sync = next(c for c in pod["initContainers"] if c["name"] == "model-sync")
    serving = pod["containers"][0]
    assert not [e for e in serving.get("env", []) if e["name"].startswith("AWS_")]
    env = {e["name"]: e for e in sync["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "model-store-credentials", "key": "AWS_SECRET_ACCESS_KEY"}}}
    haystacks = {"operator log": cluster.operator.log_text()}
    for kind in (MD, DEPLOY, CM, SVC, VS, DR, EVENTS):
        haystacks[kind[2]] = json.dumps(cluster.list(kind))
    for where, text in haystacks.items():
        assert CANARY_SECRET not in text, f"secret value leaked into {where}"
        assert base64.b64encode(CANARY_SECRET.encode()).decode() not in text, f"encoded secret leaked into {where}"
    # the only Secret write in this namespace is the test's own create
    assert cluster.api.stats(cluster.namespace)["writes_by_resource"].get("secrets", 0) == 1

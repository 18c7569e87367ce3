"""Sharding (issue 14 part 4): two real operator processes, each owning a share of the namespaces.

Each shard is an operator started with `--namespace` per namespace of its share (what the Helm chart
renders per release, see docs/operations.md "Sharding") and an identity whose RBAC covers only that
share. The emulator reports who watched and wrote what (stats: watches, writes_by_user,
forbidden_by_user): each operator watches and writes only in its own namespaces, every
ModelDeployment of both shares becomes Stable, and a stopped shard leaves the other working while its
own objects wait for it.
"""

from __future__ import annotations

import time
import uuid

import pytest

from cluster import DEPLOY, MD, BackgroundLoop
from mdsandbox.controllers import DeploymentController
from mdsandbox.operator_process import OperatorProcess
from modeldeploy import rbac
from test_operator import small_md

ACCOUNT = "modeldeploy-operator"


def _rules(triples: set[tuple[str, str, str]]) -> list[dict]:
    verbs: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in triples:
        verbs.setdefault((group, resource), set()).add(verb)
    return [{"apiGroups": [g], "resources": [r], "verbs": sorted(v)} for (g, r), v in sorted(verbs.items())]


def bind_shard(api, shard: str, namespaces: list[str], tmp_path) -> tuple[str, str]:
    """One operator identity per shard, with modeldeploy.rbac's namespaced rules in ITS namespaces only
    (a Role + RoleBinding in each) and the cluster-scoped ones in a ClusterRole: (user name, kubeconfig)."""
    placed = rbac.rules_for(clusterwide=False, peering=False)
    home = namespaces[0]
    user = f"system:serviceaccount:{home}:{ACCOUNT}"
    token = f"shard-{shard}-{uuid.uuid4().hex[:6]}"
    api.add_user(token, user)
    subjects = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": home}]
    base = "/apis/rbac.authorization.k8s.io/v1"
    for ns in namespaces:
        api.request("POST", f"{base}/namespaces/{ns}/roles",
                    {"metadata": {"name": ACCOUNT}, "rules": _rules(placed["namespace"])})
        api.request("POST", f"{base}/namespaces/{ns}/rolebindings", {
            "metadata": {"name": ACCOUNT}, "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT}})
    cluster_role = f"{ACCOUNT}-{shard}-{home}"
    api.request("POST", f"{base}/clusterroles", {"metadata": {"name": cluster_role}, "rules": _rules(placed["cluster"])})
    api.request("POST", f"{base}/clusterrolebindings", {
        "metadata": {"name": cluster_role}, "subjects": subjects,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}})
    kubeconfig = api.user_kubeconfig(tmp_path / f"shard-{shard}.kubeconfig", token, namespace=home)
    return user, str(kubeconfig)


@pytest.fixture
def shards(apiserver, tmp_path):
    tag = uuid.uuid4().hex[:6]
    share = {"a": [f"sa1-{tag}", f"sa2-{tag}"], "b": [f"sb1-{tag}", f"sb2-{tag}"]}
    for namespaces in share.values():
        for ns in namespaces:
            apiserver.request("POST", "/api/v1/namespaces",
                              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    bg = BackgroundLoop()
    controllers = [DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.3, poll_interval=0.1)
                   for namespaces in share.values() for ns in namespaces]
    for controller in controllers:
        bg.run(controller.start())
    operators, users = {}, {}
    for shard, namespaces in share.items():
        users[shard], kubeconfig = bind_shard(apiserver, shard, namespaces, tmp_path)
        operators[shard] = OperatorProcess(kubeconfig=kubeconfig, namespaces=namespaces,
                                           log_path=tmp_path / f"operator-{shard}.log",
                                           env={"MODELDEPLOY_RESYNC_SECONDS": "2"})
    yield apiserver, share, operators, users
    for op in operators.values():
        op.stop()
    try:
        for controller in controllers:
            bg.run(controller.stop())
    finally:
        bg.close()


def _wait(predicate, timeout: float, what: str, operators: dict):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        for shard, op in operators.items():
            if op.proc is not None and not op.running:
                raise AssertionError(f"operator {shard} died:\n{op.log_text()[-3000:]}")
        time.sleep(0.2)
    logs = "\n".join(f"--- {s}:\n{op.log_text()[-1500:]}" for s, op in operators.items())
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def test_two_shards_each_handle_only_their_own_namespaces(shards):
    api, share, operators, users = shards
    all_namespaces = [ns for namespaces in share.values() for ns in namespaces]
    for op in operators.values():
        op.start()
    for op in operators.values():
        op.wait_metrics(30)
    for ns in all_namespaces:
        for name in ("cxr", "seg"):
            doc = small_md(name=name)
            doc["metadata"] = {"name": name, "namespace": ns}
            api.put_object(*MD, ns, doc)

    def phases() -> dict:
        return {(ns, o["metadata"]["name"]): (o.get("status") or {}).get("phase")
                for ns in all_namespaces for o in api.list_objects(*MD, ns)}

    _wait(lambda: len(phases()) == 8 and set(phases().values()) == {"Stable"}, 60, "all 8 Stable", operators)
    time.sleep(3.0)  # a resync period: the drift checks and idle passes happen too

    stats = api.stats()
    for shard, namespaces in share.items():
        user = users[shard]
        watched = {w["namespace"] for w in stats["watches"] if w["user"] == user}
        # kopf watches each namespace of the share (no cluster-wide watch), nothing of the other share
        assert watched - {""} == set(namespaces), (shard, stats["watches"])
        assert {w["resource"] for w in stats["watches"] if w["user"] == user and w["namespace"] == ""} <= {
            "customresourcedefinitions.apiextensions.k8s.io", "namespaces"}, stats["watches"]
        touched = set(stats["requests_by_user"].get(user, {})) - {""}
        written = set(stats["writes_by_user"].get(user, {})) - {""}
        assert touched == set(namespaces), (shard, stats["requests_by_user"][user])
        assert written == set(namespaces), (shard, stats["writes_by_user"][user])
        assert stats["forbidden_by_user"].get(user, 0) == 0, (shard, stats["forbidden_by_user"])
        for ns in namespaces:  # the children were made by this shard's operator, in this namespace
            assert {d["metadata"]["name"] for d in api.list_objects(*DEPLOY, ns)} == {"cxr-v1", "seg-v1"}

    # A stopped shard: the other one goes on, the stopped one's objects wait for their owner.
    operators["a"].stop()
    a_ns, b_ns = share["a"][0], share["b"][0]
    api.patch_object(*MD, a_ns, "cxr", {"spec": {"model": {"version": 2}}})
    api.patch_object(*MD, b_ns, "cxr", {"spec": {"model": {"version": 2}}})

    def canary(ns: str) -> object:
        return ((api.get_object(*MD, ns, "cxr") or {}).get("status") or {}).get("canaryVersion")

    _wait(lambda: canary(b_ns) == 2, 30, "shard b starts its rollout", {"b": operators["b"]})
    assert canary(a_ns) is None  # nobody else picked up shard a's object
    operators["a"].start()
    _wait(lambda: canary(a_ns) == 2, 30, "shard a, restarted, starts its rollout", operators)

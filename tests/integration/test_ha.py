"""HA: two operator replicas with kopf peering — only the leader acts; kill it and the other takes over.

Takeover time is bounded by the dead leader's peering lifetime (MODELDEPLOY_PEERING_LIFETIME, 20 s
by default; 6 s here) plus kopf's peering check; measured and asserted below.
"""

from __future__ import annotations

import pathlib
import time

import pytest

from cluster import Cluster
from test_operator import small_md

ROOT = pathlib.Path(__file__).resolve().parents[2]
PEERING_CRDS = ROOT / "charts" / "modeldeploy" / "crds" / "kopf-peering.yaml"
LIFETIME = 6


@pytest.fixture
def ha(apiserver, tmp_path):
    apiserver.register_crd_file(PEERING_CRDS)
    c = Cluster(apiserver, tmp_path, peering=True)
    apiserver.request("POST", f"/apis/kopf.dev/v1/namespaces/{c.namespace}/kopfpeerings",
                      {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "modeldeploy"}})
    from mdsandbox.operator_process import OperatorProcess

    def replica(tag: str, priority: int) -> OperatorProcess:
        return OperatorProcess(kubeconfig=c.operator_kubeconfig, namespaces=[c.namespace], log_path=tmp_path / f"operator-{tag}.log",
                               env={"MODELDEPLOY_PEERING": "modeldeploy", "MODELDEPLOY_PEERING_PRIORITY": str(priority),
                                    "MODELDEPLOY_PEERING_LIFETIME": str(LIFETIME), "MODELDEPLOY_RESYNC_SECONDS": "2"})

    leader, standby = replica("leader", 900), replica("standby", 100)
    yield c, leader, standby
    leader.stop()
    standby.stop()
    c.close()


def test_only_the_leader_acts_and_the_standby_takes_over(ha):
    cluster, leader, standby = ha
    def peers() -> dict:
        obj = cluster.api.get_object("kopf.dev", "v1", "kopfpeerings", cluster.namespace, "modeldeploy") or {}
        return {v["priority"]: k for k, v in (obj.get("status") or {}).items()}

    leader.start()
    cluster.wait(lambda: 900 in peers(), timeout=30, what="leader's peering record")
    standby.start()
    standby.wait_metrics()
    cluster.wait(lambda: {900, 100} <= set(peers()), timeout=30, what="both peering records")
    time.sleep(1.0)
    assert "Resuming operations" not in standby.log_text()  # it started paused and stays paused
    cluster.apply_md(small_md(version=1))
    cluster.wait_phase("cxr", "Stable", timeout=30)
    assert "Deploying" in leader.log_text()
    assert "Deploying" not in standby.log_text() and "Deployed" not in standby.log_text()

    leader.kill()
    killed = time.monotonic()
    cluster.patch_md("cxr", {"spec": {"model": {"version": 2}}})
    cluster.wait(lambda: cluster.status("cxr").get("canaryVersion") == 2, timeout=LIFETIME + 20, what="standby took over")
    takeover = time.monotonic() - killed
    assert "Resuming operations" in standby.log_text() or "RolloutStarted" in standby.log_text()
    assert takeover <= LIFETIME + 8, takeover
    print(f"\ntakeover after SIGKILL of the leader: {takeover:.1f} s (peering lifetime {LIFETIME} s)")

"""modeldeploy.kube against the strict API emulator: the aiohttp request path end to end.

Every verb the operator uses, the error translation (404 absent, 409 Conflict, 422/403 permanent,
unreachable temporary), the bearer token of the kubeconfig (RBAC sees who asks), discovery, and the
session's life across event loops (the kubectl plugin runs one loop per command).
"""

from __future__ import annotations

import asyncio
import uuid

import kopf
import pytest

from kubeemu.childprocess import free_port
from modeldeploy.kube import KINDS, MODELDEPLOYMENT, Conflict, Kube, new_api_client, resource_path

CONFIGMAP = KINDS[("v1", "ConfigMap")]
DEPLOYMENT = KINDS[("apps/v1", "Deployment")]


@pytest.fixture
def namespace(apiserver):
    ns = f"k-{uuid.uuid4().hex[:8]}"
    apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


def configmap(ns: str, name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns,
            "labels": {"app": "t"}}, "data": data}  # fmt: skip


@pytest.mark.parametrize("kind,namespace,name,sub,path", [
    (CONFIGMAP, "n", "x", None, "/api/v1/namespaces/n/configmaps/x"),
    (CONFIGMAP, "n", None, None, "/api/v1/namespaces/n/configmaps"),
    (DEPLOYMENT, "n", "d", None, "/apis/apps/v1/namespaces/n/deployments/d"),
    (MODELDEPLOYMENT, "n", "m", "status", "/apis/modeldeploy.io/v1alpha1/namespaces/n/modeldeployments/m/status"),
    (KINDS[("networking.istio.io/v1beta1", "VirtualService")], "n", None, None,
     "/apis/networking.istio.io/v1beta1/namespaces/n/virtualservices"),
])  # fmt: skip
def test_resource_paths(kind, namespace, name, sub, path):
    assert resource_path(kind, namespace, name, sub) == path


async def test_every_verb_and_its_errors(apiserver, namespace):
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=4)
    try:
        created = await kube.create(configmap(namespace, "a", x="1"))
        assert created["metadata"]["uid"] and created["data"] == {"x": "1"}
        got = await kube.get(CONFIGMAP, namespace, "a")
        assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        await kube.create(configmap(namespace, "b"))
        assert {o["metadata"]["name"] for o in await kube.list(CONFIGMAP, namespace, "app=t")} == {"a", "b"}
        assert await kube.list(CONFIGMAP, namespace, "app=other") == []
        patched = await kube.patch(CONFIGMAP, namespace, "a", {"data": {"x": None, "y": "2"}})  # merge patch
        assert patched["data"] == {"y": "2"}
        stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"z": "3"}}
        with pytest.raises(Conflict):  # 409: the precondition names an old resourceVersion
            await kube.patch(CONFIGMAP, namespace, "a", stale)
        with pytest.raises(Conflict):  # 409: already exists
            await kube.create(configmap(namespace, "a"))
        with pytest.raises(kopf.PermanentError, match="Invalid value"):  # 422 with the server's message
            await kube.create(configmap(namespace, "Not_A_Name"))
        assert await kube.delete(CONFIGMAP, namespace, "a") is True
        assert await kube.delete(CONFIGMAP, namespace, "a") is False  # 404: already gone
        assert await kube.get(CONFIGMAP, namespace, "a") is None
        assert "v1" in await kube.served_versions("networking.istio.io")
        assert await kube.served_versions("nothing.example.com") == []
        await kube.emit_event(created, type="Normal", reason="Tested", message="hello")
        events = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [("Tested", "a")]
        assert kube.calls[("create", "ConfigMap")] == 4 and kube.calls[("create", "Event")] == 1
        assert kube.writes == 4 + 1 + 2 + 2  # creates, event, patches, deletes
    finally:
        await kube.aclose()


async def test_the_status_subresource_and_the_token(apiserver, namespace, tmp_path):
    body = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "m", "namespace": namespace},
            "spec": {"model": {"name": "r", "basePath": "s3://models/r", "version": 1},
                     "analysis": {"metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]}}}  # fmt: skip
    apiserver.put_object("modeldeploy.io", "v1alpha1", "modeldeployments", namespace, body)
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=2)
    token = f"t-{uuid.uuid4().hex}"
    apiserver.add_user(token, "nobody")
    stranger = Kube(new_api_client(kubeconfig=str(apiserver.user_kubeconfig(tmp_path / "kc", token))), workers=2)
    try:
        written = await kube.patch_status(namespace, "m", {"phase": "Initializing", "message": "tested"})
        assert written["status"]["message"] == "tested"
        assert (await kube.get_modeldeployment(namespace, "m"))["status"]["phase"] == "Initializing"
        with pytest.raises(kopf.PermanentError, match="403"):  # RBAC: this token's user may not read it
            await stranger.get_modeldeployment(namespace, "m")
        assert await stranger.whoami() in ("nobody", None)  # None: the server does not serve SelfSubjectReview
    finally:
        await kube.aclose()
        await stranger.aclose()


def test_unreachable_is_temporary_and_loops_come_and_go(apiserver, namespace):
    """The plugin runs one event loop per command: the same Kube works in the next loop. A server that does
    not answer is a TemporaryError (kopf retries), never a crash."""
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=2)

    async def once(call):
        try:
            return await call
        finally:
            await kube.aclose()

    assert asyncio.run(once(kube.create(configmap(namespace, "c"))))["metadata"]["name"] == "c"
    assert asyncio.run(once(kube.get(CONFIGMAP, namespace, "c")))["metadata"]["name"] == "c"
    kube.configuration.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(kopf.TemporaryError, match="API unreachable"):
        asyncio.run(once(kube.get(CONFIGMAP, namespace, "c")))

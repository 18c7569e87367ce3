"""
A tiny kopf operator for test_apiserver.py: proves that real kopf works against the API emulator.

It handles ``widgets.test.modeldeploy.io/v1`` (the CRD is in kopf_testop_crd.py) with a create
handler (status + an owned child ConfigMap + an Event), an update handler on ``spec.size``, a
delete handler (behind kopf's finalizer; leaves a marker ConfigMap), a timer counting ticks in
the status, and an async daemon posting heartbeat Events. Watches are short (server timeout 2 s)
so that kopf keeps resuming them from its last resourceVersion during the test.
Run: ``KUBECONFIG=... kopf run --standalone --namespace NS -m kopf_testop_operator``.
"""
import asyncio
from typing import Any

import kopf
import kubernetes

from kopf_testop_crd import FINALIZER, GROUP, PLURAL, VERSION


def _core_api() -> Any:
    kubernetes.config.load_kube_config()
    return kubernetes.client.CoreV1Api()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = 2
    settings.networking.error_backoffs = [0.1, 0.2, 0.5, 1.0]


@kopf.on.create(GROUP, VERSION, PLURAL)
async def created(spec: Any, body: Any, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    child = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': f'{name}-child'},
             'data': {'size': str(spec.get('size', 0))}}
    kopf.adopt(child, owner=body)
    await asyncio.to_thread(_core_api().create_namespaced_config_map, namespace, child)
    patch.status['phase'] = 'Created'
    patch.status['conditions'] = [{'type': 'Ready', 'status': 'True'}]
    kopf.info(body, reason='WidgetCreated', message=f'created {name}')
    return {'size': spec.get('size')}


@kopf.on.update(GROUP, VERSION, PLURAL, field='spec.size')
async def resized(new: Any, patch: kopf.Patch, **_: Any) -> None:
    patch.status['observedSize'] = new


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(name: str, namespace: str, **_: Any) -> None:
    marker = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': f'{name}-deleted'}}
    await asyncio.to_thread(_core_api().create_namespaced_config_map, namespace, marker)


@kopf.timer(GROUP, VERSION, PLURAL, interval=0.3)
async def tick(status: Any, patch: kopf.Patch, **_: Any) -> None:
    patch.status['ticks'] = (status.get('ticks') or 0) + 1


@kopf.daemon(GROUP, VERSION, PLURAL)
async def heartbeat(stopped: kopf.DaemonStopped, body: Any, **_: Any) -> None:
    beats = 0
    while not stopped:
        beats += 1
        kopf.info(body, reason='Heartbeat', message=f'beat {beats}')
        await stopped.wait(0.3)

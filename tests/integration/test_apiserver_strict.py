"""
The API server emulator is as strict as kube-apiserver on writes (issue 11, "make the test bed as strict
as the real thing"): each rule here is something a real server refuses or rewrites, checked over HTTP
against the session's emulator process (each test in its own namespace; milliseconds per test).

Upstream behaviour each rule copies is named in the test's docstring.
"""

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import kubernetes
import pytest

from kopf_testop_crd import GROUP, PLURAL, VERSION, WIDGET_CRD
from kubeemu.process import ApiServerHTTPError, ApiServerProcess


@pytest.fixture(scope='module', autouse=True)
def widget_crd(apiserver: ApiServerProcess) -> None:
    apiserver.register_crd(WIDGET_CRD)


@pytest.fixture()
def ns() -> str:
    return f's-{uuid.uuid4().hex[:10]}'


def http_error(call: Any, *args: Any, **kwargs: Any) -> ApiServerHTTPError:
    with pytest.raises(ApiServerHTTPError) as info:
        call(*args, **kwargs)
    return info.value


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'Widget', 'metadata': {'name': name}, 'spec': spec}


# --- strict JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize('value', [float('nan'), float('inf'), float('-inf')], ids=['NaN', 'Infinity', '-Infinity'])
def test_non_finite_numbers_are_400_on_create_and_patch(apiserver: ApiServerProcess, ns: str, value: float) -> None:
    """kube-apiserver decodes bodies with Go's encoding/json, which has no NaN/Infinity: 400 BadRequest
    (create: "json parse error", merge patch: handlers/patch.go "error decoding patch"). Python's json
    writes them by default (the kubernetes client does: rest.py json.dumps)."""
    created = http_error(apiserver.request, 'POST', f'/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}',
                         widget('w', score=value))
    assert created.code == 400 and created.body['reason'] == 'BadRequest'
    assert 'json parse error: invalid character' in created.body['message']
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w') is None

    apiserver.put_object(GROUP, VERSION, PLURAL, ns, widget('w', score=1.5))
    for subresource in (None, 'status'):
        patched = http_error(apiserver.patch_object, GROUP, VERSION, PLURAL, ns, 'w',
                             {'status' if subresource else 'spec': {'score': value}}, subresource=subresource)
        assert patched.code == 400 and patched.body['message'].startswith('error decoding patch: invalid character')
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w')['spec'] == {'score': 1.5}


def test_the_kubernetes_client_gets_400_for_an_infinite_status_value(apiserver: ApiServerProcess, ns: str) -> None:
    """What an operator sees when a float('inf') reaches a status patch: ApiException 400, nothing stored."""
    apiserver.put_object(GROUP, VERSION, PLURAL, ns, widget('w', size=1))
    with kubernetes.config.new_client_from_config(config_file=apiserver.kubeconfig) as client:
        api = kubernetes.client.CustomObjectsApi(client)
        with pytest.raises(kubernetes.client.ApiException) as info:
            api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, 'w', {'status': {'value': float('inf')}})
        assert info.value.status == 400
        assert json.loads(info.value.body)['reason'] == 'BadRequest'
        api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, 'w', {'status': {'value': 1e308}})
    assert apiserver.get_object(GROUP, VERSION, PLURAL, ns, 'w')['status'] == {'value': 1e308}


def test_a_json_body_is_not_read_as_yaml(apiserver: ApiServerProcess, ns: str) -> None:
    """Content-Type application/json is decoded as JSON only (YAML only with application/yaml)."""
    error = http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/configmaps', None)
    assert error.code == 400
    raw = 'metadata: {name: y}\ndata: {a: b}\n'
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for content_type, code in (('application/json', 400), ('application/yaml', 201)):
        request = urllib.request.Request(f'{apiserver.url}/api/v1/namespaces/{ns}/configmaps', data=raw.encode(),
                                         method='POST', headers={'Content-Type': content_type})
        try:
            with opener.open(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == code, content_type

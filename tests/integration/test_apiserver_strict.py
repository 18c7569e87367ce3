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


# --- built-in objects: the pinned release's schema, Go's decoding and validation ------------------

def deployment(name: str = 'd', *, resources: dict | None = None, labels: dict | None = None,
               tolerations: list | None = None, **container: Any) -> dict[str, Any]:
    labels = labels or {'app': name}
    pod: dict[str, Any] = {'containers': [{'name': 'c', 'image': 'img:1', 'resources': resources or {}, **container}]}
    if tolerations is not None:
        pod['tolerations'] = tolerations
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'labels': labels},
            'spec': {'replicas': 1, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels}, 'spec': pod}}}


def deployments(ns: str, name: str = '') -> str:
    return f'/apis/apps/v1/namespaces/{ns}/deployments' + (f'/{name}' if name else '')


def test_requests_above_limits_are_422_with_the_real_cause(apiserver: ApiServerProcess, ns: str) -> None:
    """pkg/apis/core/validation ValidateResourceRequirements: every request <= its limit (field = the
    requests map, detail names the limit); extended resources (nvidia.com/gpu) need request == limit."""
    error = http_error(apiserver.request, 'POST', deployments(ns), deployment(resources={
        'requests': {'memory': '16Gi', 'cpu': '2'}, 'limits': {'memory': '8Gi', 'cpu': '4'}}))
    assert error.code == 422 and error.body['reason'] == 'Invalid'
    assert error.body['message'] == ('Deployment.apps "d" is invalid: spec.template.spec.containers[0].resources.requests: '
                                     'Invalid value: "16Gi": must be less than or equal to memory limit of 8Gi')
    assert error.body['details'] == {'name': 'd', 'group': 'apps', 'kind': 'Deployment', 'causes': [{
        'reason': 'FieldValueInvalid', 'field': 'spec.template.spec.containers[0].resources.requests',
        'message': 'Invalid value: "16Gi": must be less than or equal to memory limit of 8Gi'}]}
    gpu = http_error(apiserver.request, 'POST', deployments(ns), deployment(resources={
        'requests': {'nvidia.com/gpu': 1}}))
    assert gpu.code == 422 and 'Limit must be set for non overcommitable resources' in gpu.body['message']
    unequal = http_error(apiserver.request, 'POST', deployments(ns), deployment(resources={
        'requests': {'nvidia.com/gpu': 1}, 'limits': {'nvidia.com/gpu': 2}}))
    assert 'must be equal to nvidia.com/gpu limit of 2' in unequal.body['message']
    ok = apiserver.request('POST', deployments(ns), deployment(resources={
        'requests': {'memory': '8Gi', 'nvidia.com/gpu': 1}, 'limits': {'memory': '8Gi', 'nvidia.com/gpu': 1}}))
    assert ok['spec']['template']['spec']['containers'][0]['resources']['limits'] == {'memory': '8Gi', 'nvidia.com/gpu': '1'}
    # an update is validated too (a patch that raises a request above the limit)
    patch = {'spec': {'template': {'spec': {'containers': [{'name': 'c', 'image': 'img:1', 'resources': {
        'requests': {'memory': '9Gi', 'nvidia.com/gpu': 1}, 'limits': {'memory': '8Gi', 'nvidia.com/gpu': 1}}}]}}}}
    assert http_error(apiserver.patch_object, 'apps', 'v1', 'deployments', ns, 'd', patch).code == 422


def test_label_values_and_names_follow_the_63_character_and_dns_rules(apiserver: ApiServerProcess, ns: str) -> None:
    """apimachinery util/validation: label values <= 63 characters of the label alphabet (also in pod
    templates and selectors); Services are RFC 1035 labels, Namespaces RFC 1123 labels, most kinds
    RFC 1123 subdomains (<= 253)."""
    long_value = 'x' * 64
    error = http_error(apiserver.request, 'POST', deployments(ns), deployment(labels={'app': long_value}))
    assert error.code == 422
    fields = {cause['field'] for cause in error.body['details']['causes']}
    assert {'metadata.labels', 'spec.template.metadata.labels', 'spec.selector.matchLabels'} <= fields
    assert f'Invalid value: "{long_value}": must be no more than 63 characters' in error.body['message']
    apiserver.request('POST', deployments(ns), deployment(labels={'app': 'x' * 63}))  # 63 is fine
    bad_key = http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/configmaps',
                         {'metadata': {'name': 'c', 'labels': {'a/b/c': 'v'}}})
    assert bad_key.code == 422 and bad_key.body['details']['causes'][0]['field'] == 'metadata.labels'

    service = {'metadata': {'name': 's' * 64}, 'spec': {'ports': [{'port': 80}]}}
    too_long = http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/services', service)
    assert too_long.code == 422 and 'must be no more than 63 characters' in too_long.body['message']
    digit = http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/services',
                       {**service, 'metadata': {'name': '1-svc'}})
    assert 'a DNS-1035 label must consist of lower case alphanumeric characters' in digit.body['message']
    apiserver.request('POST', f'/api/v1/namespaces/{ns}/services', {**service, 'metadata': {'name': 's' * 63}})
    # a ConfigMap may have a 253-character subdomain name, not 254
    apiserver.request('POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {'name': 'c' * 253}})
    assert http_error(apiserver.request, 'POST', f'/api/v1/namespaces/{ns}/configmaps',
                      {'metadata': {'name': 'c' * 254}}).code == 422


def test_quantities_are_stored_canonical_and_an_equal_write_is_a_no_op(apiserver: ApiServerProcess, ns: str) -> None:
    """resource.Quantity serialises canonically: "0.5" -> "500m", "1024Mi" -> "1Gi", 2 -> "2"; a patch
    that writes the same amount in another spelling changes nothing (no new resourceVersion)."""
    created = apiserver.request('POST', deployments(ns), deployment(resources={
        'requests': {'cpu': '0.5', 'memory': '1024Mi'}, 'limits': {'cpu': 2, 'memory': '1.5Gi'}}))
    resources = created['spec']['template']['spec']['containers'][0]['resources']
    assert resources == {'requests': {'cpu': '500m', 'memory': '1Gi'}, 'limits': {'cpu': '2', 'memory': '1536Mi'}}
    same = apiserver.patch_object('apps', 'v1', 'deployments', ns, 'd', {'spec': {'template': {'spec': {
        'containers': [{'name': 'c', 'image': 'img:1', 'resources': {
            'requests': {'cpu': '500m', 'memory': '1Gi'}, 'limits': {'cpu': '2000m', 'memory': '1536Mi'}}}]}}}})
    assert same['metadata']['resourceVersion'] == created['metadata']['resourceVersion']
    bad = http_error(apiserver.request, 'POST', deployments(ns), deployment('e', resources={'limits': {'cpu': 'lots'}}))
    assert bad.code == 400 and 'quantities must match the regular expression' in bad.body['message']


def test_wrong_types_are_400_and_unknown_fields_follow_field_validation(apiserver: ApiServerProcess, ns: str) -> None:
    """Go decoding: a wrong JSON type is 400 ("cannot unmarshal string into Go struct field"); unknown
    fields are dropped with a Warning header (fieldValidation=Warn, the default) or refused (Strict)."""
    wrong = deployment()
    wrong['spec']['replicas'] = 'two'
    error = http_error(apiserver.request, 'POST', deployments(ns), wrong)
    assert error.code == 400
    assert error.body['message'] == ('Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
                                     'unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32')
    typo = deployment()
    typo['spec']['template']['spec']['containers'][0]['imagePullPolcy'] = 'Always'
    strict = http_error(apiserver.request, 'POST', deployments(ns), typo, params={'fieldValidation': 'Strict'})
    assert strict.code == 400 and 'strict decoding error: unknown field ' \
        '"spec.template.spec.containers[0].imagePullPolcy"' in strict.body['message']
    request = urllib.request.Request(f'{apiserver.url}{deployments(ns)}', data=json.dumps(typo).encode(),
                                     method='POST', headers={'Content-Type': 'application/json'})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        warning = response.headers['Warning']
        stored = json.loads(response.read())
    assert warning == '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolcy\\""'
    assert 'imagePullPolcy' not in stored['spec']['template']['spec']['containers'][0]


def test_empty_optional_fields_are_not_stored(apiserver: ApiServerProcess, ns: str) -> None:
    """Go's omitempty: an optional "" / [] / empty map is not serialised, so a client never reads it back
    (a toleration's effect: "" or value: "", an env var's value: "", empty annotations)."""
    body = deployment(tolerations=[{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': '', 'value': ''}],
                      env=[{'name': 'A', 'value': ''}], args=[])
    body['metadata']['annotations'] = {}
    created = apiserver.request('POST', deployments(ns), body)
    pod = created['spec']['template']['spec']
    assert pod['tolerations'] == [{'key': 'nvidia.com/gpu', 'operator': 'Exists'}]
    assert pod['containers'][0]['env'] == [{'name': 'A'}] and 'args' not in pod['containers'][0]
    assert 'annotations' not in created['metadata']
    assert pod['containers'][0]['resources'] == {}  # a struct is serialised even when empty


def test_pod_template_rules(apiserver: ApiServerProcess, ns: str) -> None:
    """A selector must match the template's labels; tolerations, ports, env names and volume mounts are
    checked like pkg/apis/core/validation does."""
    body = deployment()
    body['spec']['selector'] = {'matchLabels': {'app': 'other'}}
    mismatch = http_error(apiserver.request, 'POST', deployments(ns), body)
    assert '`selector` does not match template `labels`' in mismatch.body['message']
    cases = [
        (deployment(tolerations=[{'operator': 'Equal', 'value': 'x'}]), 'operator must be Exists when `key` is empty'),
        (deployment(tolerations=[{'key': 'k', 'operator': 'Exists', 'value': 'v'}]), "value must be empty when `operator` is 'Exists'"),
        (deployment(tolerations=[{'key': 'k', 'effect': 'NoRun'}]), 'Unsupported value: "NoRun"'),
        (deployment(ports=[{'containerPort': 70000}]), 'must be between 1 and 65535, inclusive'),
        (deployment(ports=[{'containerPort': 80, 'name': 'http-metrics-port'}]), 'must be no more than 15 characters'),
        (deployment(env=[{'name': '1BAD'}]), 'a valid environment variable name'),
        (deployment(volumeMounts=[{'name': 'models', 'mountPath': '/models'}]), 'volumeMounts[0].name: Not found: "models"'),
        (deployment(name='C'), 'Invalid value: "C"'),
    ]
    for i, (body, message) in enumerate(cases):
        body['metadata']['name'] = body['metadata']['name'] if body['metadata']['name'] == 'C' else f'd{i}'
        error = http_error(apiserver.request, 'POST', deployments(ns), body)
        assert error.code == 422 and message in error.body['message'], (message, error.body['message'])


# --- custom resources: their CRD's structural schema ---------------------------------------------

GADGETS = ('strict.example.io', 'v1', 'gadgets')
GADGET_CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'gadgets.strict.example.io'},
    'spec': {'group': 'strict.example.io', 'scope': 'Namespaced',
             'names': {'kind': 'Gadget', 'plural': 'gadgets', 'singular': 'gadget'},
             'versions': [{'name': 'v1', 'served': True, 'storage': True, 'subresources': {'status': {}},
                           'schema': {'openAPIV3Schema': {
                               'type': 'object',
                               'x-kubernetes-validations': [{'rule': 'self.metadata.name.size() <= 20',
                                                             'message': 'names are at most 20 characters'}],
                               'properties': {
                                   'spec': {'type': 'object', 'required': ['size'],
                                            'x-kubernetes-validations': [
                                                {'rule': 'self.min <= self.size', 'message': 'min must not exceed size'},
                                                {'rule': 'self.size >= oldSelf.size', 'message': 'size may not shrink'}],
                                            'properties': {
                                                'size': {'type': 'integer', 'maximum': 10},
                                                'min': {'type': 'integer', 'default': 1},
                                                'ratio': {'type': 'number'},
                                                'mode': {'type': 'string', 'enum': ['fast', 'safe'], 'default': 'safe'},
                                                'tag': {'type': 'string', 'maxLength': 8, 'pattern': '^[a-z]+$'},
                                                'items': {'type': 'array', 'maxItems': 2, 'x-kubernetes-list-type': 'map',
                                                          'x-kubernetes-list-map-keys': ['name'],
                                                          'items': {'type': 'object', 'required': ['name'],
                                                                    'properties': {'name': {'type': 'string'}}}},
                                                'free': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True},
                                            }},
                                   'status': {'type': 'object', 'properties': {
                                       'value': {'type': 'number', 'nullable': True}}},
                               }}}}]}}


@pytest.fixture(scope='module')
def gadgets(apiserver: ApiServerProcess) -> None:
    apiserver.register_crd(GADGET_CRD)


def gadget(name: str = 'g', **spec: Any) -> dict[str, Any]:
    return {'apiVersion': 'strict.example.io/v1', 'kind': 'Gadget', 'metadata': {'name': name}, 'spec': spec}


def gadget_error(apiserver: ApiServerProcess, ns: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
    error = http_error(apiserver.request, 'POST', f'/apis/strict.example.io/v1/namespaces/{ns}/gadgets', body,
                       params=params or None)
    return {'code': error.code, **error.body}


def test_custom_resources_are_pruned_and_defaulted(apiserver: ApiServerProcess, ns: str, gadgets: None) -> None:
    """apiextensions-apiserver: unknown fields are pruned (kept under x-kubernetes-preserve-unknown-fields),
    missing fields with a default get it, nulls of non-nullable fields are dropped; Strict refuses unknown fields."""
    created = apiserver.request('POST', f'/apis/strict.example.io/v1/namespaces/{ns}/gadgets',
                                gadget(size=3, extra='x', ratio=None, free={'any': {'thing': 1}}))
    assert created['spec'] == {'size': 3, 'min': 1, 'mode': 'safe', 'free': {'any': {'thing': 1}}}
    strict = gadget_error(apiserver, ns, gadget('h', size=3, extra='x'), fieldValidation='Strict')
    assert strict['code'] == 400 and 'strict decoding error: unknown field "spec.extra"' in strict['message']
    status = apiserver.patch_object(*GADGETS, ns, 'g', {'status': {'value': 1.5, 'unknown': 1}}, subresource='status')
    assert status['status'] == {'value': 1.5}


def test_custom_resources_are_validated_against_their_schema(apiserver: ApiServerProcess, ns: str, gadgets: None) -> None:
    """kube-openapi's validator with apiextensions' field errors: types, bounds, enum, length, pattern,
    required, item counts, list-map keys; all problems in one 422."""
    error = gadget_error(apiserver, ns, gadget(size='3', mode='turbo', tag='TOO-LONG-TAG', items=[
        {'name': 'a'}, {'name': 'a'}, {}]))
    assert error['code'] == 422 and error['reason'] == 'Invalid'
    causes = {(c['field'], c['reason']) for c in error['details']['causes']}
    assert causes >= {('spec.size', 'FieldValueTypeInvalid'), ('spec.mode', 'FieldValueNotSupported'),
                      ('spec.tag', 'FieldValueTooLong'), ('spec.tag', 'FieldValueInvalid'),
                      ('spec.items', 'FieldValueTooMany'), ('spec.items[1]', 'FieldValueDuplicate'),
                      ('spec.items[2].name', 'FieldValueRequired')}, causes
    assert 'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"' in error['message']
    too_big = gadget_error(apiserver, ns, gadget(size=11))
    assert 'spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10' in too_big['message']
    assert 'spec.size: Required value' in gadget_error(apiserver, ns, gadget())['message']
    bad_status = http_error(apiserver.patch_object, *GADGETS, ns, 'nope', {'status': {'value': 'high'}},
                            subresource='status')
    assert bad_status.code == 404
    apiserver.request('POST', f'/apis/strict.example.io/v1/namespaces/{ns}/gadgets', gadget(size=2))
    bad_status = http_error(apiserver.patch_object, *GADGETS, ns, 'g', {'status': {'value': 'high'}},
                            subresource='status')
    assert bad_status.code == 422 and bad_status.body['details']['causes'][0]['field'] == 'status.value'


def test_custom_resources_run_their_cel_rules(apiserver: ApiServerProcess, ns: str, gadgets: None) -> None:
    """x-kubernetes-validations: rules on self (root rules see metadata.name), transition rules on
    oldSelf only on update; the rule's message is the error."""
    assert 'spec: Invalid value: "object": min must not exceed size' in \
        gadget_error(apiserver, ns, gadget(size=2, min=5))['message']
    assert 'names are at most 20 characters' in gadget_error(apiserver, ns, gadget('g' * 21, size=2))['message']
    apiserver.request('POST', f'/apis/strict.example.io/v1/namespaces/{ns}/gadgets', gadget(size=5))
    shrink = http_error(apiserver.patch_object, *GADGETS, ns, 'g', {'spec': {'size': 4}})
    assert shrink.code == 422 and 'size may not shrink' in shrink.body['message']
    assert apiserver.patch_object(*GADGETS, ns, 'g', {'spec': {'size': 6}})['spec']['size'] == 6


def test_istio_objects_are_validated_against_istio_crd_schemas(apiserver: ApiServerProcess, ns: str) -> None:
    """The session emulator registers Istio's published CRDs (tests/data/thirdparty-crds): a typo is
    pruned (Warn) or refused (Strict), a wrong type is 422, Istio's CEL rules run."""
    vs = {'apiVersion': 'networking.istio.io/v1', 'kind': 'VirtualService', 'metadata': {'name': 'vs'},
          'spec': {'hosts': ['svc'], 'http': [{'route': [{'destination': {'host': 'svc', 'subset': 'v1'}, 'wieght': 100}]}]}}
    path = f'/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices'
    strict = http_error(apiserver.request, 'POST', path, vs, params={'fieldValidation': 'Strict'})
    assert strict.code == 400 and 'unknown field "spec.http[0].route[0].wieght"' in strict.body['message']
    stored = apiserver.request('POST', path, vs)
    assert stored['spec']['http'][0]['route'][0] == {'destination': {'host': 'svc', 'subset': 'v1'}}
    vs['metadata']['name'] = 'vs2'
    vs['spec']['http'][0]['route'][0] = {'destination': {'host': 'svc'}, 'weight': 'all'}
    wrong = http_error(apiserver.request, 'POST', path, vs)
    assert wrong.code == 422 and wrong.body['details']['causes'][0]['field'] == 'spec.http[0].route[0].weight'
    vs['spec']['http'][0]['route'][0] = {'destination': {'host': 'svc'}}
    vs['spec']['http'][0]['timeout'] = '0s'
    cel_rule = http_error(apiserver.request, 'POST', path, vs)
    assert cel_rule.code == 422 and 'spec.http[0].timeout' in cel_rule.body['message']


# --- authorization: RBAC and OwnerReferencesPermissionEnforcement ----------------------------------

def rbac_user(apiserver: ApiServerProcess, ns: str, rules: list[dict[str, Any]], name: str = 'op') -> str:
    """A service account of ``ns`` bound to a Role with ``rules``; returns its bearer token."""
    token = f'token-{uuid.uuid4().hex}'
    apiserver.add_user(token, f'system:serviceaccount:{ns}:{name}')
    apiserver.request('POST', f'/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles',
                      {'metadata': {'name': name}, 'rules': rules})
    apiserver.request('POST', f'/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings', {
        'metadata': {'name': name}, 'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': name},
        'subjects': [{'kind': 'ServiceAccount', 'name': name, 'namespace': ns}]})
    return token


def as_user(apiserver: ApiServerProcess, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    content_type = 'application/merge-patch+json' if method == 'PATCH' else 'application/json'
    request = urllib.request.Request(f'{apiserver.url}{path}', method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={'Content-Type': content_type, 'Authorization': f'Bearer {token}'})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rbac_authorizes_every_request_of_a_bound_identity(apiserver: ApiServerProcess, ns: str) -> None:
    """--authorization-mode RBAC: Role rules by verb, group, resource, subresource and resourceNames;
    a refusal is kube-apiserver's 403; an unknown token is 401."""
    token = rbac_user(apiserver, ns, [
        {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get', 'create']},
        {'apiGroups': [GROUP], 'resources': [f'{PLURAL}/status'], 'verbs': ['patch'], 'resourceNames': ['w']},
    ])
    cms = f'/api/v1/namespaces/{ns}/configmaps'
    assert as_user(apiserver, token, 'POST', cms, {'metadata': {'name': 'c'}})[0] == 201
    assert as_user(apiserver, token, 'GET', f'{cms}/c')[0] == 200
    code, body = as_user(apiserver, token, 'GET', cms)
    assert code == 403 and body['reason'] == 'Forbidden'
    assert body['message'] == (f'configmaps is forbidden: User "system:serviceaccount:{ns}:op" cannot list resource '
                               f'"configmaps" in API group "" in the namespace "{ns}"')
    apiserver.put_object(GROUP, VERSION, PLURAL, ns, widget('w', size=1))
    apiserver.put_object(GROUP, VERSION, PLURAL, ns, widget('x', size=1))
    status = f'/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}'
    assert as_user(apiserver, token, 'PATCH', f'{status}/w/status', {'status': {'a': 1}})[0] == 200
    code, body = as_user(apiserver, token, 'PATCH', f'{status}/x/status', {'status': {'a': 1}})
    assert code == 403 and 'cannot patch resource "widgets/status"' in body['message']
    assert as_user(apiserver, 'no-such-token', 'GET', cms)[0] == 401


def test_owner_references_permission_enforcement(apiserver: ApiServerProcess, ns: str) -> None:
    """plugin/pkg/admission/gc: blockOwnerDeletion: true needs update on the owner's finalizers
    subresource (the famous 403 on OpenShift); changing ownerReferences later needs delete on the object."""
    owner = apiserver.put_object(GROUP, VERSION, PLURAL, ns, widget('owner', size=1))
    ref = {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'Widget', 'name': 'owner', 'uid': owner['metadata']['uid'],
           'controller': True, 'blockOwnerDeletion': True}
    cms = f'/api/v1/namespaces/{ns}/configmaps'
    without = rbac_user(apiserver, ns, [{'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['create', 'patch']}])
    code, body = as_user(apiserver, without, 'POST', cms, {'metadata': {'name': 'a', 'ownerReferences': [ref]}})
    assert code == 403, body
    assert body['message'] == ('configmaps "a" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers '
                               "to a resource you can't set finalizers on: , <nil>")
    not_blocking = {**ref, 'blockOwnerDeletion': False}
    assert as_user(apiserver, without, 'POST', cms, {'metadata': {'name': 'b', 'ownerReferences': [not_blocking]}})[0] == 201
    with_finalizers = rbac_user(apiserver, ns, [
        {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['create', 'patch']},
        {'apiGroups': [GROUP], 'resources': [f'{PLURAL}/finalizers'], 'verbs': ['update']}], name='op2')
    assert as_user(apiserver, with_finalizers, 'POST', cms, {'metadata': {'name': 'c', 'ownerReferences': [ref]}})[0] == 201
    # an update that changes the ownerReferences needs delete on the object itself
    code, body = as_user(apiserver, with_finalizers, 'PATCH', f'{cms}/b', {'metadata': {'ownerReferences': [ref]}})
    assert code == 403 and "cannot set an ownerRef on a resource you can't delete" in body['message']
    # the harness (system:masters) is never refused
    apiserver.request('POST', cms, {'metadata': {'name': 'd', 'ownerReferences': [ref]}})

"""
The Widget CRD (``widgets.test.modeldeploy.io``) used by test_apiserver.py and kopf_testop_operator.py.

Kept apart from the operator module so that tests can use the CRD without importing (and thereby
registering in kopf's global registry) the test operator's handlers.
"""
from typing import Any

GROUP, VERSION, PLURAL = 'test.modeldeploy.io', 'v1', 'widgets'
FINALIZER = 'test.modeldeploy.io/kopf-finalizer'
WIDGET_CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
    'metadata': {'name': f'{PLURAL}.{GROUP}'},
    'spec': {
        'group': GROUP, 'scope': 'Namespaced',
        'names': {'kind': 'Widget', 'plural': PLURAL, 'singular': 'widget', 'shortNames': ['wdg']},
        'versions': [{
            'name': VERSION, 'served': True, 'storage': True,
            'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
            'subresources': {'status': {}, 'scale': {'specReplicasPath': '.spec.size',
                                                     'statusReplicasPath': '.status.observedSize'}},
            'additionalPrinterColumns': [
                {'name': 'Size', 'type': 'integer', 'jsonPath': '.spec.size'},
                {'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'},
                {'name': 'Ready', 'type': 'string', 'jsonPath': '.status.conditions[?(@.type=="Ready")].status'},
                {'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'},
                {'name': 'Ticks', 'type': 'integer', 'jsonPath': '.status.ticks', 'priority': 1},
            ],
        }],
    },
}

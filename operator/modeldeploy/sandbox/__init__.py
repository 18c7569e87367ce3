"""
The sandbox: a self-contained environment to demo and test ModelDeploy without a real cluster.

:mod:`modeldeploy.sandbox.apiserver` is the Kubernetes API server emulator that integration
tests, the demo, the real ``kubectl`` binary and the operator (``kopf run``) talk to over HTTP.
"""

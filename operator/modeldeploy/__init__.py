"""ModelDeploy: a Kubernetes operator that rolls out TensorFlow Serving model versions safely.

Import name of the operator package. The folder above (``operator/``) is a plain directory with no
``__init__.py`` on purpose: a package called ``operator`` would shadow Python's stdlib module.
"""

__version__ = "0.1.0"

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

"""
Shared pytest fixtures.

``apiserver`` (session-scoped) is the Kubernetes API server emulator running as its own process
on 127.0.0.1 (see kubeemu.apiserver), with the ModelDeployment CRD (crds/, if present)
and the third-party CRDs in tests/data/thirdparty-crds/ (Istio, Prometheus operator) registered.
Point clients at ``apiserver.kubeconfig`` / ``apiserver.url``; give every test its own namespace.
"""
import pathlib
from collections.abc import Iterator

import pytest

from kubeemu.process import ApiServerProcess

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELDEPLOY_CRD = REPO_ROOT / 'crds' / 'modeldeployment.yaml'
THIRDPARTY_CRDS = REPO_ROOT / 'tests' / 'data' / 'thirdparty-crds'


def emulator_crd_files() -> list[pathlib.Path]:
    """The CRD files the shared emulator registers at start."""
    files = [MODELDEPLOY_CRD] if MODELDEPLOY_CRD.exists() else []
    return files + sorted(THIRDPARTY_CRDS.glob('*.yaml'))


@pytest.fixture(scope='session')
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    workdir = tmp_path_factory.mktemp('apiserver')
    with ApiServerProcess(crd_files=emulator_crd_files(), workdir=workdir) as server:
        yield server

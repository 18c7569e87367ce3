"""
Shared pytest fixtures.

``apiserver`` (session-scoped) is the Kubernetes API server emulator running as its own process
on 127.0.0.1 (see kubeemu.apiserver), with the ModelDeployment CRD (crds/, if present)
and the third-party CRDs in tests/data/thirdparty-crds/ (Istio, Prometheus operator) registered,
RBAC authorization and the OwnerReferencesPermissionEnforcement admission plugin on (the harness's
own requests are system:admin; `apiserver.add_user` + `user_kubeconfig` give an RBAC-bound identity).
Point clients at ``apiserver.kubeconfig`` / ``apiserver.url``; give every test its own namespace.
"""
import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

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
    # As strict as a hardened cluster: RBAC for every identity but the harness's (system:masters), and
    # OwnerReferencesPermissionEnforcement (OpenShift's default) on.
    with ApiServerProcess(crd_files=emulator_crd_files(), workdir=workdir, authorization_mode='RBAC',
                          admission_plugins=['OwnerReferencesPermissionEnforcement']) as server:
        yield server


# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup). The timing-sensitive sandbox runs
# (tests/e2e: every shipped scenario three at a time, the fault-injection runs, ...) and the CPU-bound model tier (one CI-sized
# TensorFlow training shared by the tier) share one worker, one after the other, as they did on one process:
# the scenarios never compete with TensorFlow for the two cores. Everything else (unit, chart, integration,
# evaluator, dashboard) runs on the other worker meanwhile. Tests sharing an expensive session- or
# module-scoped fixture stay on one worker, so it is built once.
_XDIST_GROUPS = {
    'tests/e2e/': 'sandbox-runs-then-model',
    'tests/model/': 'sandbox-runs-then-model',
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = pathlib.Path(str(item.path)).resolve().relative_to(REPO_ROOT).as_posix()
        for prefix, group in _XDIST_GROUPS.items():
            if path.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
                break


# ---- hypothesis profiles (tests/unit/test_*_properties.py) ----
# `ci` (the default, what `make test` runs): derandomized, so every run tries the same examples and a
# failure reproduces; a fixed max_examples keeps the property suites within their time budget on
# 2 cores. `HYPOTHESIS_PROFILE=long` for a local deep run (random, many more examples).
settings.register_profile(
    'ci', derandomize=True, max_examples=20, stateful_step_count=15, deadline=None, database=None,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    'long', max_examples=2000, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

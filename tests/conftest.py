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
from hypothesis import HealthCheck, Phase, settings

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


# `make test` runs the suite on two pytest-xdist workers. The timing-sensitive sandbox runs (tests/e2e: every
# shipped scenario three at a time, the fault-injection runs, ...) and the CPU-bound model tier (one CI-sized
# TensorFlow training shared by the tier) share one worker, one after the other, as they did in one process:
# the scenarios never compete with TensorFlow for the two cores. Everything else (unit, chart, integration,
# evaluator, dashboard) runs on the other worker meanwhile. Shared session/module fixtures are built once.
# The grouping is a scheduler of our own (xdist's documented hook): xdist 3.8's `xdist_group` marks do not
# work with pytest 9 (the worker renames `item._nodeid`, which pytest 9's `nodeid` no longer reads).
_XDIST_GROUPS = {
    'tests/e2e/': 'sandbox-runs-then-model',
    'tests/model/': 'sandbox-runs-then-model',
}


def xdist_scope(nodeid: str) -> str:
    """The unit of work one xdist worker runs whole: a group above, else the test itself."""
    for prefix, group in _XDIST_GROUPS.items():
        if nodeid.startswith(prefix):
            return group
    return nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN201 - xdist's hook
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        # LoadScopeScheduling queues the biggest scope first: the group starts at once on one worker.
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return GroupScheduling(config, log)


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
# `noshrink`: the ci examples without shrinking (a failure shows at once, unshrunk: for a quick look).
settings.register_profile('noshrink', parent=settings.get_profile('ci'), phases=[Phase.explicit, Phase.generate])
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

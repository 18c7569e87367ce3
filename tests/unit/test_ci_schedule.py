"""`make test`'s two-worker schedule (tests/conftest.py): sandbox runs and the model tier share one worker."""

from __future__ import annotations

import pytest



@pytest.fixture
def xdist_scope(request):
    """tests/conftest.py's scope function, from the loaded plugin (a second import would be another module)."""
    (fn,) = {p.xdist_scope for p in request.config.pluginmanager.get_plugins() if hasattr(p, "xdist_scope")}
    return fn


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("tests/e2e/test_scenarios.py::test_scenario_passes[good-canary-promoted]", "sandbox-runs-then-model"),
        ("tests/e2e/test_faults.py::test_sigkill_ten_times_resumes_and_promotes_once", "sandbox-runs-then-model"),
        ("tests/model/test_model_toolchain.py::test_quantize_full_int8", "sandbox-runs-then-model"),
        ("tests/unit/test_rollout.py::test_transitions[x]", "tests/unit/test_rollout.py::test_transitions[x]"),
        ("tests/integration/test_operator.py::test_idle", "tests/integration/test_operator.py::test_idle"),
        ("tests/evaluator/test_process.py::test_once", "tests/evaluator/test_process.py::test_once"),
    ],
)
def test_sandbox_runs_and_the_model_tier_share_one_worker(xdist_scope, nodeid, scope):
    assert xdist_scope(nodeid) == scope

# ModelDeploy — every entry point a newcomer needs.
#   make demo   set up if needed, then run the sandbox demo (good + bad rollout)
#   make test   set up if needed, then run every test tier
SHELL := /bin/bash
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SETUP_INPUTS := pyproject.toml model/pyproject.toml sandbox/pyproject.toml dashboard/pyproject.toml constraints.txt dashboard/frontend/package-lock.json scripts/setup.sh
STAMP  := $(VENV)/.stamp-$(shell cat $(SETUP_INPUTS) 2>/dev/null | sha1sum | cut -c1-12)
# The dashboard's page is rebuilt when its sources change (setup builds it the first time).
PAGE   := dashboard/mddashboard/static/index.html
PAGE_SOURCES := $(wildcard dashboard/frontend/src/*) dashboard/frontend/index.html dashboard/frontend/vite.config.js
PYTEST_ARGS ?=
# `make test` runs on this many pytest-xdist workers (tests/conftest.py keeps shared fixtures on one worker).
PYTEST_WORKERS ?= 2

.PHONY: lock setup test test-unit test-integration test-e2e test-chart test-evaluator test-model test-dashboard dashboard demo bench docs sync-crds sync-demo clean

setup: $(STAMP) $(PAGE)

$(STAMP): $(SETUP_INPUTS)
	@bash scripts/setup.sh "$(PY_SYS)" "$(VENV)"
	@rm -f $(VENV)/.stamp-* && touch $@

$(PAGE): $(PAGE_SOURCES) | $(STAMP)
	@npm run --prefix dashboard/frontend --silent build >/dev/null && touch $@

test: setup
	@$(PY) -m pytest -p no:cacheprovider -ra -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

test-unit: setup
	@$(PY) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

test-integration: setup
	@$(PY) -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test-e2e: setup
	@$(PY) -m pytest -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

test-chart: setup
	@$(PY) -m pytest -p no:cacheprovider tests/chart $(PYTEST_ARGS)

test-evaluator: setup
	@$(PY) -m pytest -p no:cacheprovider tests/evaluator $(PYTEST_ARGS)

test-dashboard: setup
	@$(PY) -m pytest -p no:cacheprovider tests/dashboard $(PYTEST_ARGS)

# The dashboard against your current kubeconfig context (read-only; see docs/dashboard.md).
dashboard: setup
	@$(PY) -m mdcommon.cli dashboard $(DASHBOARD_ARGS)

test-model: setup
	@$(PY) -m pytest -p no:cacheprovider tests/model $(PYTEST_ARGS)

demo: setup
	@$(PY) -m modeldeploy.cli demo

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

docs: setup
	@$(PY) scripts/gen_api_reference.py

# Re-pin constraints.txt from the current venv. After changing a dependency: drop its line from
# constraints.txt, `make setup`, then `make lock` (review the diff, commit it).
lock:
	@bash scripts/lock.sh "$(VENV)"

sync-crds:
	@cp crds/modeldeployment.yaml operator/modeldeploy/crd/modeldeployment.yaml
	@if [ -d charts/modeldeploy/crds ]; then cp crds/modeldeployment.yaml charts/modeldeploy/crds/modeldeployment.yaml; fi

# The demo's scenarios ship inside the sandbox package (so `modeldeploy demo` runs from a wheel).
sync-demo:
	@cp examples/scenarios/good-canary-promoted.yaml examples/scenarios/latency-regression-rolled-back.yaml sandbox/mdsandbox/demo/

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info */*.egg-info out demo-out dashboard/mddashboard/static dashboard/frontend/node_modules

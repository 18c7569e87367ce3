# ModelDeploy — every entry point a newcomer needs.
#   make demo   set up if needed, then run the sandbox demo (good + bad rollout)
#   make test   set up if needed, then run every test tier
SHELL := /bin/bash
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml model/pyproject.toml sandbox/pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup test test-unit test-integration test-e2e test-chart test-evaluator test-model demo bench docs sync-crds sync-demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml model/pyproject.toml sandbox/pyproject.toml scripts/setup.sh
	@bash scripts/setup.sh "$(PY_SYS)" "$(VENV)"
	@rm -f $(VENV)/.stamp-* && touch $@

test: setup
	@$(PY) -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

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

test-model: setup
	@$(PY) -m pytest -p no:cacheprovider tests/model $(PYTEST_ARGS)

demo: setup
	@$(PY) -m modeldeploy.cli demo

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

docs: setup
	@$(PY) scripts/gen_api_reference.py

sync-crds:
	@cp crds/modeldeployment.yaml operator/modeldeploy/crd/modeldeployment.yaml
	@if [ -d charts/modeldeploy/crds ]; then cp crds/modeldeployment.yaml charts/modeldeploy/crds/modeldeployment.yaml; fi

# The demo's scenarios ship inside the sandbox package (so `modeldeploy demo` runs from a wheel).
sync-demo:
	@cp examples/scenarios/good-canary-promoted.yaml examples/scenarios/latency-regression-rolled-back.yaml sandbox/mdsandbox/demo/

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info */*.egg-info out demo-out

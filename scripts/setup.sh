#!/usr/bin/env bash
# Installs everything ModelDeploy needs on a fresh Debian machine: the Prometheus server (Debian
# package, for tests and the sandbox), a virtualenv with the three distributions of this repository
# installed editable -- the operator (pyproject.toml), the model tool chain + evaluator
# (model/pyproject.toml, with its ml extra) and the sandbox (sandbox/pyproject.toml) -- and the test
# tools. One pip command, so the sandbox's dependencies on `modeldeploy` and `modeldeploy-model` are
# satisfied by these local folders, never looked up in an index. Idempotent; `make setup` runs it
# when a pyproject.toml or this script changed.
set -euo pipefail
PY_SYS=${1:-python3}
VENV=${2:-.venv}

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool  >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing the Prometheus server and promtool (Debian package)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Never start the packaged service (it would listen on 0.0.0.0:9090): we run it ourselves on 127.0.0.1.
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  }
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV"
  "$PY_SYS" -m venv "$VENV"
fi
echo "setup: installing Python packages (operator, model tool chain + evaluator, sandbox, test tools)"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q -e ".[test]" -e "./model[ml]" -e ./sandbox 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import modeldeploy, mdcommon, xraymodel, kubeemu, mdsandbox, kopf, kmock, tensorflow" >/dev/null 2>&1 || {
  echo "setup: FAILED: packages did not import"; exit 1; }
# tensorflow-serving-api pulls the full `tensorflow` (572 MB) as a dependency: install it without deps
# beside tensorflow-cpu (its grpcio and protobuf needs are already met).
"$VENV/bin/python" -m pip install -q --no-deps "tensorflow-serving-api==2.21.0" 2>&1 | grep -v "^WARNING: Location" || true
echo "setup: done ($("$VENV/bin/python" --version), prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'))"

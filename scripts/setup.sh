#!/usr/bin/env bash
# Installs everything ModelDeploy needs on a fresh Debian machine: the Prometheus server and Chromium
# (Debian packages, for tests and the sandbox), the dashboard's page (npm), a virtualenv with the
# four distributions of this repository installed editable -- the operator (pyproject.toml), the
# model tool chain + evaluator (model/pyproject.toml, with its ml and serving-api extras), the sandbox
# (sandbox/pyproject.toml) and the dashboard (dashboard/pyproject.toml) -- and the test tools.
# One pip command: the operator's extras (sandbox, ml, dashboard) name the sibling distributions, and
# the folders given beside it satisfy them (and the sandbox's own `modeldeploy`/`modeldeploy-model`
# requirements), never looked up in an index; ./model/tensorflow-is-tensorflow-cpu meets
# tensorflow-serving-api's `tensorflow` requirement with tensorflow-cpu. Every other package is pinned
# by constraints.txt (reproducible CI; `make lock` rewrites it). Idempotent; `make setup` runs it when a
# pyproject.toml, constraints.txt or this script changed.
set -euo pipefail
PY_SYS=${1:-python3}
VENV=${2:-.venv}

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool  >/dev/null 2>&1 || need_apt+=(prometheus)
# The dashboard's browser test drives Debian's Chromium (playwright-core never downloads a browser here).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# The dashboard's page is built with npm (Vite 7 wants Node >= 20.19; Debian 12's own nodejs is 18).
if ! command -v npm >/dev/null 2>&1; then need_apt+=(nodejs npm); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Never start the packaged service (it would listen on 0.0.0.0:9090): we run it ourselves on 127.0.0.1.
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  }
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# The dashboard's page: npm ci from the committed package-lock.json, then Vite builds it into
# dashboard/mddashboard/static (not committed: built files would be unreviewable and drift from
# their sources; the lock pins every input). Must come before pip builds the dashboard.
echo "setup: building the dashboard's page (npm ci + vite build in dashboard/frontend)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' || {
  echo "setup: FAILED: Node.js >= 20.19 is needed for the dashboard build (found $(node --version 2>&1))"; exit 1; }
npm ci --prefix dashboard/frontend --no-audit --no-fund --loglevel=error >/dev/null
npm run --prefix dashboard/frontend --silent build >/dev/null
[ -f dashboard/mddashboard/static/index.html ] || { echo "setup: FAILED: the dashboard page was not built"; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV"
  "$PY_SYS" -m venv "$VENV"
fi
echo "setup: installing Python packages (operator, model tool chain + evaluator, sandbox, dashboard, test tools)"
"$VENV/bin/python" -m pip install -q -c constraints.txt --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test,sandbox,ml,dashboard]" \
  -e ./model -e ./sandbox -e ./dashboard ./model/tensorflow-is-tensorflow-cpu 2>&1 | grep -v "^WARNING: Location" || true
# The real ChestX-ray14 label file (NIH Clinical Center; no restriction on use, attribution asked) for the
# synthetic generator (model/xraymodel/nih_labels.py): torchxrayvision's wheel ships it as package data. The
# wheel is downloaded, checked and kept as a file, never installed (it would pull in PyTorch).
NIH_DIR="$VENV/share/xraymodel"
NIH_WHEEL="torchxrayvision-1.5.7-py3-none-any.whl"
NIH_SHA256="95f6c3475661f3515d4258deb0855bd5d1b1a56e0b65384251d3dd3fa61fac41"
if ! echo "$NIH_SHA256  $NIH_DIR/$NIH_WHEEL" | sha256sum -c --status 2>/dev/null; then
  echo "setup: downloading the ChestX-ray14 label file ($NIH_WHEEL, not installed)"
  mkdir -p "$NIH_DIR"
  rm -f "$NIH_DIR/$NIH_WHEEL"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: torchxrayvision==1.5.7 -d "$NIH_DIR" 2>&1 | grep -v "^WARNING: Location" || true
  echo "$NIH_SHA256  $NIH_DIR/$NIH_WHEEL" | sha256sum -c --status || {
    echo "setup: FAILED: $NIH_DIR/$NIH_WHEEL is missing or its SHA-256 is not $NIH_SHA256"; exit 1; }
fi
"$VENV/bin/python" -c "import modeldeploy, mdcommon, xraymodel, kubeemu, mdsandbox, mddashboard, kopf, kmock, tensorflow, tensorflow_serving" >/dev/null 2>&1 || {
  echo "setup: FAILED: packages did not import"; exit 1; }
echo "setup: done ($("$VENV/bin/python" --version), prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'))"

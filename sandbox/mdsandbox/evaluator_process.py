"""The online evaluator in the sandbox: the real `modeldeploy evaluator run` as a child process, plus a kubelet.

What a cluster does for the evaluator pod, done here on 127.0.0.1:

* kubelet's ConfigMap volume: a thread polls the operator-rendered ConfigMap ``<name>-evaluator``
  in the API emulator every 0.5 s and writes its ``evaluator.yaml`` key to a local file (atomic
  replace, like kubelet's symlink swap) whenever it changes; the evaluator re-reads that file;
* the golden-set volume: a ``sandbox://golden?...`` goldenSet uri is replaced in that file by a
  folder the sandbox wrote the synthetic set to (`synthetic_golden.materialize`), as a kubelet
  mounts a PVC and the operator passes the mount path: the evaluator knows no ``sandbox://``;
* the container: ``python -m modeldeploy.cli evaluator run --config FILE --connect-to <fleet url>
  --metrics-host 127.0.0.1 --metrics-port <free port>`` — the URLs in the config (each version's
  own Service ``http://<name>-v<N>.<ns>.svc.<domain>:8501``) stay as the operator wrote them: every
  connection goes to the simulated fleet with that host in the Host header, and the fleet routes by
  it as the mesh would (a host of another cluster domain resolves to nothing); its requests carry
  ``x-source-workload: <name>-evaluator`` so the fleet reports them in Istio's metrics with the
  source_workload a mesh would give the evaluator pod, and ``x-sandbox-sidecar: false`` when the
  evaluator pod is modelled without a sidecar (``sidecar=False``);
* Prometheus' pod scrape: `scrape_target()` (job ``evaluator``), which the runner adds to the
  real Prometheus.

The golden set is the sandbox's own (``sandbox://golden``, as a folder): the fleet recognises those images and
answers with predictions whose mean AUROC is each version's configured ``accuracy`` and that carry
its ``outputShift``. Started before the operator has rendered the ConfigMap: the evaluator simply
waits for the file. `stop()` ends the thread and the process (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import pathlib
import sys
import threading
from typing import Any, Protocol

import yaml

from kubeemu.childprocess import LISTEN_HOST, ChildProcess, atomic_write, free_port
from mdsandbox.fleet.istio_metrics import SIDECAR_HEADER, SOURCE_HEADER
from mdsandbox.prometheus_process import ScrapeTarget
from mdsandbox.synthetic_golden import materialize
from modeldeploy import names
from modeldeploy.render.evaluator import CONFIG_FILE

SYNC_INTERVAL = 0.5
JOB = "evaluator"


class ObjectReader(Protocol):
    """What the kubelet part needs of the API: read one object (`kubeemu.process.ApiServerProcess` does)."""

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...


class EvaluatorProcess(ChildProcess):
    """The evaluator of ModelDeployment `namespace`/`name`, reading its ConfigMap from `api`, probing `fleet_url`."""

    what = "evaluator"

    def __init__(
        self,
        *,
        api: ObjectReader,
        namespace: str,
        name: str,
        fleet_url: str,
        workdir: str | os.PathLike[str],
        log_path: str | os.PathLike[str] | None = None,
        port: int | None = None,
        sync_interval: float = SYNC_INTERVAL,
        sidecar: bool = True,
    ) -> None:
        super().__init__(log_path=log_path)
        self.sidecar = sidecar  # False: the evaluator pod is not in the mesh (no VirtualService routes it)
        self.api = api
        self.namespace = namespace
        self.fleet_url = fleet_url
        self.workdir = pathlib.Path(workdir)
        self.port = port or free_port()
        self.sync_interval = float(sync_interval)
        self.config_dir = self.workdir / "evaluator"
        self.config_path = self.config_dir / CONFIG_FILE
        self.configmap_name = names.evaluator_name(name)
        self.syncs = 0  # times the file was (re)written from the ConfigMap
        self.sync_errors = 0
        self._last_text: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.port}"

    def scrape_target(self) -> ScrapeTarget:
        # No namespace/pod target labels: the evaluator's own namespace/modeldeployment labels are the ones queried.
        return ScrapeTarget(JOB, f"{LISTEN_HOST}:{self.port}", "/metrics", {})

    # ------------------------------------------------------------------ kubelet: ConfigMap -> file
    def sync_once(self) -> bool:
        """Copy the ConfigMap's evaluator.yaml to the local file if it changed; True when written."""
        obj = self.api.get_object("", "v1", "configmaps", self.namespace, self.configmap_name)
        text = ((obj or {}).get("data") or {}).get(CONFIG_FILE)
        if text is None or text == self._last_text:
            return False
        self.config_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, self.mounted(text))
        self._last_text = text
        self.syncs += 1
        return True

    def mounted(self, text: str) -> str:
        """The config as the evaluator pod would see it: a sandbox:// golden set becomes its folder."""
        config = yaml.safe_load(text)
        golden = (config or {}).get("goldenSet") if isinstance(config, dict) else None
        if not isinstance(golden, dict) or not str(golden.get("uri", "")).startswith("sandbox://"):
            return text
        folder = materialize(golden["uri"], self.workdir / "golden")
        config["goldenSet"] = dict(golden, uri=str(folder), labels="labels.csv")
        return yaml.safe_dump(config, sort_keys=False)

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 - the API emulator may be busy or stopping: try again
                self.sync_errors += 1
            self._stop.wait(self.sync_interval)

    # ------------------------------------------------------------------ lifecycle
    def command(self) -> list[str]:
        return [sys.executable, "-m", "modeldeploy.cli", "evaluator", "run", "--config", str(self.config_path),
                "--connect-to", self.fleet_url, "--metrics-host", LISTEN_HOST,
                "--metrics-port", str(self.port),
                # the fleet's convention for Istio's source_workload: the evaluator Deployment's name, as in a mesh
                "--header", f"{SOURCE_HEADER}={self.configmap_name}",
                *(() if self.sidecar else ("--header", f"{SIDECAR_HEADER}=false"))]  # fmt: skip

    def start(self, timeout: float = 20.0) -> EvaluatorProcess:
        """Start the ConfigMap sync and the process; return once /healthz answers (blocking)."""
        if self.running:
            return self
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        try:
            self.sync_once()
        except Exception:  # noqa: BLE001
            self.sync_errors += 1
        self._thread = threading.Thread(target=self._sync_loop, name="evaluator-configmap-sync", daemon=True)
        self._thread.start()
        self._spawn(self.command(), env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            self.wait_healthy(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        self.wait_http_ok(f"{self.url}/healthz", timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.terminate(timeout)

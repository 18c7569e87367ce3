"""TF Serving's three text-proto configuration files, rendered with jinja2 (pure).

- model_config.pbtxt: ModelServerConfig with one model, a `specific` version policy pinning the one
  version a Deployment serves, and a version label ("stable" or "canary") so clients can address
  /v1/models/<name>/labels/<label>;
- batching.pbtxt: BatchingParameters (only when spec.serving.batching is set);
- monitoring.pbtxt: MonitoringConfig enabling Prometheus metrics at /monitoring/prometheus/metrics.
The formats are TF Serving's protos (tensorflow_serving/config/*.proto); tests parse the output with
those protos to prove it.
"""

from __future__ import annotations

from functools import lru_cache

import jinja2

from modeldeploy.spec import Batching

METRICS_PATH = "/monitoring/prometheus/metrics"
CONFIG_DIR = "/etc/tfserving"
MODEL_CONFIG_FILE = "model_config.pbtxt"
BATCHING_FILE = "batching.pbtxt"
MONITORING_FILE = "monitoring.pbtxt"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("modeldeploy.render", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _quote(text: str) -> str:
    """A text-proto string body (backslashes and quotes escaped)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def model_config(*, model_name: str, base_path: str, version: int, label: str, deployment: str) -> str:
    return (
        _env()
        .get_template("model_config.pbtxt.j2")
        .render(
            model_name=_quote(model_name),
            base_path=_quote(base_path),
            version=int(version),
            label=_quote(label),
            deployment=deployment,
        )
    )


def batching_config(batching: Batching) -> str:
    return (
        _env()
        .get_template("batching.pbtxt.j2")
        .render(
            max_batch_size=batching.max_batch_size,
            batch_timeout_micros=batching.batch_timeout_micros,
            num_batch_threads=batching.num_batch_threads,
            max_enqueued_batches=batching.max_enqueued_batches,
        )
    )


def monitoring_config() -> str:
    return _env().get_template("monitoring.pbtxt.j2").render(metrics_path=METRICS_PATH)

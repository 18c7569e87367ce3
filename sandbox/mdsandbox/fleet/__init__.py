"""The simulated TF Serving fleet behind Istio sidecars, for ONE ModelDeployment, on 127.0.0.1.

`SimulatedFleet` plays every TF Serving pod of every version of one ModelDeployment (namespace,
Service name, TF Serving model name), their Istio sidecars and the clients sending live traffic.
One module per job:

  simulated_fleet.py    SimulatedFleet: versions, pods, readiness, routing, the data plane
                        (`deliver`), stats, the HTTP server, `scrape_targets`
  behaviour.py          VersionBehaviour: a scenario's ``versions.<v>`` (latencyMs p50/p95,
                        errorRate, accuracy, findingAccuracy, outputShift, ready, changes after
                        first traffic)
  traffic.py            TrafficGenerator: ``rps`` per clock-second, a header share, split by the
                        current VirtualService (`mesh_routing`); plain Service balancing before one
  istio_metrics.py      istio_requests_total / istio_request_duration_milliseconds, both
                        reporters, Istio's full standard label set and default buckets
  tfserving_metrics.py  TF Serving's own per-pod families (:tensorflow:serving:request_count ...)
  exposition.py         the Prometheus text format both are written in
  tfserving_api.py      TF Serving's REST API (status, metadata, predict), per version and
                        through the mesh
  standalone.py         ``python -m mdsandbox.fleet --config fleet.yaml [--prometheus]``

Control: set_routing, set_ready, set_behaviour, set_traffic, stats, start/stop, advance (manual
stepping for tests), scrape_targets.
"""

from mdsandbox.fleet.behaviour import BehaviourChange, VersionBehaviour
from mdsandbox.fleet.istio_metrics import ISTIO_DURATION_BUCKETS_MS, ISTIO_LABELS, SOURCE_HEADER
from mdsandbox.fleet.simulated_fleet import SimulatedFleet
from mdsandbox.fleet.standalone import main
from mdsandbox.fleet.tfserving_metrics import TFS_LATENCY_BUCKETS_US

__all__ = [
    "BehaviourChange",
    "ISTIO_DURATION_BUCKETS_MS",
    "ISTIO_LABELS",
    "SOURCE_HEADER",
    "SimulatedFleet",
    "TFS_LATENCY_BUCKETS_US",
    "VersionBehaviour",
    "main",
]

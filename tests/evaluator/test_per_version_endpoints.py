"""The evaluator calls each version through its own Service ``<name>-v<N>`` (issue 11.9).

The operator lists every live version with its own endpoint
``http://<name>-v<N>.<ns>.svc.<cluster domain>:8501``; that Service selects the version's pods
only, so the call needs neither the preview header nor a VirtualService, and works whether or not
the evaluator pod has a sidecar. The shared ``endpoint`` + ``previewHeader`` stay in the file for
older evaluators (a pinned spec.evaluation.image); a config without per-version endpoints still
works the old way.

The sandbox shows the difference: the fleet routes a per-version call by its Host header as the
mesh would (`SimulatedFleet.host_pick`), and TF Serving in a pod of another version answers 404.
Through the shared Service, an evaluator WITHOUT a sidecar reaches the stable pods only, so the
canary's evaluation fails (what the preview-header design did in ambient mode or without
injection); through the per-version Service it succeeds. A config rendered for another cluster
domain does not resolve at all.
"""

from __future__ import annotations

import copy
import pathlib

import pytest
import yaml

from evaluator_testkit import MODEL, SMALL_GOLDEN
from mdsandbox.fleet import SimulatedFleet
from mdsandbox.fleet.istio_metrics import SIDECAR_HEADER, SOURCE_HEADER
from mdsandbox.synthetic_golden import GoldenSet, materialize
from modeldeploy.plans import Target
from modeldeploy.render import desired_objects
from modeldeploy.render import evaluator as render_evaluator
from modeldeploy.rollout import plans
from modeldeploy.validation import validate_manifest
from xraymodel.evaluator.client import TFServingClient
from xraymodel.evaluator.config import ConfigError, parse_config
from xraymodel.evaluator.exporter import EvaluatorMetrics
from xraymodel.evaluator.service import Evaluator

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS, NAME = "radiology", "resnet50-cxr"
DOMAIN = "corp.example"
STATUS = {"stableVersion": 1, "canaryVersion": 3, "canaryWeight": 25, "rollout": {"readyAt": "x"}}


def _target(domain: str = DOMAIN) -> Target:
    doc = yaml.safe_load((ROOT / "examples/resnet50.yaml").read_text())
    doc["spec"]["model"]["version"] = 1
    result = validate_manifest(doc)
    assert result.ok, result.problems
    return Target(name=NAME, namespace=NS, spec=result.spec, cluster_domain=domain)


# ------------------------------------------------------------------------------ render and config
@pytest.mark.parametrize("domain", ["cluster.local", "corp.example"])
def test_the_config_lists_each_versions_own_service(domain):
    target = _target(domain)
    versions, _ = plans(target.spec, STATUS)
    cfg = render_evaluator.config(target, list(versions))
    assert cfg["versions"] == [
        {"version": 1, "role": "stable", "endpoint": f"http://{NAME}-v1.{NS}.svc.{domain}:8501"},
        {"version": 3, "role": "canary", "endpoint": f"http://{NAME}-v3.{NS}.svc.{domain}:8501"},
    ]
    # kept for evaluators that predate per-version endpoints (the file is a contract between images)
    assert cfg["endpoint"] == f"http://{NAME}.{NS}.svc.{domain}:8501"
    assert cfg["previewHeader"] == "x-modeldeploy-version"
    parsed = parse_config(cfg)
    assert [v.endpoint for v in parsed.versions] == [e["endpoint"] for e in cfg["versions"]]


def _raw(versions: list[dict]) -> dict:
    return {"modelName": MODEL, "endpoint": "http://md.ns.svc.cluster.local:8501",
            "goldenSet": {"uri": "/golden"}, "versions": versions}  # fmt: skip


def test_per_version_endpoints_are_optional_and_checked():
    legacy = parse_config(_raw([{"version": 1, "role": "stable"}]))
    assert legacy.versions[0].endpoint is None  # an older operator's file: the shared endpoint + header
    own = parse_config(_raw([{"version": 1, "role": "stable", "endpoint": "http://md-v1.ns.svc.cluster.local:8501/"}]))
    assert own.versions[0].endpoint == "http://md-v1.ns.svc.cluster.local:8501"
    with pytest.raises(ConfigError, match=r"versions\[0\].endpoint: expected an http\(s\) URL"):
        parse_config(_raw([{"version": 1, "role": "stable", "endpoint": "md-v1:8501"}]))
    # --endpoint-override (kubectl port-forward): every version at that URL, named by the header
    forwarded = own.with_endpoint("http://127.0.0.1:8501")
    assert forwarded.endpoint == "http://127.0.0.1:8501" and forwarded.versions[0].endpoint is None


@pytest.mark.parametrize(
    "endpoint, connect_to, url, headers",
    [
        ("http://md-v3.ns.svc.c.l:8501", None, "http://md-v3.ns.svc.c.l:8501/v1/models/m/versions/3:predict", {}),
        (None, None, "http://md.ns.svc.c.l:8501/v1/models/m/versions/3:predict", {"x-modeldeploy-version": "v3"}),
        ("http://md-v3.ns.svc.c.l:8501", "http://127.0.0.1:4000",
         "http://127.0.0.1:4000/v1/models/m/versions/3:predict", {"Host": "md-v3.ns.svc.c.l:8501"}),
        (None, "http://127.0.0.1:4000", "http://127.0.0.1:4000/v1/models/m/versions/3:predict",
         {"x-modeldeploy-version": "v3", "Host": "md.ns.svc.c.l:8501"}),
    ],
)  # fmt: skip
async def test_where_one_predict_call_goes(endpoint, connect_to, url, headers):
    client = TFServingClient("http://md.ns.svc.c.l:8501", "m", connect_to=connect_to)
    try:
        assert client.request_target(3, endpoint) == (url, headers)
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------ against the fleet
async def _fleet(objects: list[dict]) -> SimulatedFleet:
    """The fleet of a corp.example cluster serving the operator's objects: v1 stable 0.85, v3 canary 0.80."""
    fleet = SimulatedFleet(NS, NAME, MODEL, golden=GoldenSet.from_uri(SMALL_GOLDEN), seed=3, cluster_domain=DOMAIN,
                           versions={"1": {"accuracy": 0.85, "latencyMs": {"p50": 2, "p95": 3}},
                                     "3": {"accuracy": 0.80, "latencyMs": {"p50": 2, "p95": 3}}},
                           traffic={"rps": 0})  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith(f"{NAME}-v"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            fleet.set_workload_ready(int(labels["version"][1:]), obj["metadata"]["name"], labels, 1)
    fleet.set_services([{**o, "metadata": {**o["metadata"], "creationTimestamp": "2025-01-01T00:00:00Z"}}
                        for o in objects if o["kind"] == "Service"])  # fmt: skip
    fleet.set_routing(next(o for o in objects if o["kind"] == "VirtualService"), None)
    return await fleet.start()


def _write(tmp_path: pathlib.Path, cfg: dict, legacy: bool) -> pathlib.Path:
    cfg = copy.deepcopy(cfg)
    cfg["goldenSet"] = {"uri": str(materialize(SMALL_GOLDEN, tmp_path / "golden")), "labels": "labels.csv"}
    cfg.update(interval="10s", timeoutSeconds=2, retries=0, bootstrapResamples=0)
    if legacy:  # the file an operator wrote before per-version endpoints
        for entry in cfg["versions"]:
            entry.pop("endpoint")
    path = tmp_path / "evaluator.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


CASES = [  # (id, config rendered for, legacy file, evaluator has a sidecar, expected: version -> ok)
    ("own-service-sidecar", DOMAIN, False, True, {"v1": True, "v3": True}),
    ("own-service-no-sidecar", DOMAIN, False, False, {"v1": True, "v3": True}),
    ("legacy-preview-header-sidecar", DOMAIN, True, True, {"v1": True, "v3": True}),
    ("legacy-preview-header-no-sidecar", DOMAIN, True, False, {"v1": True, "v3": False}),  # stable pods only
    ("rendered-for-cluster.local", "cluster.local", False, True, {"v1": False, "v3": False}),  # no such host
]


@pytest.mark.parametrize("case, rendered_for, legacy, sidecar, expected", CASES, ids=[c[0] for c in CASES])
async def test_which_versions_the_evaluator_reaches(tmp_path, case, rendered_for, legacy, sidecar, expected):
    target = _target(DOMAIN)
    versions, route = plans(target.spec, STATUS)
    fleet = await _fleet(desired_objects(target, list(versions), route))
    cfg = render_evaluator.config(_target(rendered_for), list(versions))
    headers = {SOURCE_HEADER: f"{NAME}-evaluator", **({} if sidecar else {SIDECAR_HEADER: "false"})}
    ev = Evaluator(_write(tmp_path, cfg, legacy), EvaluatorMetrics(), first_publish_wait=0, extra_headers=headers,
                   connect_to=fleet.url)  # fmt: skip
    try:
        outcomes = await ev.evaluate_all()
    finally:
        await ev.close()
        await fleet.stop()
    assert {label: o.ok for label, o in outcomes.items()} == expected, outcomes
    if expected["v3"]:
        assert outcomes["v3"].evaluation.auroc_mean == pytest.approx(0.80, abs=0.02)  # the canary, not the stable
        assert outcomes["v1"].evaluation.auroc_mean == pytest.approx(0.85, abs=0.02)
    elif expected["v1"]:
        assert outcomes["v3"].reason == "http_4xx"  # a v1 pod's TF Serving: Servable not found (v3)
    else:
        assert {o.reason for o in outcomes.values()} == {"http_5xx"}  # the host does not resolve
    served = {v: s["rest_requests"] for v, s in fleet.stats()["versions"].items()}
    # every canary call reached v3 pods: 8 predict batches and the model_card signature call
    assert served["3"] == (120 // 16 + 1 + 1 if expected["v3"] else 0), served

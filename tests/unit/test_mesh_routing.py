"""Table-driven tests of the sandbox's pure Istio routing model (mdsandbox.mesh_routing)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mdsandbox.mesh_routing import (
    FLAG_NO_CLUSTER,
    FLAG_NO_ROUTE,
    Destination,
    RoutingTable,
    UnsupportedRouting,
    canonical_host,
    route_request,
    same_host,
    selects,
    split_requests,
    traffic_classes,
    validate_virtual_service,
)

HOST = "resnet50"
DR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "resnet50", "namespace": "radiology"},
    "spec": {
        "host": HOST,
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
            {"name": "v3", "labels": {"version": "v3"}},
        ],
    },
}


def dest(subset: str | None, weight: int | None = None, host: str = HOST) -> dict:
    d: dict = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        d["weight"] = weight
    return d


def vs(*http: dict) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "resnet50", "namespace": "radiology"},
        "spec": {"hosts": [HOST], "http": list(http)},
    }


AB = vs(
    {"name": "ab", "match": [{"headers": {"x-model-variant": {"exact": "canary"}}}], "route": [dest("v2")]},
    {"name": "cookie", "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(variant=b)(;.*)?$"}}}], "route": [dest("v3")]},
    {"name": "default", "route": [dest("v1")]},
)

AB_SPACE = vs(
    {"match": [{"headers": {"cookie": {"regex": r"^(.*?;\s*)?(variant=b)(;.*)?$"}}}], "route": [dest("v3")]},
    {"route": [dest("v1")]},
)


# ---------------------------------------------------------------- single-request matching
@pytest.mark.parametrize(
    "spec, headers, expected_version",
    [
        # first matching route wins
        (AB, {"x-model-variant": "canary"}, "v2"),
        (AB, {"X-Model-Variant": "canary"}, "v2"),  # header names are case-insensitive
        (AB, {"x-model-variant": "Canary"}, "v1"),  # values are case-sensitive
        (AB, {"x-model-variant": "canary", "cookie": "variant=b"}, "v2"),  # order decides
        (AB, {"cookie": "session=1;variant=b;theme=dark"}, "v3"),
        # Istio's documented cookie regex does not allow the space browsers put after ';'
        (AB, {"cookie": "session=1; variant=b; theme=dark"}, "v1"),
        (AB_SPACE, {"cookie": "session=1; variant=b; theme=dark"}, "v3"),
        (AB, {"cookie": "variant=bb"}, "v1"),  # regex must match the whole value
        (AB, {}, "v1"),
        # prefix / regex / presence
        (vs({"match": [{"headers": {"x-user": {"prefix": "rad-"}}}], "route": [dest("v2")]}, {"route": [dest("v1")]}),
         {"x-user": "rad-007"}, "v2"),
        (vs({"match": [{"headers": {"x-user": {"prefix": "rad-"}}}], "route": [dest("v2")]}, {"route": [dest("v1")]}),
         {"x-user": "ext-rad-007"}, "v1"),
        (vs({"match": [{"headers": {"x-user": {"regex": "rad-[0-9]+"}}}], "route": [dest("v2")]}, {"route": [dest("v1")]}),
         {"x-user": "rad-12x"}, "v1"),
        (vs({"match": [{"headers": {"x-debug": {}}}], "route": [dest("v3")]}, {"route": [dest("v1")]}),
         {"x-debug": ""}, "v3"),
        (vs({"match": [{"headers": {"x-debug": {}}}], "route": [dest("v3")]}, {"route": [dest("v1")]}),
         {}, "v1"),
        # match entries are OR-ed, conditions inside one entry AND-ed
        (vs({"match": [{"headers": {"a": {"exact": "1"}, "b": {"exact": "2"}}}], "route": [dest("v2")]},
            {"route": [dest("v1")]}), {"a": "1"}, "v1"),
        (vs({"match": [{"headers": {"a": {"exact": "1"}, "b": {"exact": "2"}}}], "route": [dest("v2")]},
            {"route": [dest("v1")]}), {"a": "1", "b": "2"}, "v2"),
        (vs({"match": [{"headers": {"a": {"exact": "1"}}}, {"headers": {"b": {"exact": "2"}}}], "route": [dest("v2")]},
            {"route": [dest("v1")]}), {"b": "2"}, "v2"),
        # withoutHeaders inverts
        (vs({"match": [{"withoutHeaders": {"x-internal": {}}}], "route": [dest("v2")]}, {"route": [dest("v1")]}),
         {"x-internal": "yes"}, "v1"),
        (vs({"match": [{"withoutHeaders": {"x-internal": {}}}], "route": [dest("v2")]}, {"route": [dest("v1")]}),
         {}, "v2"),
        # keys uri/scheme/method/authority inside `headers` are ignored by Istio
        (vs({"match": [{"headers": {"method": {"exact": "GET"}}}], "route": [dest("v2")]}), {}, "v2"),
    ],
)
def test_route_request_matching(spec, headers, expected_version):
    result = route_request(spec, DR, headers, random.Random(1))
    assert result.forwarded
    assert result.version_label == expected_version
    assert result.subset == expected_version
    assert result.subset_labels == {"version": expected_version}


@pytest.mark.parametrize(
    "match, uri, method, query, matched",
    [
        ({"uri": {"prefix": "/v1/models/resnet"}}, "/v1/models/resnet:predict", "POST", {}, True),
        ({"uri": {"exact": "/v1/models/resnet"}}, "/v1/models/resnet:predict", "POST", {}, False),
        ({"uri": {"exact": "/V1/MODELS"}, "ignoreUriCase": True}, "/v1/models", "POST", {}, True),
        ({"method": {"exact": "GET"}}, "/", "POST", {}, False),
        ({"queryParams": {"debug": {"exact": "1"}}}, "/", "GET", {"debug": "1"}, True),
        ({"queryParams": {"debug": {"regex": "[0-9]"}}}, "/", "GET", {"debug": "x"}, False),
    ],
)
def test_uri_method_query_matching(match, uri, method, query, matched):
    spec = vs({"match": [match], "route": [dest("v2")]}, {"route": [dest("v1")]})
    result = route_request(spec, DR, {}, random.Random(0), uri=uri, method=method, query=query)
    assert result.version_label == ("v2" if matched else "v1")


def test_no_matching_route_is_404_nr():
    spec = vs({"match": [{"headers": {"x-model-variant": {"exact": "canary"}}}], "route": [dest("v2")]})
    result = route_request(spec, DR, {}, random.Random(0))
    assert (result.response_code, result.response_flags, result.destination) == (404, FLAG_NO_ROUTE, None)
    assert not result.forwarded


def test_undefined_subset_is_503_nc_and_not_mirrored():
    spec = vs({"route": [dest("v9")], "mirror": {"host": HOST, "subset": "v2"}})
    result = route_request(spec, DR, {}, random.Random(0))
    assert (result.response_code, result.response_flags) == (503, FLAG_NO_CLUSTER)
    assert result.mirror_destination is None


def test_destination_without_subset_selects_whole_service():
    result = route_request(vs({"route": [dest(None)]}), DR, {}, random.Random(0))
    assert result.forwarded and result.subset is None and result.subset_labels == {} and result.version_label is None


def test_accepts_bare_specs_and_full_manifests_alike():
    a = route_request(AB, DR, {"x-model-variant": "canary"}, random.Random(0))
    b = route_request(AB["spec"], DR["spec"], {"x-model-variant": "canary"}, random.Random(0))
    assert a == b


# ---------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "weights, expected_fractions",
    [
        ((90, 10), (0.9, 0.1)),
        ((100, 0), (1.0, 0.0)),
        ((0, 100), (0.0, 1.0)),
        ((50, 50), (0.5, 0.5)),
        ((60, 60), (0.5, 0.5)),  # not 100: normalised as current Istio/Envoy do
        ((1, 3), (0.25, 0.75)),
        ((None, 10), (0.0, 1.0)),  # a missing weight is 0 when there are several destinations
    ],
)
def test_weighted_split_fractions(weights, expected_fractions):
    spec = vs({"route": [dest("v1", weights[0]), dest("v2", weights[1])]})
    table = RoutingTable(spec, DR)
    assert table.routes[0].fractions == pytest.approx(expected_fractions)
    n = 200_000
    split = table.split(n, np.random.default_rng(7))
    for version, frac in zip(("v1", "v2"), expected_fractions):
        got = split.per_version.get(version, 0) / n
        assert got == pytest.approx(frac, abs=0.005), (version, split.per_version)
    # the single-request path agrees with the vectorised one
    rng = random.Random(3)
    picks = [table.route({}, rng).version_label for _ in range(10_000)]
    assert picks.count("v2") / len(picks) == pytest.approx(expected_fractions[1], abs=0.02)


def test_single_destination_gets_everything_whatever_its_weight():
    table = RoutingTable(vs({"route": [dest("v2", 10)]}), DR)
    assert table.routes[0].fractions == (1.0,)


@pytest.mark.parametrize(
    "bad_http, message",
    [
        ({"route": [dest("v1", 0), dest("v2", 0)]}, "total destination weight is 0"),
        ({"route": [dest("v1", -5), dest("v2", 105)]}, "negative weight"),
        ({"route": []}, "at least one destination"),
        ({"route": [dest("v1")], "fault": {"abort": {"httpStatus": 500}}}, "fault"),
        ({"match": [{"sourceLabels": {"app": "x"}}], "route": [dest("v1")]}, "sourceLabels"),
        ({"match": [{"headers": {"a": {"suffix": "x"}}}], "route": [dest("v1")]}, "suffix"),
        ({"route": [dest("v1")], "mirror": {"host": HOST, "subset": "v2"}, "mirrorPercentage": {"value": 150}}, "outside"),
    ],
)
def test_unsupported_or_invalid_specs_raise(bad_http, message):
    with pytest.raises(UnsupportedRouting, match=message):
        table = RoutingTable(vs(bad_http), DR)
        table.route({"a": "b"}, random.Random(0))


def test_validate_warns_like_a_real_mesh():
    spec = vs({"route": [dest("v1", 80), dest("v9", 30)]})
    warnings = validate_virtual_service(spec, DR)
    assert any("110 != 100" in w for w in warnings)
    assert any("'v9'" in w and "NC" in w for w in warnings)
    assert validate_virtual_service(vs({"route": [dest("v1", 90), dest("v2", 10)]}), DR) == []


# ---------------------------------------------------------------- mirroring
@pytest.mark.parametrize(
    "mirror_fields, expected_fraction",
    [
        ({"mirror": {"host": HOST, "subset": "v2"}}, 1.0),  # no percentage = 100 %
        ({"mirror": {"host": HOST, "subset": "v2"}, "mirrorPercentage": {"value": 50.0}}, 0.5),
        ({"mirror": {"host": HOST, "subset": "v2"}, "mirrorPercentage": {"value": 12.5}}, 0.125),
        ({"mirror": {"host": HOST, "subset": "v2"}, "mirrorPercent": 20}, 0.2),
        ({"mirrors": [{"destination": {"host": HOST, "subset": "v2"}, "percentage": {"value": 30}}]}, 0.3),
        ({"mirror": {"host": HOST, "subset": "v2"}, "mirrorPercentage": {"value": 0}}, 0.0),
    ],
)
def test_mirroring(mirror_fields, expected_fraction):
    spec = vs({"route": [dest("v1", 100)], **mirror_fields})
    n = 100_000
    split = split_requests(spec, DR, n, np.random.default_rng(11))
    assert split.per_version == {"v1": n}  # the client's requests all go to the primary
    assert split.mirrored_per_version.get("v2", 0) / n == pytest.approx(expected_fraction, abs=0.006)
    rng = random.Random(5)
    table = RoutingTable(spec, DR)
    results = [table.route({}, rng) for _ in range(10_000)]
    assert all(r.version_label == "v1" for r in results)
    share = sum(r.mirror_version_label == "v2" for r in results) / len(results)
    assert share == pytest.approx(expected_fraction, abs=0.02)
    assert all((r.mirror_subset == "v2") == r.mirrored for r in results)


def test_mirror_to_undefined_subset_is_dropped():
    spec = vs({"route": [dest("v1")], "mirror": {"host": HOST, "subset": "v7"}})
    split = split_requests(spec, DR, 1000, np.random.default_rng(0))
    assert split.mirrored == {} and split.mirror_dropped == 1000 and split.per_version == {"v1": 1000}


# ---------------------------------------------------------------- header shares (A/B) in bulk
@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 1.0])
def test_header_share_split(share):
    n = 100_000
    split = split_requests(AB, DR, n, np.random.default_rng(2), header_share=share,
                           header_set={"x-model-variant": "canary"})  # fmt: skip
    assert split.total == n
    assert split.per_version.get("v2", 0) / n == pytest.approx(share, abs=0.006)
    assert split.per_version.get("v1", 0) / n == pytest.approx(1 - share, abs=0.006)


def test_header_share_with_weights_inside_the_matched_route():
    spec = vs(
        {"match": [{"headers": {"x-model-variant": {"exact": "canary"}}}], "route": [dest("v2", 50), dest("v3", 50)]},
        {"route": [dest("v1")]},
    )
    split = split_requests(spec, DR, 200_000, np.random.default_rng(4), header_share=0.4,
                           header_set={"x-model-variant": "canary"})  # fmt: skip
    per = {k: v / 200_000 for k, v in split.per_version.items()}
    assert per == pytest.approx({"v1": 0.6, "v2": 0.2, "v3": 0.2}, abs=0.006)


def test_unmatched_share_counts_as_no_route():
    spec = vs({"match": [{"headers": {"x-model-variant": {"exact": "canary"}}}], "route": [dest("v2")]})
    split = split_requests(spec, DR, 10_000, np.random.default_rng(4), header_share=0.25,
                           header_set={"x-model-variant": "canary"})  # fmt: skip
    assert split.no_route + split.per_version["v2"] == 10_000
    assert split.no_route / 10_000 == pytest.approx(0.75, abs=0.02)


def test_split_is_reproducible_with_a_seed():
    spec = vs({"route": [dest("v1", 90), dest("v2", 10)]})
    a = split_requests(spec, DR, 1234, np.random.default_rng(9))
    b = split_requests(spec, DR, 1234, np.random.default_rng(9))
    assert a.routed == b.routed and sum(a.routed.values()) == 1234


@pytest.mark.parametrize(
    "share, header_set, expected",
    [
        (0.0, {"a": "1"}, [(1.0, {})]),
        (0.3, None, [(1.0, {})]),
        (0.3, {"a": "1"}, [(0.7, {}), (0.3, {"a": "1"})]),
    ],
)
def test_traffic_classes(share, header_set, expected):
    got = traffic_classes(share, header_set)
    assert [(pytest.approx(s), h) for s, h in got] == expected


# ---------------------------------------------------------------- hosts and selectors
@pytest.mark.parametrize(
    "host, ns, expected",
    [
        ("resnet50", "radiology", "resnet50.radiology.svc.cluster.local"),
        ("resnet50.radiology", None, "resnet50.radiology.svc.cluster.local"),
        ("resnet50.radiology.svc", None, "resnet50.radiology.svc.cluster.local"),
        ("resnet50.radiology.svc.cluster.local", "x", "resnet50.radiology.svc.cluster.local"),
    ],
)
def test_canonical_host(host, ns, expected):
    assert canonical_host(host, ns) == expected


def test_same_host_and_subsets_of_other_hosts():
    assert same_host("resnet50", "resnet50.radiology.svc.cluster.local", "radiology")
    assert not same_host("resnet50", "resnet50.other.svc.cluster.local", "radiology")
    # a destination on another host is not resolved through this DestinationRule's subsets
    spec = vs({"route": [dest("v1", host="other-svc")]})
    result = route_request(spec, DR, {}, random.Random(0))
    assert result.response_flags == FLAG_NO_CLUSTER


@pytest.mark.parametrize(
    "subset_labels, pod_labels, expected",
    [
        ({"version": "v2"}, {"app": "resnet50", "version": "v2"}, True),
        ({"version": "v2"}, {"app": "resnet50", "version": "v1"}, False),
        ({}, {"app": "resnet50"}, True),
        ({"app": "resnet50", "version": "v2"}, {"version": "v2"}, False),
    ],
)
def test_selects(subset_labels, pod_labels, expected):
    assert selects(subset_labels, pod_labels) is expected


# ---------------------------------------------------------------- contract with the product's renderer
def test_routes_what_render_istio_writes():
    """The operator's own VirtualService and Services (render.istio, render.serving) route as intended here."""
    from mdsandbox.mesh_routing import ServiceInfo
    from modeldeploy import names
    from modeldeploy.plans import RoutePlan, Target
    from modeldeploy.render import istio, serving

    target = Target("resnet50", "radiology", spec=None)  # istio.py only needs the identity
    plan = RoutePlan(stable=1, canary=2, canary_weight=25, mirror_percent=10, preview=(1, 2),
                     match=({"headers": {"x-model-variant": {"exact": "canary"}}},))  # fmt: skip
    vs_obj = istio.virtual_service(target, plan)
    services = [serving.service(target, 1), serving.version_service(target, 1), serving.version_service(target, 2)]
    table = RoutingTable(vs_obj, None, services=[ServiceInfo.from_manifest(s) for s in services])
    assert validate_virtual_service(vs_obj) == []
    rng = random.Random(0)
    assert table.route({names.PREVIEW_HEADER: "v1", "x-model-variant": "canary"}, rng).version_label == "v1"
    assert table.route({"x-model-variant": "canary"}, rng).version_label == "v2"
    split = table.split(100_000, np.random.default_rng(1))
    assert split.per_version["v2"] / 100_000 == pytest.approx(0.25, abs=0.006)
    assert split.mirrored_per_version["v2"] / 100_000 == pytest.approx(0.10, abs=0.004)
    # each destination's Service selects the pods render/serving.py labels, and only that version's
    for v in (1, 2):
        labels = table.subset_labels(Destination(names.version_service_host("resnet50", "radiology", v, "cluster.local")))
        assert selects(labels, names.selector_labels("resnet50", v))
        assert not selects(labels, names.selector_labels("resnet50", 3 - v))

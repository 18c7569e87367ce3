"""Study stickiness as header regexes: the regex for weight w matches exactly the keys the reference
bucket function sends to the canary, growing weights only add keys, and the realised share is w."""

from __future__ import annotations

import random
import re

import pytest

from modeldeploy.render import stickiness as sk


def keys(alphabet: str, n: int = 4000, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    chars = sk.ALPHABETS[alphabet]
    out = []
    for _ in range(n):
        if alphabet == "digits":  # DICOM-UID-like: digits and dots, sometimes ending in a one-digit component
            out.append("1.2.840." + ".".join(str(rng.randrange(1, 10**rng.randrange(1, 7))) for _ in range(4)))
        else:
            out.append("".join((c.upper() if rng.random() < 0.5 else c) for c in (rng.choice(chars) for _ in range(rng.randrange(2, 12)))))
    return out + ["", "x", "1", "..", "patient-"]  # keys without two alphabet characters


@pytest.mark.parametrize("alphabet", sorted(sk.ALPHABETS))
@pytest.mark.parametrize("weight", [0, 1, 10, 20, 25, 33, 50, 99, 100])
def test_the_regex_matches_exactly_the_canary_buckets(alphabet, weight):
    k = sk.canary_buckets(weight, alphabet)
    pattern = sk.bucket_regex(k, alphabet)
    for key in keys(alphabet):
        bucket = sk.bucket_of(key, alphabet)
        expected = bucket is not None and bucket < k
        matched = pattern is not None and re.fullmatch(pattern, key) is not None
        assert matched == expected, (key, bucket, k, pattern)


@pytest.mark.parametrize("alphabet", sorted(sk.ALPHABETS))
def test_growing_weights_only_add_studies_and_reach_their_share(alphabet):
    sample = sorted(set(keys(alphabet, 20000, seed=7)))
    previous: set[str] = set()
    for weight in (5, 10, 20, 50, 80, 100):
        pattern = sk.bucket_regex(sk.canary_buckets(weight, alphabet), alphabet)
        on_canary = {key for key in sample if re.fullmatch(pattern, key)}
        assert previous <= on_canary  # a study on the canary stays there at the next step
        keyed = [key for key in sample if sk.bucket_of(key, alphabet) is not None]
        assert len(on_canary) / len(keyed) == pytest.approx(weight / 100, abs=0.02)
        previous = on_canary


def test_known_buckets_of_dicom_uids_and_the_regexes_istio_gets():
    assert sk.bucket_of("1.2.840.113619.2.55.3.604688119.969.1268071029.320", "digits") == 20
    assert sk.bucket_of("1.2.3.7", "digits") == 37  # the last two digits, dots skipped
    assert sk.bucket_of("7", "digits") is None
    assert sk.bucket_of("PAT-00AF", "hex") == 0xAF
    assert sk.bucket_regex(20, "digits") == "^.*[0-1][^0-9]*[0-9][^0-9]*$"
    assert sk.bucket_regex(25, "digits") == "^.*(?:[0-1][^0-9]*[0-9]|[2][^0-9]*[0-4])[^0-9]*$"
    assert sk.bucket_regex(0, "digits") is None
    assert sk.canary_buckets(20, "hex") == 51  # of 256


# ---- what render.istio writes, and what the sandbox's router does with it ------------------------------

def _sticky_target(**edits):
    from test_render import load_target

    return load_target(strategy={"type": "Canary", "canary": {"steps": [20, 50, 100]},
                                 "stickiness": {"header": "x-study-instance-uid"}, **edits})  # fmt: skip


def _table(target, weight):
    from mdsandbox import mesh_routing
    from modeldeploy.plans import RoutePlan
    from modeldeploy.render import istio, serving

    vs = istio.virtual_service(target, RoutePlan(stable=2, canary=3, canary_weight=weight, preview=(2, 3)))
    services = [serving.service(target, 2), serving.version_service(target, 2), serving.version_service(target, 3)]
    return vs, mesh_routing.RoutingTable(vs, None, services=[mesh_routing.ServiceInfo.from_manifest(s) for s in services])


def test_rendered_sticky_routes_are_valid_istio_and_route_keys_by_bucket():
    from test_render import ISTIO_SCHEMAS

    from modeldeploy.validation.openapi import schema_problems

    target = _sticky_target()
    vs, table = _table(target, 20)
    assert not schema_problems(ISTIO_SCHEMAS["VirtualService"], vs)
    names_ = [h["name"] for h in vs["spec"]["http"]]
    assert names_ == ["preview-v2", "preview-v3", "sticky-canary", "sticky-stable", "primary"]
    rng = random.Random(3)
    for key in keys("digits", 500):
        result = table.route({"x-study-instance-uid": key}, rng)
        bucket = sk.bucket_of(key, "digits")
        assert result.version_label == ("v3" if bucket is not None and bucket < 20 else "v2"), key
        assert result.response_headers == {"x-modeldeploy-served-by": result.version_label}
    unkeyed = [table.route({}, rng).version_label for _ in range(4000)]
    assert unkeyed.count("v3") / 4000 == pytest.approx(0.20, abs=0.03)  # no key: split by weight


def test_cohort_keeps_everyone_else_on_stable_for_every_strategy_route():
    from test_render import ISTIO_SCHEMAS

    from modeldeploy.validation.openapi import schema_problems

    target = _sticky_target(cohort={"match": [{"headers": {"x-site": {"exact": "site-a"}}}]})
    vs, table = _table(target, 50)
    assert not schema_problems(ISTIO_SCHEMAS["VirtualService"], vs)
    rng = random.Random(5)
    for key in keys("digits", 300):
        other = table.route({"x-study-instance-uid": key, "x-site": "site-b"}, rng)
        assert other.version_label == "v2"
        mine = table.route({"x-study-instance-uid": key, "x-site": "site-a"}, rng)
        bucket = sk.bucket_of(key, "digits")
        assert mine.version_label == ("v3" if bucket is not None and bucket < 50 else "v2")
    assert {table.route({"x-site": "site-c"}, rng).version_label for _ in range(200)} == {"v2"}
    assert len({table.route({"x-site": "site-a"}, rng).version_label for _ in range(200)}) == 2


@pytest.mark.parametrize("pin, expected_two_version_studies", [(False, "some"), (True, 0)])
def test_studies_in_flight_at_a_step_stay_on_one_version_only_when_pinned(pin, expected_two_version_studies):
    """Fleet-level: studies of 4 images interleaved while the weight goes 20 -> 50 -> 100 (promotion).
    Bucket routing alone moves the in-flight studies whose bucket enters the canary at a step; pinning
    to the served-by header keeps them whole."""
    import numpy as np

    from mdsandbox.studies import StudyTraffic

    target = _sticky_target()
    traffic = StudyTraffic(images_per_study=4, pin=pin)
    rng = np.random.default_rng(11)
    adapter = random.Random(11)
    for weight in (20, 50, 100):
        _, table = _table(target, weight)
        for _ in range(50):  # ticks at this step: 8 keyed requests each
            for study, headers, last in traffic.next_requests(8, rng):
                result = table.route(headers, adapter)
                traffic.answered_by(study, last, result.version_label, result.response_headers)
    stats = traffic.stats()
    assert stats["studies"] > 250
    if expected_two_version_studies == "some":
        assert stats["answeredByTwoVersions"] > 0
    else:
        assert stats["answeredByTwoVersions"] == 0

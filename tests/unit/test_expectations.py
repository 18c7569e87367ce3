"""The e2e oracle (mdsandbox.expectations.check_expectations): one passing and at least one failing row per expectation.

Every scenario's verdict comes from this function; if it answered "ok" too easily every e2e
scenario would pass. Each row gives a scenario `expect` block and a report and says which checks
must fail. The reports are built like `report.build_report` builds them (the same keys).
"""

from __future__ import annotations

import copy

import pytest

from mdsandbox.expectations import check_expectations, passed
from mdsandbox.scenario import Expect


def sample(t, canary=None, routed=0, phase="Stable"):
    return {"t": t, "phase": phase, "stableVersion": 1, "canaryVersion": canary, "canaryWeight": routed,
            "routedWeight": routed, "mirrorPercent": 0.0, "failedChecks": 0, "metrics": {}}  # fmt: skip


PROMOTED = {
    "outcome": "promoted",
    "stableVersion": 2,
    "rollbackSeconds": None,
    "promotionSeconds": 30.5,
    "maxCanaryWeight": 50,
    "timeline": [sample(0), sample(9, 2, 20, "Progressing"), sample(15, 2, 50, "Progressing"), sample(21, None, 0)],
    "eventReasons": ["RolloutStarted", "StepAdvanced", "StepAdvanced", "Promoted"],
    "history": [
        {"action": "deployed", "version": 1, "reason": "first deploy"},
        {"action": "promoted", "version": 2, "reason": "every analysis passed: latency-p95 38 <= 100"},
    ],
    "studies": None,
    "errors": [],
}

ROLLED_BACK = {
    **PROMOTED,
    "outcome": "rolledBack",
    "stableVersion": 1,
    "rollbackSeconds": 12.0,
    "promotionSeconds": None,
    "maxCanaryWeight": 20,
    "timeline": [sample(0), sample(9, 2, 20, "Progressing"), sample(20, 2, 0, "RolledBack"), sample(25, None, 0)],
    "eventReasons": ["RolloutStarted", "AnalysisFailed", "RolledBack"],
    "history": [
        {"action": "deployed", "version": 1},
        {"action": "rolledBack", "version": 2, "reason": "latency-p95 450 > 100 (2 of 2 failed checks)"},
    ],
}

STUDIES = {
    **PROMOTED,
    "outcome": "progressing",
    "studies": {
        "studies": 240,
        "answeredByTwoVersions": 0,
        "versionsBySite": {"site-a": {"v1": 80, "v2": 20}, "site-b": {"v1": 70}, "site-c": {"v1": 70}},
    },
}


CLIENTS = {
    **PROMOTED,
    "clients": {
        "mesh": {"served": {"1": 400, "2": 300}, "unvetted": {"2": 60}},  # preview-header clients asked for v2
        "gateway": {"served": {"1": 150, "2": 90}, "unvetted": {}},
        "nonMesh": {"served": {"1": 140, "2": 80}, "unvetted": {}},
    },
}


WEBHOOKS = {
    **ROLLED_BACK,
    "webhooks": {
        "team": [{"t": 8.5, "event": "RolloutStarted", "status": 200}, {"t": 18.2, "event": "RolledBack", "status": 200}],
        "slow": [{"t": 8.5, "event": "RolloutStarted", "status": None}, {"t": 18.2, "event": "RolledBack", "status": None},
                 {"t": 19.4, "event": "RolloutStarted", "status": None}],  # a retry after the timeout
    },
}  # fmt: skip


def with_(report: dict, **changes) -> dict:
    out = copy.deepcopy(report)
    out.update(changes)
    return out


# (id, expect, report, checks that must fail (in order); [] = every check ok)
ROWS = [
    # outcome / stableVersion: equal or not
    ("outcome-ok", {"outcome": "promoted"}, PROMOTED, []),
    ("outcome-differs", {"outcome": "promoted"}, ROLLED_BACK, ["outcome"]),
    ("stable-ok", {"stableVersion": 2}, PROMOTED, []),
    ("stable-differs", {"stableVersion": 2}, ROLLED_BACK, ["stableVersion"]),
    ("stable-none", {"stableVersion": 1}, with_(PROMOTED, stableVersion=None), ["stableVersion"]),
    # rollbackWithinSeconds: measured and within the bound; not measured fails
    ("rollback-within", {"rollbackWithinSeconds": 12}, ROLLED_BACK, []),
    ("rollback-too-slow", {"rollbackWithinSeconds": 11.9}, ROLLED_BACK, ["rollbackWithinSeconds"]),
    ("rollback-not-measured", {"rollbackWithinSeconds": 60}, PROMOTED, ["rollbackWithinSeconds"]),
    # promotionWithinSeconds: the same shape
    ("promotion-within", {"promotionWithinSeconds": 31}, PROMOTED, []),
    ("promotion-too-slow", {"promotionWithinSeconds": 30}, PROMOTED, ["promotionWithinSeconds"]),
    ("promotion-not-measured", {"promotionWithinSeconds": 60}, ROLLED_BACK, ["promotionWithinSeconds"]),
    # neverWeightAbove: the bound itself is allowed
    ("weight-at-bound", {"neverWeightAbove": 50}, PROMOTED, []),
    ("weight-above", {"neverWeightAbove": 49}, PROMOTED, ["neverWeightAbove"]),
    # neverPromoted: true and false both mean something
    ("never-promoted-ok", {"neverPromoted": True}, ROLLED_BACK, []),
    ("never-promoted-but-was", {"neverPromoted": True}, PROMOTED, ["neverPromoted"]),
    ("promoted-expected", {"neverPromoted": False}, PROMOTED, []),
    ("promoted-expected-not", {"neverPromoted": False}, ROLLED_BACK, ["neverPromoted"]),
    # weightNeverBackwards: a decrease within one canary fails; the end of a rollout (canary None) does not
    ("forwards", {"weightNeverBackwards": True}, PROMOTED, []),
    ("backwards", {"weightNeverBackwards": True}, ROLLED_BACK, ["weightNeverBackwards"]),
    ("backwards-expected", {"weightNeverBackwards": False}, ROLLED_BACK, []),
    ("backwards-expected-not", {"weightNeverBackwards": False}, PROMOTED, ["weightNeverBackwards"]),
    # eventReasons: a subsequence (others may interleave), order matters, each occurrence counts once
    ("reasons-subsequence", {"eventReasons": ["RolloutStarted", "Promoted"]}, PROMOTED, []),
    ("reasons-repeated", {"eventReasons": ["StepAdvanced", "StepAdvanced"]}, PROMOTED, []),
    ("reasons-repeated-too-often", {"eventReasons": ["StepAdvanced"] * 3}, PROMOTED, ["eventReasons"]),
    ("reasons-wrong-order", {"eventReasons": ["Promoted", "RolloutStarted"]}, PROMOTED, ["eventReasons"]),
    ("reasons-missing", {"eventReasons": ["RolledBack"]}, PROMOTED, ["eventReasons"]),
    # historyActions: exactly these, the first deploy left out
    ("history-exact", {"historyActions": ["promoted"]}, PROMOTED, []),
    ("history-other", {"historyActions": ["promoted"]}, ROLLED_BACK, ["historyActions"]),
    ("history-extra", {"historyActions": []}, PROMOTED, ["historyActions"]),
    ("history-none-expected", {"historyActions": []}, with_(PROMOTED, history=[{"action": "deployed"}]), []),
    # historyReasonContains: each text in some reason (the first deploy's reason does not count)
    ("reason-found", {"historyReasonContains": ["2 of 2 failed checks"]}, ROLLED_BACK, []),
    ("reason-missing", {"historyReasonContains": ["450 > 100", "error-rate"]}, ROLLED_BACK, ["historyReasonContains"]),
    ("reason-only-in-deploy", {"historyReasonContains": ["first deploy"]}, PROMOTED, ["historyReasonContains"]),
    # studies: measured or failed
    ("two-versions-ok", {"maxStudiesOnTwoVersions": 0}, STUDIES, []),
    ("two-versions-too-many", {"maxStudiesOnTwoVersions": 2},
     with_(STUDIES, studies={**STUDIES["studies"], "answeredByTwoVersions": 3}), ["maxStudiesOnTwoVersions"]),
    ("two-versions-not-measured", {"maxStudiesOnTwoVersions": 0}, PROMOTED, ["maxStudiesOnTwoVersions"]),
    ("min-studies-ok", {"minStudies": 240}, STUDIES, []),
    ("min-studies-short", {"minStudies": 241}, STUDIES, ["minStudies"]),
    ("min-studies-not-measured", {"minStudies": 1}, PROMOTED, ["minStudies"]),
    ("sites-on-stable", {"sitesOnlyOnStable": ["site-b", "site-c"]}, STUDIES, []),
    ("site-reached-canary", {"sitesOnlyOnStable": ["site-a", "site-b"]}, STUDIES, ["sitesOnlyOnStable"]),
    ("sites-not-measured", {"sitesOnlyOnStable": ["site-b"]}, PROMOTED, ["sitesOnlyOnStable"]),
    # a site that sent no study at all cannot show it stayed on stable
    ("site-without-studies", {"sitesOnlyOnStable": ["site-b", "site-d"]}, STUDIES, ["sitesOnlyOnStable"]),
    # neverServedUnvetted: each class answered, never by a version not yet stable; not measured fails
    ("unvetted-never", {"neverServedUnvetted": ["gateway", "nonMesh"]}, CLIENTS, []),
    ("unvetted-mesh", {"neverServedUnvetted": ["mesh", "nonMesh"]}, CLIENTS, ["neverServedUnvetted"]),
    ("unvetted-class-without-answers", {"neverServedUnvetted": ["gateway"]},
     with_(CLIENTS, clients={"gateway": {"served": {}, "unvetted": {}}}), ["neverServedUnvetted"]),
    ("unvetted-not-measured", {"neverServedUnvetted": ["nonMesh"]}, PROMOTED, ["neverServedUnvetted"]),
    # notificationsReceived: exactly these events per receiver, in first-arrival order; a retry's repeat is one
    ("notified", {"notificationsReceived": {"team": ["RolloutStarted", "RolledBack"]}}, WEBHOOKS, []),
    ("notified-retries-once", {"notificationsReceived": {"slow": ["RolloutStarted", "RolledBack"]}}, WEBHOOKS, []),
    ("notified-missing", {"notificationsReceived": {"team": ["RolloutStarted", "RolledBack", "Promoted"]}}, WEBHOOKS,
     ["notificationsReceived"]),  # fmt: skip
    ("notified-wrong-order", {"notificationsReceived": {"team": ["RolledBack", "RolloutStarted"]}}, WEBHOOKS,
     ["notificationsReceived"]),  # fmt: skip
    ("notified-no-receiver", {"notificationsReceived": {"nobody": []}}, PROMOTED, []),
    ("notified-not-measured", {"notificationsReceived": {"team": ["RolledBack"]}}, PROMOTED, ["notificationsReceived"]),
    # several expectations: only the broken ones fail, in a fixed order
    ("all-of-a-promotion", {"outcome": "promoted", "stableVersion": 2, "promotionWithinSeconds": 35,
                            "neverWeightAbove": 50, "weightNeverBackwards": True, "historyActions": ["promoted"],
                            "eventReasons": ["Promoted"]}, PROMOTED, []),  # fmt: skip
    ("a-rollback-expected-promotion", {"outcome": "promoted", "stableVersion": 2, "promotionWithinSeconds": 35,
                                       "neverWeightAbove": 50, "eventReasons": ["Promoted"]}, ROLLED_BACK,
     ["outcome", "stableVersion", "promotionWithinSeconds", "eventReasons"]),  # fmt: skip
]


@pytest.mark.parametrize("expect,report,failing", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_check_expectations(expect, report, failing):
    checks = check_expectations(Expect.model_validate(expect), report, initial_version=1)
    assert [c["expect"] for c in checks] == [k for k in CHECK_ORDER if k in expect], "one check per expectation set"
    assert [c["expect"] for c in checks if not c["ok"]] == failing, checks
    for c in checks:
        assert c["expected"] == expect[c["expect"]]
    assert passed(checks, []) == (not failing)


CHECK_ORDER = [
    "outcome", "stableVersion", "rollbackWithinSeconds", "promotionWithinSeconds", "neverWeightAbove",
    "neverPromoted", "weightNeverBackwards", "eventReasons", "historyActions", "maxStudiesOnTwoVersions",
    "minStudies", "sitesOnlyOnStable", "neverServedUnvetted", "notificationsReceived", "historyReasonContains",
]  # fmt: skip


def test_every_expectation_has_a_failing_row():
    """A new `expect` field without a row here would be an untested part of the oracle."""
    fields = set(Expect.model_fields)
    assert set(CHECK_ORDER) == fields
    failing = {name for _, _, _, f in ROWS for name in f}
    assert failing == fields, fields - failing


def test_no_expectation_is_no_check_but_errors_still_fail():
    assert check_expectations(Expect(), PROMOTED, initial_version=1) == []
    assert passed([], []) is True
    assert passed([], ["operator exited 1"]) is False
    ok = check_expectations(Expect(outcome="promoted"), PROMOTED, initial_version=1)
    assert passed(ok, ["Prometheus never became ready"]) is False

"""The e2e oracle: does a sandbox run's REPORT meet its scenario's ``expect``? Pure, and unit-tested.

`check_expectations(expect, report)` returns one check per expectation set, each
``{expect, expected, actual, ok}``:

  outcome, stableVersion          equal to the report's
  rollbackWithinSeconds           rollbackSeconds measured and <= the bound
  promotionWithinSeconds          promotionSeconds measured and <= the bound
  neverWeightAbove                maxCanaryWeight <= the bound
  neverPromoted                   (no "promoted" history entry) == the expectation
  weightNeverBackwards            (no routed-weight decrease within one canary) == the expectation
  eventReasons                    these reasons were emitted in this order (others may interleave)
  historyActions                  exactly these history actions, in order (the first deploy left out)
  maxStudiesOnTwoVersions         at most this many studies were answered by two versions (stickiness)
  minStudies                      at least this many studies were seen
  sitesOnlyOnStable               these sites' studies reached only the initial (stable) version (and
                                  each site completed some study)
  historyReasonContains           each text appears in some history reason (the first deploy left out)
  notificationsReceived           each sandbox webhook receiver got exactly these notification events, in the
                                  order they first arrived (retries repeat one)
  neverServedUnvetted             each listed client class (mesh, gateway, nonMesh) got live answers, and
                                  none from a version that had not been stable by that moment

A run `passed` when every check is ok and the run recorded no error. An expectation the report
cannot answer (no rollback measured, for a rollback bound) fails: never "not measured = fine".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdsandbox.scenario import Expect


def check_expectations(exp: Expect, report: Mapping[str, Any], *, initial_version: int | None = None) -> list[dict]:
    """One check per expectation the scenario sets: {expect, expected, actual, ok}, in a fixed order."""
    checks: list[dict] = []

    def check(name: str, expected: Any, actual: Any, ok: bool) -> None:
        checks.append({"expect": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    if exp.outcome is not None:
        check("outcome", exp.outcome, report["outcome"], report["outcome"] == exp.outcome)
    if exp.stableVersion is not None:
        check("stableVersion", exp.stableVersion, report["stableVersion"], report["stableVersion"] == exp.stableVersion)
    if exp.rollbackWithinSeconds is not None:
        actual = report["rollbackSeconds"]
        check(
            "rollbackWithinSeconds",
            exp.rollbackWithinSeconds,
            actual,
            actual is not None and actual <= exp.rollbackWithinSeconds,
        )
    if exp.promotionWithinSeconds is not None:
        actual = report["promotionSeconds"]
        check(
            "promotionWithinSeconds",
            exp.promotionWithinSeconds,
            actual,
            actual is not None and actual <= exp.promotionWithinSeconds,
        )
    if exp.neverWeightAbove is not None:
        check(
            "neverWeightAbove",
            exp.neverWeightAbove,
            report["maxCanaryWeight"],
            report["maxCanaryWeight"] <= exp.neverWeightAbove,
        )
    if exp.neverPromoted is not None:
        promoted = any(h.get("action") == "promoted" for h in report["history"])
        check("neverPromoted", exp.neverPromoted, not promoted, (not promoted) == exp.neverPromoted)
    if exp.weightNeverBackwards is not None:
        backwards = []
        timeline = report["timeline"]
        for a, b in zip(timeline, timeline[1:]):
            if (
                a["canaryVersion"] is not None
                and a["canaryVersion"] == b["canaryVersion"]
                and b["routedWeight"] < a["routedWeight"]
            ):
                backwards.append({"t": b["t"], "from": a["routedWeight"], "to": b["routedWeight"]})
        check(
            "weightNeverBackwards",
            exp.weightNeverBackwards,
            backwards or "never",
            (not backwards) == exp.weightNeverBackwards,
        )
    if exp.eventReasons is not None:
        seen = iter(report["eventReasons"])
        in_order = all(any(r == want for r in seen) for want in exp.eventReasons)
        check("eventReasons", exp.eventReasons, report["eventReasons"], in_order)
    if exp.historyActions is not None:
        actions = [h.get("action") for h in report["history"] if h.get("action") != "deployed"]
        check("historyActions", exp.historyActions, actions, actions == exp.historyActions)
    studies = report.get("studies") or {}
    if exp.maxStudiesOnTwoVersions is not None:
        got = studies.get("answeredByTwoVersions")
        check("maxStudiesOnTwoVersions", exp.maxStudiesOnTwoVersions, got,
              got is not None and got <= exp.maxStudiesOnTwoVersions)  # fmt: skip
    if exp.minStudies is not None:
        got = studies.get("studies", 0)
        check("minStudies", exp.minStudies, got, got >= exp.minStudies)
    if exp.sitesOnlyOnStable is not None:
        initial = f"v{initial_version}"
        reached = {site: sorted(studies.get("versionsBySite", {}).get(site, {})) for site in exp.sitesOnlyOnStable}
        # a site that completed no study cannot show it stayed on stable: it fails too
        check("sitesOnlyOnStable", exp.sitesOnlyOnStable, reached,
              bool(studies) and all(v == [initial] for v in reached.values()))  # fmt: skip
    if exp.neverServedUnvetted is not None:
        clients = report.get("clients") or {}
        actual = {c: (clients.get(c) or {"served": {}, "unvetted": {}}) for c in exp.neverServedUnvetted}
        ok = all(sum(a["served"].values()) > 0 and not sum(a["unvetted"].values()) for a in actual.values())
        check("neverServedUnvetted", exp.neverServedUnvetted, actual, ok)
    if exp.notificationsReceived is not None:
        got = {}
        for receiver in exp.notificationsReceived:
            events: list[str] = []
            for request in (report.get("webhooks") or {}).get(receiver) or []:
                if request.get("event") and request["event"] not in events:  # a retry repeats one
                    events.append(request["event"])
            got[receiver] = events
        check("notificationsReceived", exp.notificationsReceived, got, got == exp.notificationsReceived)
    if exp.historyReasonContains is not None:
        reasons = [h.get("reason") or "" for h in report["history"] if h.get("action") != "deployed"]
        missing = [text for text in exp.historyReasonContains if not any(text in r for r in reasons)]
        check("historyReasonContains", exp.historyReasonContains, reasons, not missing)
    return checks


def passed(checks: list[dict], errors: list[str]) -> bool:
    """Every expectation held and the run recorded no error."""
    return all(c["ok"] for c in checks) and not errors


__all__ = ["check_expectations", "passed"]

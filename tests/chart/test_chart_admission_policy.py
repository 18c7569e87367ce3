"""The chart's ValidatingAdmissionPolicy that binds modeldeploy.io/action-by to the authenticated requester.

Its CEL is evaluated here with the `common-expression-language` package (core CEL, as the API server
runs it; `variables` are evaluated first, in order, as the API server does) on the requests that
matter: a user naming themself, naming someone else, naming nobody, the operator removing a handled
action, unrelated updates.
"""

from __future__ import annotations

import cel
import pytest

from chartlib import one, render

ACTION, BY = "modeldeploy.io/action", "modeldeploy.io/action-by"


DASHBOARD_SA = "system:serviceaccount:modeldeploy-system:modeldeploy-dashboard"  # the chart's dashboard ServiceAccount
VIA = "modeldeploy.io/action-via"


def policy(values: dict | None = None) -> dict:
    return one(render(values or {}), "ValidatingAdmissionPolicy")


def admit(old_annotations: dict | None, new_annotations: dict | None, user: str, *, create: bool = False,
          values: dict | None = None) -> tuple[bool, str]:
    """(allowed, message) of one request under the rendered policy."""
    spec = policy(values)["spec"]
    obj = {"metadata": {"name": "cxr"} | ({"annotations": new_annotations} if new_annotations is not None else {})}
    old = None if create else {"metadata": {"name": "cxr"} | ({"annotations": old_annotations} if old_annotations is not None else {})}
    activation = {"object": obj, "oldObject": old, "request": {"userInfo": {"username": user}, "operation": "CREATE" if create else "UPDATE"}}
    variables: dict = {}
    for var in spec["variables"]:
        variables[var["name"]] = cel.compile(var["expression"]).execute({**activation, "variables": variables})
    activation["variables"] = variables
    if not all(cel.compile(c["expression"]).execute(activation) is True for c in spec["matchConditions"]):
        return True, "not matched"
    for v in spec["validations"]:
        if cel.compile(v["expression"]).execute(activation) is not True:
            return False, cel.compile(v["messageExpression"]).execute(activation)
    return True, "validated"


@pytest.mark.parametrize("old, new, user, allowed, why", [
    (None, {ACTION: "abort", BY: "dr-jones"}, "dr-jones", True, "validated"),             # names themself
    ({}, {ACTION: "abort", BY: "dr-jones"}, "mallory", False, '("mallory")'),              # names someone else
    ({}, {ACTION: "promote"}, "dr-jones", False, "action-by must be"),                   # names nobody
    ({ACTION: "abort", BY: "dr-jones"}, {}, "system:serviceaccount:modeldeploy-system:modeldeploy", True, "not matched"),  # operator clears it
    ({ACTION: "abort", BY: "dr-jones"}, {ACTION: "abort", BY: "dr-jones", "x": "y"}, "ci-bot", True, "not matched"),  # unrelated edit
    ({ACTION: "abort", BY: "dr-jones"}, {ACTION: "abort", BY: "mallory"}, "mallory", True, "validated"),  # re-claims it as themself
    ({ACTION: "abort", BY: "dr-jones"}, {ACTION: "abort", BY: "dr-who"}, "mallory", False, '("mallory")'),  # rewrites who asked
    (None, None, "dr-jones", True, "not matched"),                                          # no annotations at all
])  # fmt: skip
def test_action_by_must_be_the_authenticated_requester(old, new, user, allowed, why):
    ok, message = admit(old, new, user)
    assert ok is allowed and why in message, message


def test_a_create_with_an_action_is_checked_too():
    assert admit(None, {ACTION: "pause", BY: "bob"}, "alice", create=True)[0] is False
    assert admit(None, {ACTION: "pause", BY: "alice"}, "alice", create=True)[0] is True


def test_binding_denies_and_the_operator_knows_the_policy():
    objects = render({})
    vap = one(objects, "ValidatingAdmissionPolicy")
    binding = one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"] and "Deny" in binding["spec"]["validationActions"]
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert vap["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["modeldeployments"]
    env = {e["name"]: e.get("value") for e in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELDEPLOY_ACTION_BY_POLICY"] == vap["metadata"]["name"]
    off = render({"actionIdentity": {"admissionPolicy": False}})
    assert not [o for o in off if o["kind"].startswith("ValidatingAdmissionPolicy")]
    env_off = {e["name"] for e in one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "MODELDEPLOY_ACTION_BY_POLICY" not in env_off


WITH_DASHBOARD = {"webDashboard": {"enabled": True, "allowActions": True, "identityHeader": "X-Forwarded-User"}}


@pytest.mark.parametrize("user, annotations, values, allowed", [
    # the dashboard (a trusted proxy) asks for alice, naming itself
    (DASHBOARD_SA, {ACTION: "abort", BY: "alice (via dashboard)", VIA: DASHBOARD_SA}, WITH_DASHBOARD, True),
    # ...but not without naming itself, and not when it may not act
    (DASHBOARD_SA, {ACTION: "abort", BY: "alice (via dashboard)"}, WITH_DASHBOARD, False),
    (DASHBOARD_SA, {ACTION: "abort", BY: "alice (via dashboard)", VIA: DASHBOARD_SA}, {}, False),
    # a user cannot pose as the proxy, nor claim to come through it
    ("mallory", {ACTION: "abort", BY: "alice", VIA: DASHBOARD_SA}, WITH_DASHBOARD, False),
    ("mallory", {ACTION: "abort", BY: "mallory", VIA: DASHBOARD_SA}, WITH_DASHBOARD, False),
    # a configured portal
    ("portal", {ACTION: "pause", BY: "dr-who", VIA: "portal"}, {"actionIdentity": {"trustedProxies": ["portal"]}}, True),
])  # fmt: skip
def test_trusted_proxies_name_themselves(user, annotations, values, allowed):
    ok, message = admit({}, annotations, user, values=values)
    assert ok is allowed, message

"""Pure pieces of the API emulator's strictness (kubeemu): each one a rule of kube-apiserver.

The HTTP behaviour (status codes, Status bodies) is tested against a running emulator in
tests/integration/test_apiserver_strict.py; here the table-driven parts, without a server.
"""

import math

import cel
import pytest

from kubeemu import crd_schema, decode, fielderrors, quantity


@pytest.mark.parametrize("body,message", [
    ('{"a": NaN}', "invalid character 'N' looking for beginning of value"),
    ('{"a": Infinity}', "invalid character 'I' looking for beginning of value"),
    ('{"a": -Infinity}', "invalid character 'I' in numeric literal"),
    ('[1, {"b": [NaN]}]', "invalid character 'N' looking for beginning of value"),
])
def test_strict_json_refuses_non_finite_numbers_like_go(body, message):
    with pytest.raises(decode.BodyError, match=message):
        decode.loads(body)


def test_strict_json_keeps_everything_json_has():
    assert decode.loads('{"a": 1e308, "b": -0.0, "c": "NaN", "d": [null, true]}') == {
        "a": 1e308, "b": -0.0, "c": "NaN", "d": [None, True]}
    with pytest.raises(decode.BodyError):
        decode.loads('{"a": 1} trailing')


def test_non_finite_path_names_the_first_offender():
    assert decode.non_finite_path({"status": {"metrics": [{"value": 1.0}, {"value": math.inf}]}}) == \
        "status.metrics[1].value"
    assert decode.non_finite_path({"x": [1, 2.5, "inf"]}) is None
    assert decode.non_finite_path(math.nan) == "<root>"


# --- quantities (k8s.io/apimachinery/pkg/api/resource) ----------------------------------------------

@pytest.mark.parametrize("written,stored", [
    ("0.5", "500m"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("0.5Ki", "512"), ("2000m", "2"), ("1e3", "1e3"),
    ("1E3", "1e3"), ("17179869184", "17179869184"), ("16Gi", "16Gi"), ("0.1", "100m"), ("1000", "1k"),
    ("1500", "1500"), ("0.0001n", "1n"), ("0.1Ki", "102400m"), (2, "2"), (0.25, "250m"), ("0", "0"), ("12e6", "12e6"),
])
def test_quantities_are_canonicalised_like_the_server(written, stored):
    assert quantity.canonicalize(written) == stored


@pytest.mark.parametrize("text", ["", "1.2.3", "lots", "1K", "1Gib", ".", "1 Gi", True])
def test_malformed_quantities_are_refused_with_the_server_message(text):
    with pytest.raises(quantity.QuantityError, match="quantities must match the regular expression"):
        quantity.parse(text)


def test_quantity_comparison_is_exact():
    assert quantity.parse("1Gi")[0] == quantity.parse("1073741824")[0]
    assert quantity.parse("16Gi")[0] > quantity.parse("8Gi")[0]
    assert quantity.parse("500m")[0] == quantity.parse("0.5")[0]


# --- identifiers and field errors (k8s.io/apimachinery/pkg/util/validation, field.Error) -------------

@pytest.mark.parametrize("rule,value,ok", [
    (fielderrors.label_value, "x" * 63, True), (fielderrors.label_value, "x" * 64, False),
    (fielderrors.label_value, "", True), (fielderrors.label_value, "-a", False), (fielderrors.label_value, "A_b.c", True),
    (fielderrors.qualified_name, "app.kubernetes.io/name", True), (fielderrors.qualified_name, "a/b/c", False),
    (fielderrors.qualified_name, "example.com/" + "n" * 64, False), (fielderrors.qualified_name, "/x", False),
    (fielderrors.dns1123_label, "a" * 63, True), (fielderrors.dns1123_label, "a" * 64, False),
    (fielderrors.dns1123_label, "a.b", False), (fielderrors.dns1123_subdomain, "a.b-c", True),
    (fielderrors.dns1123_subdomain, "a" * 254, False), (fielderrors.dns1035_label, "1abc", False),
    (fielderrors.dns1035_label, "abc-1", True), (fielderrors.iana_svc_name, "http", True),
    (fielderrors.iana_svc_name, "grpc--x", False), (fielderrors.iana_svc_name, "8080", False),
    (fielderrors.iana_svc_name, "a" * 16, False), (fielderrors.env_var_name, "MY_VAR.x-1", True),
    (fielderrors.env_var_name, "1X", False), (fielderrors.config_map_key, "models.config", True),
    (fielderrors.config_map_key, "a/b", False),
])
def test_identifier_rules(rule, value, ok):
    assert (rule(value) == []) is ok, rule(value)


def test_field_errors_read_like_the_server():
    error = fielderrors.invalid("spec.x", "16Gi", "must be less than or equal to memory limit of 8Gi")
    assert str(error) == 'spec.x: Invalid value: "16Gi": must be less than or equal to memory limit of 8Gi'
    assert str(fielderrors.required("spec.selector")) == "spec.selector: Required value"
    assert str(fielderrors.not_supported("spec.t", "X", ["A", "B"])) == 'spec.t: Unsupported value: "X": supported values: "A", "B"'
    status = fielderrors.invalid_status("Deployment", "apps", "d", [error, fielderrors.required("spec.selector")])
    assert status.code == 422 and status.reason == "Invalid"
    assert status.message == ('Deployment.apps "d" is invalid: [spec.x: Invalid value: "16Gi": must be less than or '
                              'equal to memory limit of 8Gi, spec.selector: Required value]')
    assert [c["reason"] for c in status.details["causes"]] == ["FieldValueInvalid", "FieldValueRequired"]


# --- CEL rules (x-kubernetes-validations) -----------------------------------------------------------

@pytest.mark.parametrize("expression,variable,fields", [
    ("self.metadata.name.matches('^[a-z]+$')", "self", {"metadata"}),
    ("size(self.metadata.name) + size(string(self.spec.model.version)) + 2 <= 63", "self", {"metadata", "spec"}),
    ("has(self.status) || self . spec.x > 1", "self", {"status", "spec"}),
    ("self.size >= oldSelf.size", "self", {"size"}),
    ("self.size >= oldSelf.size", "oldSelf", {"size"}),
    ("self.a.all(x, x > 0)", "self", {"a"}),  # a macro on a field: that field only
    ("size(self) == 2", "self", None),  # the value as a whole
    ("self.all(k, k != 'mesh')", "self", None),  # a macro on the value itself
    ("self['a'] == 1", "self", None),
    ("self == oldSelf", "self", None),
    ("self.?a.orValue(1) == 1", "self", None),  # optional selection: not a plain field
    ("self.a == 'self'", "self", None),  # 'self' in a literal: counted as a use, so all of it (conservative)
])
def test_cel_rules_are_given_only_the_fields_they_select(expression, variable, fields):
    assert crd_schema.selected_fields(expression, variable) == (None if fields is None else frozenset(fields))


_RULES_SCHEMA = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('a')", "message": "name"},
        {"rule": "has(self.spec) && self.spec.x > 1", "message": "x"},
        {"rule": "!has(self.status) || size(self.status.items) < 3", "message": "items"},
        {"rule": "size(self) <= 4", "message": "size"},
        {"rule": "self.spec.x >= oldSelf.spec.x", "message": "shrink"},
    ],
}


@pytest.mark.parametrize("value,old", [
    ({"metadata": {"name": "a1"}, "spec": {"x": 2}, "status": {"items": [1, 2]}}, crd_schema.MISSING),
    ({"metadata": {"name": "b1"}, "spec": {"x": 1}, "status": {"items": [1, 2, 3]}}, crd_schema.MISSING),
    ({"metadata": {"name": "a1"}, "spec": {"x": 2}, "status": {"items": []}, "e": 1, "f": 2}, crd_schema.MISSING),
    ({"metadata": {"name": "a1"}, "spec": {"x": 2}}, {"metadata": {"name": "a1"}, "spec": {"x": 3}}),
    ({"metadata": {"name": "a1"}}, {"metadata": {"name": "a1"}, "spec": {"x": 3}}),
])
def test_cel_rules_decide_as_on_the_whole_value(value, old):
    """Giving a rule only the fields it selects changes no verdict: every rule checked against a direct
    evaluation on the whole value (and the whole old value)."""
    expected = []
    for rule in _RULES_SCHEMA["x-kubernetes-validations"]:
        transition = "oldSelf" in rule["rule"]
        if transition and old is crd_schema.MISSING:
            continue
        variables = {"self": value, **({"oldSelf": old} if transition else {})}
        try:
            ok = cel.compile(rule["rule"]).execute(variables) is True
        except Exception:  # noqa: BLE001 - a failed evaluation is an error too (its message differs)
            expected.append(f"error:{rule['message']}")
            continue
        if not ok:
            expected.append(rule["message"])
    rules = _RULES_SCHEMA["x-kubernetes-validations"]
    got = []
    for error in crd_schema.validate(_RULES_SCHEMA, value, old=old):
        failed = [r["message"] for r in rules if error.detail.startswith(r["rule"] + ": ")]  # could not evaluate
        got.append(f"error:{failed[0]}" if failed else error.detail)
    assert got == expected
    assert expected or value["metadata"]["name"] == "a1"  # the table has failing rows


def test_a_root_rule_does_not_convert_the_status():
    """A rule that selects metadata never reads the status: a status CEL could not even convert (here a
    Python object) does not reach it. The rule that takes the whole value does."""
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
              "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a')"}]}
    value = {"metadata": {"name": "a1"}, "status": {"opaque": object()}}
    assert crd_schema.validate(schema, value) == []
    schema["x-kubernetes-validations"] = [{"rule": "size(self) == 2"}]
    assert [e.type for e in crd_schema.validate(schema, value)] == ["Invalid"]


def test_remembered_parts_give_the_same_errors_every_time():
    """spec and status are validated once per content and remembered: a second write with the same invalid
    spec is refused again with the same errors (in the same order), a changed spec is validated afresh."""
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer", "maximum": 3}},
                 "x-kubernetes-validations": [{"rule": "self.x != 2", "message": "not two"}]},
        "status": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    bad = {"metadata": {"name": "a"}, "spec": {"x": 5}, "status": {"n": "one"}}
    first = crd_schema.validate(schema, bad)
    assert [str(e) for e in first] == [
        'spec.x: Invalid value: 5: spec.x in body should be less than or equal to 3',
        'status.n: Invalid value: "string": status.n in body must be of type integer: "string"',
        '<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; '
        'correct the existing errors to complete validation']
    assert crd_schema.validate(schema, bad) == first
    assert crd_schema.validate(schema, {**bad, "status": {"n": 1}}) == first[:1]  # the status fixed, the spec not
    two = {"metadata": {"name": "a"}, "spec": {"x": 2}, "status": {"n": 1}}
    assert [str(e) for e in crd_schema.validate(schema, two)] == ['spec: Invalid value: "object": not two']
    assert crd_schema.validate(schema, two, old=two) == crd_schema.validate(schema, two)
    assert crd_schema.validate(schema, {**two, "spec": {"x": 1}}, old=two) == []

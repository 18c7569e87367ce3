"""Pure pieces of the API emulator's strictness (kubeemu): each one a rule of kube-apiserver.

The HTTP behaviour (status codes, Status bodies) is tested against a running emulator in
tests/integration/test_apiserver_strict.py; here the table-driven parts, without a server.
"""

import math

import pytest

from kubeemu import decode, fielderrors, quantity


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

"""Pure pieces of the API emulator's strictness (kubeemu): each one a rule of kube-apiserver.

The HTTP behaviour (status codes, Status bodies) is tested against a running emulator in
tests/integration/test_apiserver_strict.py; here the table-driven parts, without a server.
"""

import math

import pytest

from kubeemu import decode


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

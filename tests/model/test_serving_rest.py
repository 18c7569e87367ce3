"""REST body helpers (pure Python): the TF Serving row and columnar formats for DT_STRING input."""

from __future__ import annotations

import json

import pytest

from xraymodel.serving_rest import (
    RestBodyError,
    decode_rest_instances,
    parse_rest_predictions,
    rest_request_body,
    rest_response_body,
)


def test_request_round_trips_through_json():
    images = [b"\x89PNG\r\n\x1a\n...", b"\xff\xd8\xff\xe0jpeg", b""]
    body = json.loads(json.dumps(rest_request_body(images)))
    assert body["signature_name"] == "serving_default"
    assert list(body["instances"][0]) == ["b64"]
    assert decode_rest_instances(body) == images


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instances": [{"image_bytes": {"b64": "YWJj"}}]}, [b"abc"]),  # named input in a row
        ({"inputs": {"image_bytes": [{"b64": "YWJj"}, {"b64": "ZA=="}]}}, [b"abc", b"d"]),  # columnar
        ({"inputs": [{"b64": "YWJj"}]}, [b"abc"]),
        ({"instances": ["abc"]}, [b"abc"]),
    ],
)
def test_decode_accepted_forms(body, expected):
    assert decode_rest_instances(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "instances' or 'inputs"),
        ({"instances": []}, "non-empty"),
        ({"instances": [{"b64": "***"}]}, "invalid base64"),
        ({"instances": [[1, 2]]}, "DT_STRING"),
        ({"inputs": {"images": []}}, "no 'image_bytes'"),
    ],
)
def test_decode_rejects(body, message):
    with pytest.raises(RestBodyError, match=message):
        decode_rest_instances(body)


def test_response_round_trip_and_error_body():
    body = json.loads(json.dumps(rest_response_body([[0.25, 0.5], [1.0, 0.0]])))
    assert parse_rest_predictions(body) == [[0.25, 0.5], [1.0, 0.0]]
    with pytest.raises(RestBodyError, match="Could not parse"):
        parse_rest_predictions({"error": "Could not parse example input"})


@pytest.mark.parametrize(
    ("outputs", "row_format", "expected"),
    [
        ({"probabilities": [[0.25, 0.5]]}, True, {"predictions": [[0.25, 0.5]]}),  # one output: rows are the values
        ({"model_card_json": [b'{"a":1}', b'{"a":1}']}, True, {"predictions": ['{"a":1}', '{"a":1}']}),  # plain string
        ({"card_bytes": [b"\x00\xff"]}, True, {"predictions": [{"b64": "AP8="}]}),  # "_bytes": base64
        ({"p": [[0.5]], "model_card_json": [b"x"]}, True, {"predictions": [{"p": [0.5], "model_card_json": "x"}]}),
        ({"model_card_json": [b"x"]}, False, {"outputs": ["x"]}),  # columnar
    ],
)
def test_outputs_are_written_as_tf_serving_writes_them(outputs, row_format, expected):
    from xraymodel.serving_rest import rest_outputs_body

    assert rest_outputs_body(outputs, row_format) == expected


def test_a_scalar_output_has_no_row_format():
    from xraymodel.serving_rest import rest_outputs_body

    with pytest.raises(RestBodyError, match="no shape information"):
        rest_outputs_body({"model_card_json": b"x"})

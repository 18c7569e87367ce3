"""TF Serving REST predict bodies for the ``serving_default`` signature (pure Python, no TensorFlow).

Client side (the online evaluator, smoke tests): ``rest_request_body`` builds the row format
``{"signature_name": "serving_default", "instances": [{"b64": "..."}]}`` that TF Serving accepts
for a single-input signature with a DT_STRING input, and ``parse_rest_predictions`` reads
``{"predictions": [[p_1, ..., p_k], ...]}``. Server side, ``decode_rest_instances`` and
``rest_response_body`` implement the same rules (a JSON object {"b64": s} is base64 bytes; for a
single-input signature each instance is the input value itself, or {input_name: value}), so a
simulated server and the tests agree with the real one.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

SIGNATURE_BYTES = "serving_default"
INPUT_BYTES = "image_bytes"


class RestBodyError(ValueError):
    """A REST predict body that TF Serving would reject with 400."""


def rest_request_body(images: Sequence[bytes], signature_name: str = SIGNATURE_BYTES) -> dict:
    """Row-format predict body for encoded images."""
    return {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images],
    }


def _decode_value(value) -> bytes:
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise RestBodyError(f"invalid base64 in instance: {exc}") from exc
    if isinstance(value, str):
        return value.encode("utf-8")  # TF Serving passes plain JSON strings through as bytes
    raise RestBodyError(f"expected {{'b64': ...}} or a string for a DT_STRING input, got {type(value).__name__}")


def decode_rest_instances(body: dict, input_name: str = INPUT_BYTES) -> list[bytes]:
    """The DT_STRING batch a row-format ("instances") or columnar ("inputs") body carries."""
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RestBodyError("'instances' must be a non-empty list")
        values = []
        for instance in instances:
            if isinstance(instance, dict) and input_name in instance:
                instance = instance[input_name]
            values.append(_decode_value(instance))
        return values
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            if input_name not in inputs:
                raise RestBodyError(f"'inputs' has no {input_name!r}")
            inputs = inputs[input_name]
        if not isinstance(inputs, list):
            inputs = [inputs]
        return [_decode_value(value) for value in inputs]
    raise RestBodyError("body needs 'instances' or 'inputs'")


def rest_response_body(probabilities) -> dict:
    """Row-format response of a single-output signature: {"predictions": [[...], ...]}."""
    return {"predictions": [[float(p) for p in row] for row in probabilities]}


def _json_value(value, as_bytes: bool):
    if isinstance(value, list):
        return [_json_value(v, as_bytes) for v in value]
    if isinstance(value, (bytes, bytearray)):  # DT_STRING
        if as_bytes:
            return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
        return bytes(value).decode("utf-8")
    return value


def rest_outputs_body(outputs: dict, row_format: bool = True) -> dict:
    """TF Serving's JSON for a signature's named outputs, each given as ``tensor.numpy().tolist()``.

    As tensorflow_serving/util/json_tensor.cc writes it: row format ("instances" request) ->
    {"predictions": [...]}, the rows being the values themselves for a single output, else
    {name: value} objects; columnar ("inputs") -> {"outputs": value or {name: value}}. A DT_STRING
    value is a plain JSON string, or {"b64": ...} when its output's name ends in "_bytes"."""
    converted = {name: _json_value(value, name.endswith("_bytes")) for name, value in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(converted.values())) if len(converted) == 1 else converted}
    sizes = set()
    for name, value in converted.items():
        if not isinstance(value, list):
            raise RestBodyError(f"Tensor name: {name} has no shape information ")
        sizes.add(len(value))
    if len(sizes) > 1:
        raise RestBodyError(f"Tensor outputs have inconsistent batch sizes {sorted(sizes)}")
    if len(converted) == 1:
        return {"predictions": next(iter(converted.values()))}
    n = sizes.pop() if sizes else 0
    return {"predictions": [{name: value[i] for name, value in converted.items()} for i in range(n)]}


def parse_rest_predictions(body: dict) -> list[list[float]]:
    """Probabilities per instance from a TF Serving REST response (raises on an error body)."""
    if "error" in body:
        raise RestBodyError(f"TF Serving error: {body['error']}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list):
        raise RestBodyError("response has no 'predictions' list")
    return [[float(p) for p in row] for row in predictions]

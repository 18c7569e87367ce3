"""A TF Serving REST compatible server for the quantised (TFLite) variant of a version.

Stock TF Serving serves the FP32 SavedModel; its TFLite path (``--prefer_tflite_model``) is marked
experimental upstream and would return the raw logits of our logit-cut INT8 model, not calibrated
probabilities. This runtime stands beside it and speaks the same REST API, so the online evaluator,
the sandbox clients and the operator's readiness probes work unchanged:

    GET  /v1/models/<name>                          {"model_version_status": [{"version", "state": "AVAILABLE", ...}]}
    GET  /v1/models/<name>/versions/<v>             the same, for one version (the operator's startup probe)
    GET  /v1/models/<name>[/versions/<v>]/metadata  signature_def of serving_default / predict_float
                                                    (the operator's readiness probe)
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict
         {"signature_name": "serving_default", "instances": [{"b64": ...}]}  ->  {"predictions": [[...]]}
         {"signature_name": "predict_float", "instances": [[[[r, g, b], ...]]]}
         {"signature_name": "model_card", "instances": [""]}  ->  {"predictions": ["<served card JSON>"]}

The version folder is what ``modeldeploy model quantize`` writes: model_<mode>.tflite and a
model_card.json with a ``variant`` entry (cut, calibration). Outputs are computed as the FP32 graph
computes them: decode + resize with the training pipeline's functions, the int8 network up to the
256 fc256 features, then the logits Dense (float32, logits_layer.npz) and sigmoid(slope * logits +
intercept) per finding in float32 (quantize.served_probabilities).

It accepts TF Serving's command-line flags (``--rest_api_port``, ``--model_config_file`` with the
operator's one-model ``specific`` version config, ``--model_name``/``--model_base_path``); flags it
has no use for (gRPC ``--port``, batching, monitoring, polling) are accepted and ignored, so an image
whose ``tensorflow_model_server`` is this program runs the Deployment the operator renders
unchanged. There is no gRPC endpoint and no /monitoring/prometheus/metrics.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from xraymodel.served_card import INPUT_CARD, SIGNATURE_CARD, served_card_json
from xraymodel.serving_rest import RestBodyError, decode_rest_instances, rest_response_body

SIGNATURE_BYTES = "serving_default"
SIGNATURE_FLOAT = "predict_float"
_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<rest>/metadata|:predict)?$"
)


def make_interpreter(flatbuffer: bytes, threads: int):
    """TensorFlow's tf.lite.Interpreter (XNNPACK delegate by default); bench/model_inference.py also
    times LiteRT's ai_edge_litert interpreter, which is not a declared dependency."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


@dataclass
class LoadedVariant:
    name: str
    version: int
    card: dict
    labels: list[str]
    input_size: int
    cut: str
    head: str
    calibration: tuple[np.ndarray, np.ndarray] | None
    logits_layer: tuple[np.ndarray, np.ndarray] | None
    interpreter: object
    lock: threading.Lock

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n, S, S, 3] RGB 0..255 -> served probabilities [n, k] (batch-1 invokes, one at a time)."""
        from xraymodel.quantize import served_probabilities

        details = self.interpreter.get_input_details()[0]
        output = self.interpreter.get_output_details()[0]
        dtype = details["dtype"]
        rows = []
        with self.lock:  # one interpreter: its tensors are not thread-safe
            for image in pixels:
                if dtype == np.float32:
                    value = image[None].astype(np.float32)
                else:
                    scale, zero_point = details["quantization"]
                    info = np.iinfo(dtype)
                    value = np.clip(np.round(image / scale + zero_point), info.min, info.max).astype(dtype)[None]
                self.interpreter.set_tensor(details["index"], value)
                self.interpreter.invoke()
                result = self.interpreter.get_tensor(output["index"])[0]
                if output["dtype"] != np.float32:
                    out_scale, out_zero = output["quantization"]
                    result = (result.astype(np.float32) - out_zero) * out_scale
                rows.append(np.asarray(result, dtype=np.float32))
        return served_probabilities(np.stack(rows), self.cut, self.head, self.calibration, self.logits_layer)

    def predict_bytes(self, images: list[bytes]) -> np.ndarray:
        import tensorflow as tf

        from xraymodel.pipeline import decode_and_resize

        try:
            pixels = np.stack([decode_and_resize(tf.constant(image), self.input_size).numpy() for image in images])
        except tf.errors.InvalidArgumentError as exc:
            raise RestBodyError(f"could not decode an image: {exc.message}") from None
        return self.predict_pixels(pixels)


def load_variant(version_dir: str | Path, name: str, threads: int = 2) -> LoadedVariant:
    from xraymodel.export import MODEL_CARD_FILE, calibration_vectors

    version_dir = Path(version_dir)
    card = json.loads((version_dir / MODEL_CARD_FILE).read_text())
    variant = card.get("variant")
    if not variant:
        raise ValueError(f"{version_dir}: model card has no 'variant' (not written by `modeldeploy model quantize`)")
    calibration = card.get("calibration") or {}
    vectors = calibration_vectors(calibration, card["labels"]) if calibration.get("applied_in_serving_graph") else None
    flatbuffer = (version_dir / variant["file"]).read_bytes()
    logits_layer = None
    if variant.get("logits_layer_file"):
        with np.load(version_dir / variant["logits_layer_file"]) as stored:
            logits_layer = (stored["kernel"].astype(np.float32), stored["bias"].astype(np.float32))
    return LoadedVariant(
        name=name, version=int(version_dir.name), card=card, labels=list(card["labels"]),
        input_size=int(card["input_size"]), cut=variant["cut"], head=card.get("head", "multilabel"),
        calibration=vectors, logits_layer=logits_layer, interpreter=make_interpreter(flatbuffer, threads), lock=threading.Lock(),
    )


def parse_model_config(text: str) -> tuple[str, str, list[int], dict[str, int]]:
    """(name, base_path, specific versions, labels) of the one-model ModelServerConfig the operator renders."""
    name = re.search(r'\bname:\s*"([^"]*)"', text)
    base = re.search(r'\bbase_path:\s*"([^"]*)"', text)
    if not name or not base:
        raise ValueError("model config needs name and base_path")
    versions = [int(v) for v in re.findall(r"\bversions:\s*(\d+)", text)]
    labels = {key: int(value) for key, value in re.findall(r'version_labels\s*\{\s*key:\s*"([^"]+)"\s*value:\s*(\d+)', text)}
    return name.group(1), base.group(1), versions, labels


def _versions_under(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit() and (p / "model_card.json").is_file())


class VariantServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, variants: dict[int, LoadedVariant], labels: dict[str, int]):
        super().__init__(address, _Handler)
        self.variants = variants
        self.labels = labels
        self.model_name = next(iter(variants.values())).name


def build_server(
    base_path: str | Path, name: str, host: str = "0.0.0.0", port: int = 8501, *,
    versions: list[int] | None = None, labels: dict[str, int] | None = None, threads: int = 2,
) -> VariantServer:
    base = Path(base_path)
    chosen = versions or _versions_under(base)[-1:]
    if not chosen:
        raise FileNotFoundError(f"{base}: no version folder with a model_card.json")
    variants = {v: load_variant(base / str(v), name, threads) for v in chosen}
    return VariantServer((host, port), variants, dict(labels or {}))


def _status(version: int) -> dict:
    return {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}


def _metadata(variant: LoadedVariant) -> dict:
    k = len(variant.labels)
    s = variant.input_size
    output = {"probabilities": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(k)}]}, "name": "probabilities"}}
    return {
        "model_spec": {"name": variant.name, "signature_name": "", "version": str(variant.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_BYTES: {
                        "inputs": {"image_bytes": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": "image_bytes"}},
                        "outputs": output, "method_name": "tensorflow/serving/predict",
                    },
                    SIGNATURE_FLOAT: {
                        "inputs": {"images": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(s)}, {"size": str(s)}, {"size": "3"}]}, "name": "images"}},
                        "outputs": output, "method_name": "tensorflow/serving/predict",
                    },
                    SIGNATURE_CARD: {
                        "inputs": {INPUT_CARD: {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": INPUT_CARD}},
                        "outputs": {"model_card_json": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]},
                                                        "name": "model_card_json"}},
                        "method_name": "tensorflow/serving/predict",
                    },
                }
            }
        },
    }


class _Handler(BaseHTTPRequestHandler):
    server: VariantServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: TF Serving does not log every request either
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _resolve(self):
        match = _PATH.match(self.path.split("?", 1)[0])
        if not match:
            return None, None, (404, {"error": "Malformed request: " + self.path})
        if match["name"] != self.server.model_name:
            return None, None, (404, {"error": f"Servable not found for request: Latest({match['name']})"})
        variants = self.server.variants
        if match["version"]:
            version = int(match["version"])
        elif match["label"]:
            if match["label"] not in self.server.labels:
                return None, None, (404, {"error": f"Unrecognized servable version label: {match['label']}"})
            version = self.server.labels[match["label"]]
        else:
            version = max(variants)
        if version not in variants:
            return None, None, (404, {"error": f"Servable not found for request: Specific({match['name']}, {version})"})
        return match, variants[version], None

    def do_GET(self):
        match, variant, error = self._resolve()
        if error:
            return self._send(*error)
        if match["rest"] == ":predict":
            return self._send(405, {"error": "predict needs POST"})
        if match["rest"] == "/metadata":
            return self._send(200, _metadata(variant))
        versions = [variant.version] if (match["version"] or match["label"]) else sorted(self.server.variants)
        return self._send(200, {"model_version_status": [_status(v) for v in versions]})

    def do_POST(self):
        match, variant, error = self._resolve()
        if error:
            return self._send(*error)
        if match["rest"] != ":predict":
            return self._send(404, {"error": "only :predict accepts POST"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(body, dict):
                raise RestBodyError("JSON body must be an object")
            signature = body.get("signature_name") or SIGNATURE_BYTES
            if signature == SIGNATURE_BYTES:
                probabilities = variant.predict_bytes(decode_rest_instances(body))
            elif signature == SIGNATURE_CARD:  # as the SavedModel's: the card's operating points (xraymodel.served_card)
                count = len(decode_rest_instances(body, INPUT_CARD))
                # the version it is served as (a variant's card keeps its FP32 source's `version`)
                text = served_card_json({**variant.card, "version": variant.version})
                return self._send(200, {"predictions" if "instances" in body else "outputs": [text] * count})
            elif signature == SIGNATURE_FLOAT:
                rows = body.get("instances", body.get("inputs"))
                if isinstance(rows, dict):
                    rows = rows.get("images")
                pixels = np.asarray(rows, dtype=np.float32)
                s = variant.input_size
                if pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
                    raise RestBodyError(f"predict_float expects float32 [n, {s}, {s}, 3], got shape {list(pixels.shape)}")
                probabilities = variant.predict_pixels(pixels)
            else:
                raise RestBodyError(f"Serving signature name: \"{signature}\" not found in signature def")
        except (RestBodyError, ValueError, TypeError) as exc:
            return self._send(400, {"error": str(exc)})
        return self._send(200, rest_response_body(probabilities))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tensorflow_model_server (xraymodel TFLite)",
        description="Serve a quantised version with TF Serving's REST API (see module docstring).",
    )
    parser.add_argument("--rest_api_port", type=int, default=8501)
    parser.add_argument("--rest_api_host", default="0.0.0.0", help="bind address (not a TF Serving flag)")
    parser.add_argument("--model_config_file")
    parser.add_argument("--model_name", default="chestxray")
    parser.add_argument("--model_base_path")
    parser.add_argument("--tflite_threads", type=int, default=2, help="interpreter threads (not a TF Serving flag)")
    args, ignored = parser.parse_known_args(argv)
    if args.model_config_file:
        name, base, versions, labels = parse_model_config(Path(args.model_config_file).read_text())
    elif args.model_base_path:
        name, base, versions, labels = args.model_name, args.model_base_path, [], {}
    else:
        parser.error("--model_config_file or --model_base_path is required")
    if ignored:
        print(f"ignored TF Serving flags (no use here): {' '.join(ignored)}", file=sys.stderr)
    server = build_server(base, name, args.rest_api_host, args.rest_api_port, versions=versions, labels=labels,
                          threads=args.tflite_threads)
    print(f"serving {name} versions {sorted(server.variants)} on {args.rest_api_host}:{args.rest_api_port}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

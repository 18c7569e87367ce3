"""TF Serving's REST API as the simulated pods (and the mesh in front of them) answer it.

Routes (`TFServingRestApi.routes`), as TF Serving documents them:

* ``GET  /v1/models/<m>/versions/<v>``: model status (200 with the version's state, AVAILABLE or the
  scenario's ``modelState``, e.g. END); 404 unknown model or version, 503 no ready pod;
* ``GET  /v1/models/<m>/versions/<v>/metadata``: 404 ``Servable not found for request: Specific(m, v)``
  unless the version is AVAILABLE, as TF Serving's GetModelMetadata; else signature defs (``serving_default``: DT_STRING
  ``image_bytes``; ``predict_float``: DT_FLOAT [-1, 224, 224, 3]), 14 probabilities out;
* ``POST /v1/models/<m>/versions/<v>:predict``: ``{"instances": [{"b64": ...}]}`` (row format)
  or ``{"inputs": ...}`` (columnar); ``"signature_name": "model_card"`` answers the version's served
  model card (xraymodel.served_card: one JSON string per instance) when its scenario entry has
  ``operatingThresholds``, else TF Serving's 400 for a signature the SavedModel lacks (an older
  export);
* ``GET /v1/models/<m>``, ``GET /v1/models/<m>/metadata``, ``POST /v1/models/<m>:predict``:
  through the MESH, routed by the current VirtualService using the request's headers (e.g. the
  preview header ``x-modeldeploy-version``); the client sidecar's own replies (404 NR, 503 NC/UH)
  are counted for predict calls.
* The per-version routes, with a cluster Host (``<svc>.<ns>.svc.<domain>[:port]``, as a client
  sends through a sidecar or kube-proxy; the evaluator's ``--connect-to``) while the fleet models
  the namespace's Services: the Host picks the pods (`SimulatedFleet.host_pick`: a version's own
  Service -> its pods; the Service clients call -> the VirtualService from a sidecar, the stable
  pods without one, header ``x-sandbox-sidecar: false``), and a pod of another version answers
  TF Serving's 404 for the URL's version. A Host that is no Service of the fleet's cluster domain
  does not resolve (503). Without a cluster Host (a direct call to 127.0.0.1) the URL's version
  answers, as when calling a pod directly.

Images map to golden-set ids through `synthetic_golden.GoldenSet` (the PNG's first row encodes the
id), so the online evaluator measures exactly each version's configured accuracy and drift.
Garbage -> 400 ``{"error": ...}`` with TF Serving's wording. Calls honour errorRate and latency
(a real ``asyncio.sleep`` of latency x ``time_scale``) and are recorded in the Istio metrics
(destination reporter, and the source reporter through the mesh) and the pod's TF Serving metrics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from kubeemu.childprocess import LISTEN_HOST
from mdsandbox.fleet.behaviour import VersionBehaviour
from mdsandbox.fleet.istio_metrics import SIDECAR_HEADER, SOURCE_HEADER
from mdsandbox.mesh_routing import FLAG_NO_HEALTHY_UPSTREAM
from mdsandbox.synthetic_golden import InvalidImage
from xraymodel.served_card import INPUT_CARD, SIGNATURE_CARD, served_card_json

if TYPE_CHECKING:
    from mdsandbox.fleet.simulated_fleet import SimulatedFleet

N_FINDINGS = 14
_MODEL = r"{model:[^/:]+}"
_VERSION = r"{version:[0-9]+}"


class BadRequest(ValueError):
    """A predict body TF Serving would answer with 400 INVALID_ARGUMENT."""


class TFServingRestApi:
    """The REST handlers of one fleet (the fleet knows the versions, pods and routing)."""

    def __init__(self, fleet: SimulatedFleet) -> None:
        self.fleet = fleet

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"/v1/models/{_MODEL}", self._h_mesh_status),
            web.get(f"/v1/models/{_MODEL}/metadata", self._h_mesh_metadata),
            web.post(f"/v1/models/{_MODEL}:predict", self._h_mesh_predict),
            web.get(f"/v1/models/{_MODEL}/versions/{_VERSION}", self._h_version_status),
            web.get(f"/v1/models/{_MODEL}/versions/{_VERSION}/metadata", self._h_version_metadata),
            web.post(f"/v1/models/{_MODEL}/versions/{_VERSION}:predict", self._h_version_predict),
        ]

    # ------------------------------------------------------------------ which version answers
    def _servable_not_found(self, version: str | None) -> web.Response:
        model = self.fleet.model_name
        what = f"Specific({model}, {version})" if version else f"Latest({model})"
        return tf_error(404, f"Servable not found for request: {what}")

    @staticmethod
    def cluster_host(request: web.Request) -> str | None:
        """The request's Host when it names a cluster host, None for a direct call (127.0.0.1, localhost)."""
        host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
        return None if host in ("", LISTEN_HOST, "localhost", "::1") else host

    @staticmethod
    def has_sidecar(request: web.Request) -> bool:
        return request.headers.get(SIDECAR_HEADER, "true").strip().lower() != "false"

    def _check_version(self, request: web.Request, record: bool = False) -> tuple[str | None, web.Response | None]:
        fleet = self.fleet
        model, version = request.match_info["model"], request.match_info["version"]
        if model != fleet.model_name:
            return None, tf_error(404, f"Servable not found for request: Specific({model}, {version})")
        host = self.cluster_host(request)
        if host is not None and fleet.services is not None:
            source = request.headers.get(SOURCE_HEADER) if record else None
            reached, code, flags = fleet.host_pick(
                host, dict(request.headers), uri=request.path, method=request.method, query=dict(request.query),
                sidecar=self.has_sidecar(request), record=record, source=source,
            )  # fmt: skip
            if reached is None:
                if flags == "DNS":
                    return None, web.Response(status=503, text=f"could not resolve host {host}: no such Service "
                                                               f"in cluster domain {fleet.cluster_domain}\n")  # fmt: skip
                if code == 503 and flags == FLAG_NO_HEALTHY_UPSTREAM:
                    return None, no_healthy_upstream()
                return None, web.Response(status=code, text="")
            if reached != version:  # a pod of another version: its TF Serving does not have this one
                return None, self._servable_not_found(version)
        if version not in fleet.versions or fleet.versions[version].pods == 0:
            return None, self._servable_not_found(version)
        if fleet.ready_replicas(version) == 0:
            return None, no_healthy_upstream()
        return version, None

    def _mesh_route(self, request: web.Request, record: bool = False) -> tuple[str | None, web.Response | None]:
        """The version a request to the Service reaches through the mesh (`SimulatedFleet.mesh_pick`)."""
        if request.match_info["model"] != self.fleet.model_name:
            return None, self._servable_not_found(None)
        source = request.headers.get(SOURCE_HEADER) if record else None
        version, code, flags = self.fleet.mesh_pick(
            dict(request.headers), uri=request.path, method=request.method, query=dict(request.query),
            record=record, source=source,
        )  # fmt: skip
        if version is not None:
            return version, None
        if code == 503 and flags == FLAG_NO_HEALTHY_UPSTREAM:
            return None, no_healthy_upstream()
        return None, web.Response(status=code, text="")

    # ------------------------------------------------------------------ status and metadata
    # GetModelStatus answers every state of a version it knows; GetModelMetadata needs a servable handle,
    # which only an AVAILABLE version has (else NOT_FOUND "Servable not found for request: Specific(m, v)").
    async def _h_version_status(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request)
        return err or web.json_response(status_body(version, self.fleet.behaviour(version).model_state))  # type: ignore[arg-type]

    async def _h_mesh_status(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request)
        return err or web.json_response(status_body(version, self.fleet.behaviour(version).model_state))  # type: ignore[arg-type]

    async def _h_version_metadata(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request)
        return err or self._metadata(version)  # type: ignore[arg-type]

    async def _h_mesh_metadata(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request)
        return err or self._metadata(version)  # type: ignore[arg-type]

    def _metadata(self, version: str) -> web.Response:
        if self.fleet.behaviour(version).model_state != "AVAILABLE":
            return tf_error(404, f"Servable not found for request: Specific({self.fleet.model_name}, {version})")
        return web.json_response(metadata_body(self.fleet.model_name, version, self._has_card(version)))

    def _has_card(self, version: str | None) -> bool:
        return version is not None and bool(self.fleet.behaviour(version).operating_thresholds)

    # ------------------------------------------------------------------ predict
    async def _h_version_predict(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request, record=True)
        if err is not None:
            return err
        via_mesh = (
            self.cluster_host(request) is not None and self.fleet.services is not None and self.has_sidecar(request)
        )
        return await self._predict(request, version, via_mesh=via_mesh)  # type: ignore[arg-type]

    async def _h_mesh_predict(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request, record=True)
        if err is not None:
            return err
        return await self._predict(request, version, via_mesh=True)  # type: ignore[arg-type]

    async def _predict(self, request: web.Request, version: str, via_mesh: bool) -> web.Response:
        fleet = self.fleet
        source = request.headers.get(SOURCE_HEADER)
        beh = fleet.behaviour(version)
        latency_ms = float(beh.sample_latency_ms(fleet.rng, 1)[0])
        failed = beh.error_rate > 0 and fleet.rng.random() < beh.error_rate
        status, status_label = 200, "OK"
        body: dict[str, Any]
        if failed:
            status, status_label = 500, "INTERNAL"
            body = {"error": "Internal: simulated model server failure (errorRate)"}
        else:
            try:
                payload = json.loads(await request.read() or b"null")
                body = self._predictions(version, beh, payload)
            except json.JSONDecodeError as exc:
                status, status_label = 400, "INVALID_ARGUMENT"
                body = {"error": f"JSON Parse error: {exc.msg} at offset: {exc.pos}"}
            except BadRequest as exc:
                status, status_label = 400, "INVALID_ARGUMENT"
                body = {"error": str(exc)}
        if latency_ms > 0 and fleet.time_scale > 0:
            await asyncio.sleep(latency_ms / 1000.0 * fleet.time_scale)
        fleet.record_rest_call(version, source, status, status_label, latency_ms, via_mesh)
        return web.json_response(body, status=status)

    def _predictions(self, version: str, beh: VersionBehaviour, payload: Any) -> dict[str, Any]:
        golden = self.fleet.golden
        if not isinstance(payload, dict):
            raise BadRequest("JSON Value: must be an object with 'instances' or 'inputs'")
        if "instances" in payload and "inputs" in payload:
            raise BadRequest("Request can't have both 'instances' and 'inputs' fields")
        signature = payload.get("signature_name") or "serving_default"
        if signature == SIGNATURE_CARD and beh.operating_thresholds:
            return self._model_card(version, beh, payload)
        if signature not in ("serving_default", "predict_float"):
            raise BadRequest(f'Serving signature name: "{signature}" not found in signature def')
        row_format = "instances" in payload
        if row_format:
            items = payload["instances"]
            if not isinstance(items, list) or not items:
                raise BadRequest("'instances' must be a non-empty JSON array")
        elif "inputs" in payload:
            items = payload["inputs"]
            if isinstance(items, dict):
                key = "image_bytes" if signature == "serving_default" else "images"
                if set(items) != {key}:
                    raise BadRequest(f"Missing input: {key} (got {sorted(items)})")
                items = items[key]
            if not isinstance(items, list):
                items = [items]
        else:
            raise BadRequest("Missing 'inputs' or 'instances' key")
        out = []
        for item in items:
            probs: np.ndarray
            if signature == "serving_default":
                if isinstance(item, dict) and "image_bytes" in item and set(item) == {"image_bytes"}:
                    item = item["image_bytes"]
                data = decode_b64_item(item)
                try:
                    probs = golden.predict_image(
                        version,
                        data,
                        beh.accuracy,
                        beh.output_shift,
                        dict(beh.finding_accuracy),
                        beh.subgroup_accuracy_map,
                    )
                except InvalidImage as exc:
                    raise BadRequest(f"Invalid argument: {exc}\n\t [[{{{{node DecodeImage}}}}]]") from None
            else:
                if isinstance(item, dict) and set(item) == {"images"}:
                    item = item["images"]
                if not isinstance(item, list):
                    raise BadRequest("predict_float expects float32 [224, 224, 3] arrays")
                key = int.from_bytes(hashlib.sha256(json.dumps(item).encode()).digest()[:8], "big")
                probs = golden.predict_virtual(version, key, beh.accuracy, beh.output_shift, dict(beh.finding_accuracy))
            out.append([float(p) for p in probs])
        return {"predictions": out} if row_format else {"outputs": out}

    def _model_card(self, version: str, beh: VersionBehaviour, payload: dict[str, Any]) -> dict[str, Any]:
        """The model_card signature: DT_STRING input `request` (ignored), output `model_card_json` per instance."""
        if "instances" in payload:
            items = payload["instances"]
            if not isinstance(items, list) or not items:
                raise BadRequest("'instances' must be a non-empty JSON array")
        elif "inputs" in payload:
            items = payload["inputs"]
            if isinstance(items, dict) and not set(items) <= {"b64"}:
                if set(items) != {INPUT_CARD}:
                    raise BadRequest(f"Missing named input: {INPUT_CARD} in 'inputs' object.")
                items = items[INPUT_CARD]
            items = items if isinstance(items, list) else [items]
        else:
            raise BadRequest("Missing 'inputs' or 'instances' key")
        for item in items:
            if isinstance(item, dict) and set(item) == {INPUT_CARD}:
                item = item[INPUT_CARD]
            decode_b64_item(item)
        card = served_card_json(scenario_card(self.fleet.model_name, version, beh))
        values = [card] * len(items)
        return {"predictions": values} if "instances" in payload else {"outputs": values}


def scenario_card(model_name: str, version: str, beh: VersionBehaviour) -> dict[str, Any]:
    """The model card fields a simulated version was "exported" with (its scenario's operatingThresholds)."""
    from xraymodel.findings import FINDINGS

    return {
        "model_name": model_name,
        "version": int(version),
        "labels": list(FINDINGS),
        "head": "multilabel",
        "operating_thresholds": dict(beh.operating_thresholds),
        "operating_thresholds_source": "scenario operatingThresholds",
        "operating_thresholds_scale": "calibrated",
        "operating_points_target_sensitivity": None,
        "calibration": None,
    }


def status_body(version: str, state: str = "AVAILABLE") -> dict[str, Any]:
    """GET /v1/models/<m>/versions/<v> of a version TF Serving knows, in any state (200 for each)."""
    return {"model_version_status": [{"version": version, "state": state,
                                      "status": {"error_code": "OK", "error_message": ""}}]}  # fmt: skip


def metadata_body(model_name: str, version: str, model_card: bool = False) -> dict[str, Any]:
    """GET .../metadata: the exported model's signatures (model_card: an export with that third signature)."""

    def tensor(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
        return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                                 "unknown_rank": False}, "name": name}  # fmt: skip

    probs = tensor("StatefulPartitionedCall:0", "DT_FLOAT", [-1, N_FINDINGS])
    body: dict[str, Any] = {
        "model_spec": {"name": model_name, "signature_name": "", "version": version},
        "metadata": {"signature_def": {"signature_def": {
            "serving_default": {"inputs": {"image_bytes": tensor("serving_default_image_bytes:0", "DT_STRING", [-1])},
                                "outputs": {"probabilities": probs}, "method_name": "tensorflow/serving/predict"},
            "predict_float": {"inputs": {"images": tensor("predict_float_images:0", "DT_FLOAT", [-1, 224, 224, 3])},
                              "outputs": {"probabilities": probs}, "method_name": "tensorflow/serving/predict"},
        }}},
    }  # fmt: skip
    if model_card:
        body["metadata"]["signature_def"]["signature_def"][SIGNATURE_CARD] = {
            "inputs": {INPUT_CARD: tensor(f"{SIGNATURE_CARD}_{INPUT_CARD}:0", "DT_STRING", [-1])},
            "outputs": {"model_card_json": tensor("StatefulPartitionedCall_2:0", "DT_STRING", [-1])},
            "method_name": "tensorflow/serving/predict",
        }
    return body


def decode_b64_item(item: Any) -> bytes:
    """One DT_STRING input: ``{"b64": ...}`` decoded, or a plain string's bytes."""
    if isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str):
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("Unable to base64 decode") from None
    if isinstance(item, str):  # DT_STRING without b64: the raw string's bytes
        return item.encode()
    raise BadRequest('Expected a {"b64": ...} object or a string for DT_STRING input image_bytes')


def tf_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def no_healthy_upstream() -> web.Response:
    """Envoy's local 503 when a cluster has no ready endpoint (also what a version without ready pods gets)."""
    return web.Response(status=503, text="no healthy upstream", content_type="text/plain")


__all__ = ["BadRequest", "TFServingRestApi", "decode_b64_item", "metadata_body", "status_body"]

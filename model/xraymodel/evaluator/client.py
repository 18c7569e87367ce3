"""TF Serving REST predict client for the evaluator: one version at a time, strict about what comes back.

Reaching one version: ``POST {its endpoint}/v1/models/{model}/versions/{N}:predict``, its endpoint
being its own Service ``http://<name>-v<N>.<ns>.svc.<domain>:8501`` (selects that version's pods
only, so no header and no VirtualService are involved). A version without an endpoint of its own
(the config of an older operator) goes to the shared endpoint with the header ``{previewHeader}:
v{N}`` (Istio's preview route; only a client in the mesh gets it). TF Serving itself also selects
the version by the URL: a pod of another version answers 404. ``connect_to`` (the sandbox) sends
every request to that address with the URL's host in the Host header, as a sidecar intercepting
the connection would route it by its authority. Body (row format, DT_STRING input of the
``serving_default`` signature): ``{"signature_name": ..., "instances": [{"b64": "..."}, ...]}``;
answer ``{"predictions": [[14 probabilities], ...]}`` (rows may also be ``{"probabilities": [...]}``
objects, as TF Serving writes them for multi-output signatures).

* Every request has a timeout (``timeoutSeconds``) and at most ``concurrency`` requests are in
  flight at once over all versions (one asyncio.Semaphore, one connection pool).
* Timeouts, connection errors, 429 and 5xx are retried (``retries`` times, exponential backoff);
  other 4xx (TF Serving's 400 for a bad image, 404 for an unknown version) and garbage answers are
  not: they will not get better in 200 ms.
* Any batch failing after its retries fails the whole evaluation of the version (PredictFailure
  with a reason: timeout, connect, http_4xx, http_5xx, garbage); figures from part of the golden
  set would not be comparable with the other version's. The first batch is sent alone, as a probe,
  so a version that is down is not sent every batch of the golden set.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import httpx
import numpy as np

from xraymodel.evaluator.compute import GarbagePredictions, check_predictions
from xraymodel.evaluator.golden import GoldenData
from xraymodel.findings import FINDINGS

REASONS = ("timeout", "connect", "http_4xx", "http_5xx", "garbage")
BACKOFF_BASE = 0.2
BACKOFF_MAX = 2.0


class PredictFailure(Exception):
    """A version could not be evaluated; `reason` is one of REASONS (`status`: the HTTP status of a 4xx)."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status


def _rows(body: object, expected: int, width: int) -> np.ndarray:
    if not isinstance(body, dict):
        raise GarbagePredictions(f"answer is a JSON {type(body).__name__}, not an object")
    if "error" in body:
        raise GarbagePredictions(f"answer carries an error: {str(body['error'])[:200]}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list):
        raise GarbagePredictions(f"answer has no 'predictions' list (keys {sorted(body)[:5]})")
    rows = []
    for row in predictions:
        if isinstance(row, dict):  # multi-output signature rows: {"probabilities": [...], ...}
            row = row.get("probabilities", next(iter(row.values())) if len(row) == 1 else None)
        rows.append(row)
    try:
        return check_predictions(rows, expected, width)
    except GarbagePredictions:
        raise
    except Exception as exc:  # ragged rows and the like
        raise GarbagePredictions(f"predictions are not a [{expected}, {width}] matrix: {exc}") from None


class TFServingClient:
    """Predict calls to one TF Serving model (module docstring). Use as an async context manager."""

    def __init__(
        self,
        endpoint: str,
        model_name: str,
        *,
        signature_name: str = "serving_default",
        preview_header: str = "x-modeldeploy-version",
        timeout_seconds: float = 10.0,
        retries: int = 2,
        concurrency: int = 4,
        width: int = len(FINDINGS),
        on_request_error: Callable[[int, str], None] | None = None,
        extra_headers: dict[str, str] | None = None,
        connect_to: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.connect_to = connect_to.rstrip("/") if connect_to else None
        self.model_name = model_name
        self.signature_name = signature_name
        self.preview_header = preview_header
        self.timeout_seconds = float(timeout_seconds)
        self.retries = int(retries)
        self.concurrency = int(concurrency)
        self.width = int(width)
        self.on_request_error = on_request_error
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_seconds),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            headers={"Content-Type": "application/json", "User-Agent": "modeldeploy-evaluator", **(extra_headers or {})},
        )

    async def __aenter__(self) -> "TFServingClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, version: int, endpoint: str | None = None) -> str:
        """The predict URL of `version` at its own `endpoint` (None: the shared endpoint)."""
        return f"{(endpoint or self.endpoint).rstrip('/')}/v1/models/{self.model_name}/versions/{int(version)}:predict"

    def request_target(self, version: int, endpoint: str | None = None) -> tuple[str, dict[str, str]]:
        """(URL to send to, headers) for one predict call of `version` (module docstring)."""
        url = self.url(version, endpoint)
        headers = {} if endpoint else {self.preview_header: f"v{int(version)}"}
        if self.connect_to:
            parts = httpx.URL(url)
            headers["Host"] = parts.netloc.decode()
            url = str(httpx.URL(self.connect_to).copy_with(path=parts.path, query=parts.query or None))
        return url, headers

    def body(self, b64_images: list[str] | tuple[str, ...]) -> bytes:
        return json.dumps({"signature_name": self.signature_name,
                           "instances": [{"b64": item} for item in b64_images]}).encode()  # fmt: skip

    def _record(self, version: int, reason: str) -> None:
        if self.on_request_error is not None:
            self.on_request_error(version, reason)

    async def _post(self, version: int, body: bytes, endpoint: str | None, decode, count: bool):
        """POST `body` to the version with the module's retries; `decode(resp)` turns a 200 into the result
        (raising PredictFailure "garbage" on a bad answer). A 4xx or garbage fails at once, 429/5xx, timeouts and
        transport errors are retried. `count`: every failure goes to on_request_error."""
        url, headers = self.request_target(version, endpoint)
        attempt = 0
        while True:
            try:
                async with self._semaphore:
                    resp = await self._http.post(url, content=body, headers=headers)
                if resp.status_code == 429 or resp.status_code >= 500:
                    failure = PredictFailure("http_5xx", f"HTTP {resp.status_code}: {resp.text[:200]}", resp.status_code)
                elif resp.status_code != 200:
                    failure = PredictFailure("http_4xx", f"HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
                    if count:
                        self._record(version, failure.reason)
                    raise failure
                else:
                    try:
                        return decode(resp)
                    except PredictFailure as exc:
                        if count:
                            self._record(version, exc.reason)
                        raise
            except httpx.TimeoutException as exc:
                failure = PredictFailure("timeout", f"no answer within {self.timeout_seconds:g}s ({type(exc).__name__})")
            except httpx.TransportError as exc:
                failure = PredictFailure("connect", f"{type(exc).__name__}: {exc}"[:300])
            if count:
                self._record(version, failure.reason)
            if attempt >= self.retries:
                raise failure
            attempt += 1
            await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random()))

    async def predict_batch(self, version: int, b64_images: list[str] | tuple[str, ...],
                            endpoint: str | None = None) -> np.ndarray:  # fmt: skip
        """[len(b64_images), width] probabilities from one version (at its own `endpoint`, else the
        shared one with the preview header), with retries (module docstring)."""

        def decode(resp: httpx.Response) -> np.ndarray:
            try:
                return _rows(resp.json(), len(b64_images), self.width)
            except (GarbagePredictions, ValueError) as exc:  # ValueError: not JSON
                raise PredictFailure("garbage", str(exc)[:300]) from None

        return await self._post(version, self.body(b64_images), endpoint, decode, count=True)

    async def model_card(self, version: int, endpoint: str | None = None) -> object:
        """The JSON answer of the version's ``model_card`` signature (xraymodel.served_card), one request.

        Same route, timeout and retries as a predict call; failures raise PredictFailure (a version
        exported without the signature: http_4xx with status 400, TF Serving's "not found in signature
        def") and are NOT counted in request_errors (they are reported as the card's status)."""
        from xraymodel.served_card import rest_request_body

        def decode(resp: httpx.Response) -> object:
            try:
                return resp.json()
            except ValueError:
                raise PredictFailure("garbage", f"not JSON: {resp.text[:200]!r}") from None

        return await self._post(version, json.dumps(rest_request_body()).encode(), endpoint, decode, count=False)

    async def predict_golden(self, version: int, golden: GoldenData, batch_size: int = 16,
                             endpoint: str | None = None) -> np.ndarray:  # fmt: skip
        """[N, width] probabilities for the whole golden set; the first failing batch fails it all.

        The first batch goes alone (a probe): a version that is down costs one batch and its
        retries, not one request per batch; the rest then go concurrently."""
        b64 = golden.b64
        first = await self.predict_batch(version, b64[:batch_size], endpoint)
        starts = range(batch_size, len(b64), batch_size)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.predict_batch(version, b64[s : s + batch_size], endpoint)) for s in starts]
        except* PredictFailure as failures:
            raise failures.exceptions[0] from None
        return np.concatenate([first, *(t.result() for t in tasks)], axis=0)

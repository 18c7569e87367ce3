"""A SavedModel behind TF Serving's REST :predict rules, for tests that need a real exported model over HTTP.

POST /v1/models/<m>/versions/<v>:predict is answered by the SavedModel's signatures the way
tensorflow_model_server does (row format in, xraymodel.serving_rest's output rules out: a
single-output signature's rows are plain lists, a DT_STRING output a plain JSON string; 400 for an
unknown signature or a bad body, 404 for another version). Listens on 127.0.0.1 only; `serve()`
stops it on exit. Shared by tests/evaluator and tests/model (tests/ is on sys.path through its conftest).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator

import tensorflow as tf
from aiohttp import web

from xraymodel.serving_rest import RestBodyError, rest_outputs_body


class SavedModelREST:
    """The export's signatures over TF Serving's REST API; `calls` counts requests per signature."""

    def __init__(self, version_dir) -> None:
        self.loaded = tf.saved_model.load(str(version_dir))
        self.version = version_dir.name
        self.calls: dict[str, int] = {}
        self.url = ""

    def _predict(self, payload: dict) -> tuple[int, dict]:
        signature = payload.get("signature_name") or "serving_default"
        self.calls[signature] = self.calls.get(signature, 0) + 1
        if signature not in self.loaded.signatures:
            return 400, {"error": f'Serving signature name: "{signature}" not found in signature def'}
        fn = self.loaded.signatures[signature]
        (input_name,) = fn.structured_input_signature[1]
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            return 400, {"error": "Missing 'inputs' or 'instances' key"}
        values = [base64.b64decode(i["b64"]) if isinstance(i, dict) and "b64" in i else i for i in instances]
        try:
            outputs = fn(**{input_name: tf.constant(values)})
            return 200, rest_outputs_body({name: t.numpy().tolist() for name, t in outputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, RestBodyError) as exc:
            return 400, {"error": str(getattr(exc, "message", exc)).splitlines()[0]}

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["version"] != self.version:
            return web.json_response({"error": "Servable not found"}, status=404)
        status, body = await asyncio.to_thread(self._predict, json.loads(await request.read()))
        return web.json_response(body, status=status)


@contextlib.asynccontextmanager
async def serve(server: SavedModelREST) -> AsyncIterator[SavedModelREST]:
    """Run `server` on 127.0.0.1 (a free port, set as server.url) until the block ends."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(r"/v1/models/{model}/versions/{version:[0-9]+}:predict", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()

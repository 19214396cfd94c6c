"""The HTTPS admission endpoint: a kopf webhook server over our reloadable SSLContext.

kopf hosts it (`settings.admission.server`) and hands it kopf's admission function. With the
"direct" engine, our handler's path is served by a lean HTTP/1.1 protocol (http11.py) and answered
by `AdmissionHandler.handle`; any other path is answered allowed and unchanged, as kopf answers a
path of no handler. With the "kopf" engine, requests go through aiohttp and kopf's machinery
(kopf_engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import orjson

from webhook.service import metrics
from webhook.service.admission import http11
from webhook.service.admission.decision import BAD_REQUEST
from webhook.service.admission.handler import AdmissionHandler
from webhook.service.admission.kopf_engine import serve_through_kopf
from webhook.service.admission.review import (
    ADMISSION_API_VERSION,
    AdmissionRequestError,
    encode_error,
    parse_review,
)
from webhook.service.tls.certificates import ServingContext
from webhook.service.tls.webhook_configuration import HANDLER_ID

logger = logging.getLogger("webhook.server")

MAX_REQUEST_BYTES = 8 * 1024 * 1024  # the apiserver caps objects near 1.5 MiB; a margin for review wrapping


class AdmissionServer:
    """A kopf webhook server (`settings.admission.server`) over our reloadable SSLContext."""

    def __init__(
        self,
        handler: AdmissionHandler,
        serving: ServingContext,
        *,
        address: str = "0.0.0.0",
        port: int = 8443,
        engine: str = "direct",
        url: str | None = None,
    ) -> None:
        self.handler = handler
        self.serving = serving
        self.address = address
        self.port = port
        self.engine = engine
        self.url = url or f"https://{address}:{port}"
        self.started = asyncio.Event()

    async def __call__(self, fn: Any) -> AsyncIterator[dict[str, Any]]:
        if self.engine == "direct":
            async for endpoint in self._serve_direct():
                yield endpoint
            return
        kopf_fn = fn

        async def answer_request(request: aiohttp.web.Request) -> aiohttp.web.Response:
            body = await request.read()
            if request.match_info.get("id") == HANDLER_ID and self.engine == "direct":
                status, payload = await self.handler.handle(body)
                return aiohttp.web.Response(status=status, body=payload, content_type="application/json")
            return await serve_through_kopf(kopf_fn, request, body)

        app = aiohttp.web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/{id}", answer_request)
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(
            runner, self.address, self.port, ssl_context=self.serving.context, reuse_address=True
        )
        try:
            await site.start()
            logger.info(
                "admission server listening on https://%s:%s/%s (engine %s)",
                self.address,
                self.port,
                HANDLER_ID,
                self.engine,
            )
            self.started.set()
            yield {"url": self.url}
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _serve_direct(self) -> AsyncIterator[dict[str, Any]]:
        """Our handler's path on the lean HTTP/1.1 protocol: aiohttp's request and response objects,
        router and stream writer cost more CPU per admission than the decision (bench/RESULTS.md)."""
        server = await http11.start_server(
            self.handler.handle,
            f"/{HANDLER_ID}",
            other_paths=_no_handler,
            host=self.address,
            port=self.port,
            ssl=self.serving.context,
            max_body=MAX_REQUEST_BYTES,
        )
        try:
            logger.info(
                "admission server listening on https://%s:%s/%s (engine direct)",
                self.address,
                self.port,
                HANDLER_ID,
            )
            self.started.set()
            yield {"url": self.url}
            await asyncio.Event().wait()
        finally:
            server.close()
            # Newer Pythons wait here for open keep-alive connections: do not hang a shutdown on them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)


async def _no_handler(body: bytes) -> tuple[int, bytes]:
    """A path of no handler: allowed and unchanged, as kopf answers it; a malformed review is a 400."""
    try:
        request = parse_review(body)
    except AdmissionRequestError as error:
        metrics.REQUESTS.labels(outcome=BAD_REQUEST).inc()
        return 400, encode_error(str(error))
    response = {"uid": request.uid, "allowed": True}
    return 200, orjson.dumps(
        {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}
    )

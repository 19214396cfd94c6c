"""The HTTPS admission endpoint: a kopf webhook server over our reloadable SSLContext.

kopf hosts it (`settings.admission.server`) and hands it kopf's admission function. Requests to
our handler's path are answered by `AdmissionHandler.handle` (the "direct" engine); with the
"kopf" engine, and for any other path, they go through kopf's machinery (kopf_engine.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web

from webhook.service.admission.handler import AdmissionHandler
from webhook.service.admission.kopf_engine import serve_through_kopf
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

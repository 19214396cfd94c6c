"""The HTTPS admission endpoint (a kopf webhook server) and the plain-HTTP health/metrics endpoint.

kopf starts `AdmissionServer` through `settings.admission.server`. With the "direct" engine, our
handler's path is served by a lean HTTP/1.1 protocol (http11.py) and answered by `AdmissionHandler`
directly from the snapshot; any other path is answered allowed and unchanged, as kopf does. With
the "kopf" engine, requests go through aiohttp and kopf's generic admission machinery, which
deep-copies and diffs the pod to build its patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.service import http11, metrics
from webhook.service.admission import (
    ADMISSION_API_VERSION,
    AdmissionHandler,
    AdmissionRequestError,
    parse_review,
)
from webhook.service.certs import ServingContext
from webhook.service.webhookconfig import HANDLER_ID

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

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
            body = await request.read()
            if request.match_info.get("id") == HANDLER_ID and self.engine == "direct":
                status, payload = await self.handler.handle(body)
                return aiohttp.web.Response(status=status, body=payload, content_type="application/json")
            return await self._serve_kopf(kopf_fn, request, body)

        app = aiohttp.web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/{id}", serve)
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
        """Our handler's path only, on the lean HTTP/1.1 protocol (webhook/service/http11.py)."""
        server = await http11.start_server(
            self.handler.handle,
            f"/{HANDLER_ID}",
            other_paths=self._no_handler,
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

    @staticmethod
    async def _no_handler(body: bytes) -> tuple[int, bytes]:
        """A path of no handler: allowed, unchanged (as kopf answers it); a malformed review is a 400."""
        try:
            request = parse_review(body)
        except AdmissionRequestError as error:
            metrics.REQUESTS.labels(outcome="bad_request").inc()
            return 400, orjson.dumps({"error": str(error)})
        return 200, orjson.dumps(
            {
                "apiVersion": ADMISSION_API_VERSION,
                "kind": "AdmissionReview",
                "response": {"uid": request.uid, "allowed": True},
            }
        )

    async def _serve_kopf(self, fn: Any, request: aiohttp.web.Request, body: bytes) -> aiohttp.web.Response:
        from kopf._core.engines import admission as kopf_admission  # only on the kopf engine's path

        try:
            # The direct engine's checks first: kopf accepts a wrong kind, apiVersion, uid or operation,
            # and crashes (HTTP 500) on a body that is not an object or has no request.resource.
            admission_request = parse_review(body)
            data = orjson.loads(body)
            response = await fn(data, webhook=request.match_info.get("id"), headers=dict(request.headers))
        except (AdmissionRequestError, kopf_admission.WebhookError) as error:
            return self._bad_request(str(error))
        except (KeyError, TypeError, AttributeError) as error:
            # Raised by kopf while reading the review (handler errors are kopf's outcomes, not these).
            logger.warning("malformed admission request uid=%s: %r", admission_request.uid, error)
            return self._bad_request(f"request {admission_request.uid}: malformed AdmissionReview: {error!r}")
        return aiohttp.web.Response(body=orjson.dumps(response), content_type="application/json")

    @staticmethod
    def _bad_request(message: str) -> aiohttp.web.Response:
        metrics.REQUESTS.labels(outcome="bad_request").inc()
        return aiohttp.web.Response(
            status=400, body=orjson.dumps({"error": message}), content_type="application/json"
        )


class HealthServer:
    """/healthz (the loop answers), /readyz (caches synced, certificate loaded) and /metrics over HTTP."""

    def __init__(
        self, ready: Callable[[], tuple[bool, str]], address: str = "0.0.0.0", port: int = 8080
    ) -> None:
        self._ready = ready
        self.address = address
        self.port = port
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self.address, self.port, reuse_address=True).start()
        logger.info("health and metrics on http://%s:%s", self.address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def _readyz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        ready, reason = self._ready()
        return aiohttp.web.Response(status=200 if ready else 503, text=reason + "\n")

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

"""The plain-HTTP endpoint of probes and metrics: /healthz, /readyz and /metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.service import metrics

logger = logging.getLogger("webhook.server")


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

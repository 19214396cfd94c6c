"""The in-cluster registry check (opt-in: `serve --check-images`), run by the Lease holder.

Every `interval`, and after a configuration change (at most every MIN_GAP seconds), it asks each
ChaosImageRegistry scope's registry for the images the scope needs, with the scope's pull secret,
and hands the result to the state: the writer turns it into the ImagesAvailable condition,
status.unavailableImages (which every replica's watch turns into admission warnings), and an Event.
Admission never waits on it. Requests are bounded (concurrency, timeout), deduplicated across
scopes, and a failed round backs off. Secret contents stay in memory for the round; logs and status
name Secrets, never their data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes import client
from prometheus_client import Counter, Gauge

from webhook.core.availability import Availability, ScopeAvailability
from webhook.core.images import release_images, scope_images
from webhook.core.snapshot import CompiledConfig
from webhook.core.status import format_time
from webhook.registrycheck.check import (
    ScopeCheck,
    ScopeReport,
    SecretCredentials,
    SecretRef,
    check_scopes,
    secret_credentials,
    secret_of,
)
from webhook.registrycheck.client import RegistryClient, ssl_context
from webhook.service import metrics
from webhook.service.kube.resources import Resources, core_path
from webhook.service.options import ServeOptions

logger = logging.getLogger("webhook.imagecheck")

MIN_GAP = 30.0  # seconds between two rounds, whatever changes
POLL = 2.0  # how often a change of configuration is looked for
SECRET_READ_SECONDS = 30.0  # one read of a pull Secret for the check

UNAVAILABLE = Gauge(
    "chaos_registry_scope_images_unavailable",
    "Images a ChaosImageRegistry scope needs that its registry did not serve at the last check "
    "(missing, unauthorized, unreachable or pull secret missing); only with --check-images.",
    ["scope"],
    registry=metrics.REGISTRY,
)
CHECK_REQUESTS = Counter(
    "chaos_registry_image_check_requests",
    "Requests sent to registries by the image check.",
    registry=metrics.REGISTRY,
)
CHECK_SECONDS = Gauge(
    "chaos_registry_image_check_duration_seconds",
    "Duration of the last image check round.",
    registry=metrics.REGISTRY,
)


class ImageMonitor:
    def __init__(self, state: Any, api: client.ApiClient, options: ServeOptions) -> None:
        self.state = state
        self.resources = Resources(api, timeout=SECRET_READ_SECONDS)
        self.options = options
        self.interval = options.check_images_interval
        self._scopes_published: set[str] = set()

    async def run(self) -> None:
        logger.info("image check started: every %ss and after configuration changes", self.interval)
        failures = 0
        try:
            while True:
                started = time.monotonic()
                inputs = self._inputs()
                if inputs is None:
                    await asyncio.sleep(POLL)
                    continue
                try:
                    await self.check_once()
                    failures = 0
                    delay = self.interval
                except Exception as error:  # the API or a bug: back off, never stop
                    failures += 1
                    delay = min(self.interval, MIN_GAP * 2 ** min(failures, 6))
                    logger.warning("image check round failed (retrying in %.0fs): %s", delay, _line(error))
                await self._wait(started, delay, inputs)
        finally:
            logger.info("image check stopped")

    def _inputs(self) -> tuple[Any, ...] | None:
        snapshot = self.state.snapshot
        if snapshot is None:
            return None
        return (snapshot.config, self.state.source_changes)

    async def _wait(self, started: float, delay: float, inputs: tuple[Any, ...]) -> None:
        deadline = started + delay
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            current = self._inputs()
            changed = current is not None and (current[0] is not inputs[0] or current[1] != inputs[1])
            if changed and time.monotonic() >= started + MIN_GAP:
                return

    async def check_once(self) -> Availability:
        snapshot = self.state.snapshot
        if snapshot is None:
            raise RuntimeError("no configuration yet")
        started = time.monotonic()
        # Planning, checking and collating 10,000 scopes takes seconds of CPU: all of it in worker
        # threads (the requests in an event loop of their own), so admission keeps its loop.
        checks = await asyncio.to_thread(plan, snapshot.config, self.options.namespace)
        refs = {check.secret for check in checks if check.secret is not None}
        secrets = await asyncio.to_thread(self._read_secrets, refs)
        reports, sent = await asyncio.to_thread(asyncio.run, self._check(checks, secrets))
        availability = await asyncio.to_thread(availability_of, reports, format_time(datetime.now(UTC)))
        self.state.set_availability(availability)
        self._publish_metrics(availability, sent, time.monotonic() - started)
        bad = [scope for scope, result in availability.scopes.items() if not result.ok]
        logger.info(
            "image check: %d scopes, %d with unavailable images%s; %d requests in %.2fs",
            len(availability.scopes),
            len(bad),
            f" ({', '.join(bad[:5])}{'...' if len(bad) > 5 else ''})" if bad else "",
            sent,
            time.monotonic() - started,
        )
        return availability

    async def _check(
        self, checks: list[ScopeCheck], secrets: dict[SecretRef, SecretCredentials]
    ) -> tuple[list[ScopeReport], int]:
        context = ssl_context(self.options.registry_ca_file)
        connector = aiohttp.TCPConnector(limit=self.options.check_images_concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            registry = RegistryClient(
                session,
                ssl_context=context,
                timeout=self.options.check_images_timeout,
                concurrency=self.options.check_images_concurrency,
            )
            reports = await check_scopes(registry, checks, secrets)
            return reports, registry.counters.requests

    def _read_secrets(self, refs: Iterable[SecretRef]) -> dict[SecretRef, SecretCredentials]:
        allowed = set(self.options.source_namespaces)
        found: dict[SecretRef, SecretCredentials] = {}
        for ref in refs:
            if ref.namespace not in allowed:
                found[ref] = f"Secret namespace {ref.namespace} is not allowed (secretSourceNamespaces)"
                continue
            try:
                secret = self.resources.get(core_path("secrets", ref.namespace, ref.name), "V1Secret")
            except client.ApiException as error:
                if error.status == 404:
                    found[ref] = f"Secret {ref} not found"
                    continue
                raise
            found[ref] = secret_credentials(ref, secret.data or {})
        return found

    def _publish_metrics(self, availability: Availability, sent: int, seconds: float) -> None:
        for scope, result in availability.scopes.items():
            UNAVAILABLE.labels(scope=scope).set(len(result.unavailable))
        for gone in self._scopes_published - set(availability.scopes):
            UNAVAILABLE.remove(gone)
        self._scopes_published = set(availability.scopes)
        CHECK_REQUESTS.inc(sent)
        CHECK_SECONDS.set(seconds)


def plan(config: CompiledConfig, release_namespace: str) -> list[ScopeCheck]:
    """One check per ChaosImageRegistry scope: the release images at the defaults' versions."""
    sources = release_images(config, {})
    scopes = sorted({entry.scope for entry in config.index.entries()})
    return [
        ScopeCheck(
            str(scope),
            scope_images(config, scope, sources).images,
            secret_of(config.effective(scope), release_namespace),
        )
        for scope in scopes
    ]


def availability_of(reports: Iterable[ScopeReport], checked_at: str) -> Availability:
    return Availability.of(
        {
            report.scope: ScopeAvailability(
                needed=len(report.results),
                unavailable=tuple((r.image, r.outcome.value, r.detail) for r in report.failing()),
                checked_at=checked_at,
            )
            for report in reports
        }
    )


def _line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]

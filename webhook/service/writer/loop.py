"""The write side's loop (run by the Lease holder only): pull-secret copies, then status, each round.

Each round compares what `webhook.core.status` says should be true with what the API holds and
writes only the difference (statuses.py, copies.py, with Events from events.py); then it waits for
the next change of the watched state, or the resync interval. An error is logged (one line, naming
the object) and the object is retried next round: the loop never ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kubernetes import client

from webhook.core.status import SecretSources
from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState
from webhook.service.writer.copies import CopyWriter
from webhook.service.writer.events import EventPoster
from webhook.service.writer.failures import FailureLog
from webhook.service.writer.record import CopiesRecord, copies_configmap_name
from webhook.service.writer.statuses import StatusWriter

logger = logging.getLogger("webhook.writer")

REQUEST_TIMEOUT_SECONDS = 30.0


class Writer:
    """Reconciles status, Secret copies and Events from `state`; `run()` while holding the Lease."""

    def __init__(self, state: ConfigState, api: client.ApiClient, options: ServeOptions) -> None:
        self.state = state
        self.options = options
        self.failures = FailureLog()
        self.record = CopiesRecord(
            api, options.namespace, copies_configmap_name(options.lease_name), REQUEST_TIMEOUT_SECONDS
        )
        events = EventPoster(api, options.identity, REQUEST_TIMEOUT_SECONDS)
        self.statuses = StatusWriter(state, api, self.failures, events, REQUEST_TIMEOUT_SECONDS)
        self.copies = CopyWriter(
            state, api, options, self.record, self.failures, REQUEST_TIMEOUT_SECONDS, events
        )

    def _reset(self) -> None:
        """Forget everything cached: another leader may have written in between."""
        self.failures.clear()
        self.statuses.reset()
        self.copies.reset()

    async def run(self) -> None:
        self._reset()
        logger.info(
            "writer started: status, Secret copies (record in ConfigMap %s/%s) and Events; resync every %ss",
            self.options.namespace,
            self.record.name,
            self.options.resync_interval,
        )
        try:
            while True:
                try:
                    await self.reconcile()
                except Exception:  # a bug, not an API error (those are handled per object)
                    logger.exception("write round failed; trying again next round")
                await self._wait()
        finally:
            logger.info("writer stopped")

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.wait_changed(), self.options.resync_interval)

    async def reconcile(self) -> None:
        """One round: copies first, since pods cannot pull without them, then status. A first round
        at 100,000 registries writes every status (about ten minutes at the apiserver's pace,
        bench/RESULTS.md), which must not keep the 52,500 copies its namespaces need waiting."""
        snapshot = self.state.snapshot
        if snapshot is None:
            return
        sources = SecretSources.of(
            self.options.namespace, self.options.source_namespaces, self.state.source_secrets
        )
        await self.copies.reconcile(snapshot, sources)
        await self.statuses.reconcile(snapshot, sources)

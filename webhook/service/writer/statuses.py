"""ChaosImageRegistry status: what `webhook.core.status` says it should be, written where it differs.

Statuses are planned in batches off the event loop (planning 10,000 at once was the largest part
of the process's peak memory, bench/RESULTS.md), and a round whose inputs are the ones the last
clean round settled is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from kubernetes import client

from webhook.core.availability import Availability
from webhook.core.models import API_VERSION, MANAGER, PLURAL
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.core.status import SecretSources, attention_needed, desired_statuses, owned, status_patch
from webhook.service.kube.errors import describe, status_of
from webhook.service.kube.resources import MERGE_PATCH, Resources, group_path
from webhook.service.state import ConfigState, RegistryObject
from webhook.service.writer.events import EventPoster
from webhook.service.writer.failures import FailureLog

logger = logging.getLogger("webhook.writer")

# Registries whose desired status is computed and written at a time.
STATUS_BATCH = 250


@dataclass(frozen=True, slots=True)
class RegistryView:
    """A registry with the status to compare against (see `StatusWriter.current_status`)."""

    name: str
    generation: int
    status: Mapping[str, Any]
    problems: tuple[str, ...]
    observed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusInputs:
    """What the statuses are computed from; the same inputs give the same statuses."""

    config: CompiledConfig
    sources: SecretSources
    records: tuple[RegistryObject, ...]
    availability: Availability | None = None  # the last registry check (opt-in)

    def same(self, other: StatusInputs) -> bool:
        return (
            self.config is other.config
            and self.availability is other.availability
            and self.sources == other.sources
            and len(self.records) == len(other.records)
            and all(a is b for a, b in zip(self.records, other.records, strict=True))
        )


def canonical(status: Mapping[str, Any]) -> str:
    """A status as text that compares equal exactly when the statuses are equal."""
    # str: orjson's bytes keep a 4 KiB buffer each (see state._compressed_json).
    return orjson.dumps(status, option=orjson.OPT_SORT_KEYS).decode()


class StatusWriter:
    """Writes the status of every ChaosImageRegistry in `state` that differs from the desired one."""

    def __init__(
        self,
        state: ConfigState,
        api: client.ApiClient,
        failures: FailureLog,
        events: EventPoster,
        request_timeout: float,
    ) -> None:
        self.state = state
        self.resources = Resources(api, timeout=request_timeout)
        self.failures = failures
        self.events = events
        self.reset()

    def reset(self) -> None:
        """Forget what was written: another leader may have written in between."""
        # registry name -> (status observed before our write, owned status written), as JSON, until
        # the watch delivers what we wrote.
        self.written: dict[str, tuple[str, str]] = {}
        self.settled: StatusInputs | None = None

    async def reconcile(self, snapshot: Snapshot, sources: SecretSources) -> bool:
        """One round; False when the statuses could not even be computed (a bug, logged; the
        next round tries again)."""
        # RegistryObjects are replaced, never changed, on each watch event: a tuple of them is a
        # consistent view the thread below can read while the watches go on.
        records = tuple(self.state.objects.values())
        inputs = StatusInputs(snapshot.config, sources, records, self.state.availability)
        if self.settled is not None and self.settled.same(inputs):
            return True
        clean = True
        for first in range(0, len(records), STATUS_BATCH):
            self.forget_overtaken()
            batch = records[first : first + STATUS_BATCH]
            try:
                # Off the event loop, so admission requests are answered meanwhile.
                views, statuses = await asyncio.to_thread(self.plan, snapshot, sources, batch)
            except Exception:
                logger.exception("cannot compute the desired status of ChaosImageRegistries")
                return False
            clean = await self._write(views, statuses) and clean
        self.settled = inputs if clean else None
        return True

    def forget_overtaken(self) -> None:
        """Drop the record of a status we wrote once the watch has delivered it (or a newer one),
        or the registry is gone: so it holds about one batch, not every registry."""
        objects = self.state.objects
        for name, (before, _) in list(self.written.items()):
            record = objects.get(name)
            if record is None or canonical(owned(record.status)) != before:
                del self.written[name]

    def plan(
        self, snapshot: Snapshot, sources: SecretSources, records: tuple[RegistryObject, ...]
    ) -> tuple[list[RegistryView], dict[str, dict[str, Any]]]:
        """The desired status of each record, and what to compare it with. Runs in a thread."""
        views: list[RegistryView] = []
        for record in records:
            observed = owned(record.status)
            current = self.current_status(record.name, observed)
            views.append(RegistryView(record.name, record.generation, current, record.problems, observed))
        now = datetime.now(UTC)
        return views, desired_statuses(snapshot.config, views, sources, now, self.state.availability)

    def current_status(self, name: str, observed: dict[str, Any]) -> dict[str, Any]:
        """The owned status to compare with: what we wrote, until the watch delivers a newer one."""
        written = self.written.get(name)
        if written is not None and written[0] == canonical(observed):
            status: dict[str, Any] = orjson.loads(written[1])
            return status
        return observed  # nothing written, or the watch has delivered a newer status

    async def _write(self, views: list[RegistryView], statuses: dict[str, dict[str, Any]]) -> bool:
        """Patch every status that differs; True when none did (and so none failed)."""
        clean = True
        for view in views:
            desired = statuses[view.name]
            patch = status_patch(view.status, desired)
            if patch is None:
                continue
            clean = False
            key = f"status of ChaosImageRegistry {view.name}"
            try:
                updated = await asyncio.to_thread(self._patch_status, view.name, patch)
            except Exception as error:
                if status_of(error) == 404:
                    continue  # deleted meanwhile; the watch will tell the state
                self.failures.failed(key, f"cannot update {key}: {describe(error)}")
                continue
            self.failures.succeeded(key)
            self.written[view.name] = (canonical(view.observed), canonical(desired))
            logger.info("updated %s: %s", key, summary(desired))
            for reason, message in attention_needed(view.status, desired):
                await self.events.post(updated, reason, message)
        return clean

    def _patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = group_path(API_VERSION, PLURAL, name=name) + "/status"
        result = self.resources.patch(path, {"status": patch}, "object", MERGE_PATCH, MANAGER)
        return result if isinstance(result, dict) else {}


def summary(status: Mapping[str, Any]) -> str:
    """A status in one log line: its conditions and observed generation."""
    conditions = status.get("conditions") or []
    parts = [
        f"{c['type']}={c['status']}"
        + (f" ({c['reason']})" if c["status"] == "True" and c["type"] != "Effective" else "")
        for c in conditions
    ]
    return ", ".join(parts) + f", observedGeneration {status.get('observedGeneration')}"

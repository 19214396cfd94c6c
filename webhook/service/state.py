"""Watched objects -> the current Snapshot.

Watch handlers call `upsert_*`/`delete_*`; a rebuild is scheduled a moment later so that a burst
of events (the initial listing of 10,000 resources) costs one rebuild, not 10,000. Admission reads
`state.snapshot`, a single reference replaced whole by each rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from pydantic import ValidationError

from webhook.core.availability import Availability, unavailable_from_status
from webhook.core.classifier import NamespaceLabels
from webhook.core.loader import parse_defaults_configmap, registry_entry
from webhook.core.models import DefaultsConfig, format_validation_error, load_defaults
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.service import metrics

logger = logging.getLogger("webhook.state")

# The status of a resource no writer has written yet: one object for all of them.
_NO_STATUS = zlib.compress(b"{}")


@dataclass(frozen=True, slots=True)
class RegistryObject:
    """A watched ChaosImageRegistry: its entry (None when invalid) and what the writer needs.

    The status is kept as compressed JSON (at 10,000 registries about 3 MiB; as decoded dicts
    38 MiB, as JSON text 12 MiB): only the writer reads it, off the event loop, in batches."""

    name: str
    generation: int
    status_data: bytes = _NO_STATUS
    problems: tuple[str, ...] = ()
    entry: RegistryEntry | None = None

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = orjson.loads(zlib.decompress(self.status_data))
        return status


class ConfigState:
    """The webhook's in-memory view of the cluster, and the snapshot built from it."""

    def __init__(self, rebuild_delay: float = 0.05) -> None:
        self.rebuild_delay = rebuild_delay
        self.objects: dict[str, RegistryObject] = {}
        self._namespaces: dict[str, NamespaceLabels] = {}
        # The current snapshot reads `_namespaces` itself (a copy was 5 MiB at 100,000 namespaces):
        # once published, the dict is copied before its next change, never changed in place.
        self._namespaces_view: Mapping[str, NamespaceLabels] | None = None
        self._defaults: DefaultsConfig = load_defaults()
        self.defaults_problems: tuple[str, ...] = ()
        self.snapshot: Snapshot | None = None
        self.generation = 0
        self.source_secrets: set[tuple[str, str]] = set()
        self.source_changes = 0  # counts events of source Secrets (their data may have changed)
        self._pending: asyncio.TimerHandle | None = None
        self._config: CompiledConfig | None = None
        self._config_dirty = True
        self._changed = asyncio.Event()
        self._namespace_seen = asyncio.Event()
        # The last registry check (opt-in), on the Lease holder only: what the writer puts in status.
        self.availability: Availability | None = None
        # What every replica reads back from status.unavailableImages: admission warnings.
        self._unavailable: dict[str, tuple[tuple[str, str], ...]] = {}

    # Watched objects ---------------------------------------------------------------------------

    def upsert_registry(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        name = metadata.get("name")
        if not isinstance(name, str):
            return
        read = registry_entry(body)
        problems: tuple[str, ...] = ()
        entry = None
        if isinstance(read, list):
            problems = tuple(read)
            logger.warning("ChaosImageRegistry %s is invalid and ignored: %s", name, "; ".join(problems))
        else:
            entry = read
        unavailable = unavailable_from_status(body.get("status"))
        if unavailable != self._unavailable.get(name, ()):
            if unavailable:
                self._unavailable[name] = unavailable
            else:
                self._unavailable.pop(name, None)
            self._schedule()
        previous = self.objects.get(name)
        status = body.get("status")
        self.objects[name] = RegistryObject(
            name=name if entry is None else entry.name,  # one string for both
            generation=int(metadata.get("generation") or 0),
            status_data=_compressed_json(status) if status else _NO_STATUS,
            problems=problems,
            entry=entry,
        )
        if previous is not None and previous.entry == entry:
            # A status or metadata change (the writer's own status patches, mostly): what
            # admission reads is the same, so no rebuild of the whole configuration.
            self._notify()
            return
        self._config_changed()

    def delete_registry(self, name: str) -> None:
        self._unavailable.pop(name, None)
        self.objects.pop(name, None)
        self._config_changed()

    def upsert_namespace(self, name: str, labels: Mapping[str, Any] | None) -> None:
        new_labels = NamespaceLabels(labels)
        if self._namespaces.get(name) == new_labels:
            return
        self._changing_namespaces()[name] = new_labels
        self._schedule()

    def delete_namespace(self, name: str) -> None:
        if name in self._namespaces:
            del self._changing_namespaces()[name]
            self._schedule()

    def namespace_names(self) -> Iterable[str]:
        return self._namespaces.keys()

    def _changing_namespaces(self) -> dict[str, NamespaceLabels]:
        if self._namespaces_view is not None:
            self._namespaces = dict(self._namespaces)
            self._namespaces_view = None
        return self._namespaces

    def set_defaults(self, body: Mapping[str, Any] | None) -> None:
        """The defaults ConfigMap changed (None: deleted, back to built-ins); a bad one keeps the previous."""
        if body is None:
            self._defaults, self.defaults_problems = load_defaults(), ()
        else:
            override, problems = parse_defaults_configmap(body)
            if problems:
                self.defaults_problems = tuple(problems)
                logger.error(
                    "defaults ConfigMap is invalid, keeping the previous defaults: %s", "; ".join(problems)
                )
                return
            try:
                self._defaults = load_defaults(override)
            except ValidationError as error:  # parse_defaults_configmap validated it already
                self.defaults_problems = tuple(format_validation_error(error))
                return
            self.defaults_problems = ()
        self._config_changed()

    def set_availability(self, availability: Availability | None) -> None:
        """A registry check finished: the writer puts it in status, whence every replica's watch
        brings it to admission."""
        self.availability = availability
        self._notify()

    def set_source_secret(self, namespace: str, name: str, exists: bool, modified: bool = False) -> None:
        """A Secret of a source namespace was seen; `modified`: its data may have changed."""
        key = (namespace, name)
        if exists and key not in self.source_secrets:
            self.source_secrets.add(key)
        elif not exists and key in self.source_secrets:
            self.source_secrets.discard(key)
        elif not modified:
            return
        # The writer compares a hash of the source with each copy's: a change reaches copies now,
        # not at the next resync.
        self.source_changes += 1
        self._notify()

    # Snapshot ----------------------------------------------------------------------------------

    @property
    def defaults(self) -> DefaultsConfig:
        return self._defaults

    def rebuild(self) -> Snapshot:
        """Build and publish a new snapshot now."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._config is None or self._config_dirty:
            entries = (o.entry for o in self.objects.values() if o.entry is not None)
            self._config = CompiledConfig(self._defaults, entries)
            self._config_dirty = False
            # Each namespace's record remembers the Rewriter the previous configuration resolved
            # it to: kept, up to one per namespace would outlive that configuration.
            for labels in self._namespaces.values():
                labels.resolved = None
            # Counted per configuration, not per snapshot: a namespace's change leaves them as they were.
            metrics.BLOCKED_RESOURCES.set(self._config.index.blocked_count())
            metrics.CONFLICTING_RESOURCES.set(self._config.index.conflict_count())
        unavailable = MappingProxyType(
            {image: reason for pairs in self._unavailable.values() for image, reason in pairs}
        )
        if self._namespaces_view is None:
            self._namespaces_view = MappingProxyType(self._namespaces)
        self.snapshot = Snapshot(self._config, self._namespaces_view, unavailable)
        self.generation += 1
        metrics.SNAPSHOT_BUILDS.inc()
        metrics.CONFIG_OBJECTS.labels(kind="ChaosImageRegistry").set(len(self.objects))
        metrics.CONFIG_OBJECTS.labels(kind="Namespace").set(len(self._namespaces))
        self._namespace_seen.set()
        self._namespace_seen = asyncio.Event()
        self._notify()
        return self.snapshot

    def current(self) -> Snapshot | None:
        return self.snapshot

    async def wait_for_namespace(self, name: str, timeout: float = 1.0) -> bool:
        """Wait up to `timeout` for a snapshot that knows namespace `name`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.snapshot is None or name not in self.snapshot.namespaces:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._namespace_seen.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def wait_changed(self) -> None:
        """Return after the next change that the writer should look at."""
        await self._changed.wait()
        self._changed.clear()

    def _config_changed(self) -> None:
        self._config_dirty = True
        self._schedule()

    def _schedule(self) -> None:
        if self.snapshot is None:
            return  # the initial listing builds the first snapshot itself
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.rebuild_delay, self._rebuild_later)

    def _rebuild_later(self) -> None:
        self._pending = None
        self.rebuild()

    def _notify(self) -> None:
        self._changed.set()


def _compressed_json(value: Any) -> bytes:
    """A status as compressed JSON (also when a caller hands mapping views rather than dicts).

    orjson's bytes alone would not do: each keeps orjson's 4 KiB output buffer whatever its length
    (measured: 78 MiB for 20,000 statuses of about 1,000 characters)."""
    return zlib.compress(orjson.dumps(value, default=_plain_container), 1)


def _plain_container(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | list):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")

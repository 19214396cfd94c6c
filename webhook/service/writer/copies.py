"""Pull-secret copies: the Secrets `webhook.core.status` plans, copied from their source namespaces.

Least privilege: Secrets are read (get) only in the source namespaces, and never listed or watched
anywhere. Copies are written blind, by name: create, JSON Patch guarded by `test` operations (so
only Secrets labelled as ours are ever changed), delete with a uid precondition. The copies made
are remembered in a ConfigMap (record.py), so stale ones are found without listing. Secret
contents go from the source to the copy and nowhere else: not to logs, Events, status or the
ConfigMap. A hash of the source's data, in an annotation on the copy (readable only by whoever
may read the copy), says whether the copy is current.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from webhook.core.jsonpatch import escape_pointer
from webhook.core.models import (
    COPY_SOURCE_ANNOTATION,
    COPY_SOURCE_HASH_ANNOTATION,
    COPY_SOURCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    NEVER_SELECTED_NAMESPACES,
)
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.core.status import CopyPlan, SecretCopy, SecretSources, desired_copies
from webhook.service.kube.errors import describe, status_of
from webhook.service.kube.resources import JSON_PATCH, Resources, core_path
from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState
from webhook.service.writer.events import EventPoster
from webhook.service.writer.failures import FailureLog
from webhook.service.writer.record import CopiesRecord, Record, RecordTooLarge, Target

logger = logging.getLogger("webhook.writer")

MAX_LABEL_VALUE = 63
# What makes a Secret one of ours: the label the copies carry (a test of a JSON Patch).
OWNED_TEST: dict[str, Any] = {
    "op": "test",
    "path": f"/metadata/labels/{escape_pointer(MANAGED_BY_LABEL)}",
    "value": MANAGER,
}
# A copy known current is read again after this many resync intervals (someone may have changed it).
VERIFY_EVERY_RESYNCS = 10
# The Warning Event's reason when the record cannot hold the copies planned.
RECORD_FULL_REASON = "CopiesRecordFull"


def source_label_value(namespace: str, name: str) -> str:
    """`<namespace>.<name>`, or a shortened form with a hash when that is longer than a label value.

    The full source is always in the annotation of the same name.
    """
    value = f"{namespace}.{name}"
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: MAX_LABEL_VALUE - 11].rstrip('.-')}-{digest}"


def data_hash(secret_type: str, data: Mapping[str, str]) -> str:
    """sha256 of the type and the (base64) data: equal hashes, equal contents."""
    canonical = json.dumps({"type": secret_type, "data": dict(data)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SourceSecret:
    """A source Secret's type and data; the data is kept out of repr so it cannot reach a log."""

    type: str
    data: Mapping[str, str] = field(repr=False)
    hash: str = field(repr=False)

    @classmethod
    def of(cls, secret_type: str | None, data: Mapping[str, str] | None) -> SourceSecret:
        secret_type = secret_type or "Opaque"
        values = dict(data or {})
        return cls(secret_type, values, data_hash(secret_type, values))


@dataclass(frozen=True, slots=True)
class CopyInputs:
    """What the copies are planned from; `source_changes` counts events of source Secrets."""

    config: CompiledConfig
    namespaces: Mapping[str, Mapping[str, str]]
    sources: SecretSources
    source_changes: int

    def same(self, other: CopyInputs) -> bool:
        # Snapshots are immutable: the configuration and namespaces compare by identity.
        return (
            self.config is other.config
            and self.namespaces is other.namespaces
            and self.sources == other.sources
            and self.source_changes == other.source_changes
        )


def intended_record(record: Record, desired: Mapping[Target, SecretCopy]) -> Record:
    """The record to save before writing `desired`: every copy already made (stale ones are deleted
    and dropped afterwards) and every copy about to be made, so a copy is never left behind."""
    intent = dict(record)
    source_texts: dict[tuple[str, str], str] = {}  # one string per source, not one per copy
    for target, copy in desired.items():
        text = source_texts.get(copy.source)
        if text is None:
            text = source_texts[copy.source] = f"{copy.source_namespace}/{copy.source_name}"
        intent[target] = text
    return intent


class CopyWriter:
    """Makes the Secret copies of the plan exist, current, and no others that it made."""

    def __init__(
        self,
        state: ConfigState,
        api: client.ApiClient,
        options: ServeOptions,
        record: CopiesRecord,
        failures: FailureLog,
        request_timeout: float,
        events: EventPoster | None = None,
    ) -> None:
        self.state = state
        self.events = events
        self.resources = Resources(api, timeout=request_timeout)
        self.options = options
        self.record = record
        self.failures = failures
        self.verify_interval = options.resync_interval * VERIFY_EVERY_RESYNCS
        self.reset()

    def reset(self) -> None:
        """Forget everything cached: another leader may have written in between."""
        self.record.forget()
        # target -> (source hash written, monotonic time after which to read the copy again).
        self.verified: dict[Target, tuple[str, float]] = {}
        self.foreign: set[Target] = set()
        # The last record-full Event's text: posted again only when it changes.
        self.record_full_posted: str | None = None
        # What the last clean round was computed from, and when a copy is next due a check.
        self.done: CopyInputs | None = None
        self.due = math.inf

    async def reconcile(self, snapshot: Snapshot, sources: SecretSources) -> None:
        # Copies depend on the configuration, the namespaces and the source Secrets; with none of
        # them changed and no copy due for a check, a round has nothing to do (at 10,000
        # namespaces, planning alone is a tenth of a CPU second, taken from admission's core).
        inputs = CopyInputs(snapshot.config, snapshot.namespaces, sources, self.state.source_changes)
        if self.done is not None and inputs.same(self.done) and time.monotonic() < self.due:
            return
        try:
            plan = await asyncio.to_thread(self.plan, snapshot, sources)
        except Exception:
            logger.exception("cannot compute the pull-secret copies")
            return
        failures = self.failures.count
        await self._sync(plan)
        self.done = inputs if self.failures.count == failures else None
        self.due = min((due for _, due in self.verified.values()), default=math.inf)

    def plan(self, snapshot: Snapshot, sources: SecretSources) -> CopyPlan:
        """The Secret copies that should exist. Runs in a thread."""
        return desired_copies(
            snapshot.config,
            snapshot.namespaces,
            sources,
            bound_only=not self.options.select_all_namespaces,
            excluded={*NEVER_SELECTED_NAMESPACES, self.options.namespace},
        )

    async def _sync(self, plan: CopyPlan) -> None:
        record = self.record
        if record.entries is None:
            try:
                await asyncio.to_thread(record.load)
            except Exception as error:
                self.failures.failed(record.key, f"cannot read {record.key}: {describe(error)}")
                return
        assert record.entries is not None
        desired = {copy.target: copy for copy in plan.copies}
        if plan.skipped and logger.isEnabledFor(logging.DEBUG):
            # The registries' SecretMissing conditions say why; this is the per-namespace view.
            logger.debug(
                "%d bound namespaces get no pull-secret copy: %s", len(plan.skipped), plan.skipped[:5]
            )
        # Record first, then create: a copy made is always in the record, so it is never left behind.
        intent = intended_record(record.entries, desired)
        # When full, the ConfigMap is read again each round: someone may have made room in it.
        reload_record = False
        if intent != record.entries:
            saved = await self._save_record(intent)
            if saved is None:
                return
            if saved:
                self.failures.succeeded(f"{record.key} (new copies)")
                self.record_full_posted = None
            if not saved:
                # The record cannot hold them: copies it would not name are not made (they could
                # never be found again to delete); recorded ones are kept current, stale ones
                # deleted, which may make room for the rest next round.
                desired = {target: copy for target, copy in desired.items() if target in record.entries}
                intent = dict(record.entries)
                reload_record = True

        sources: dict[tuple[str, str], SourceSecret | None] = {}
        for source in sorted({copy.source for copy in desired.values()}):
            source_key = f"source Secret {source[0]}/{source[1]}"
            try:
                sources[source] = await asyncio.to_thread(self._read_source, *source)
            except Exception as error:
                self.failures.failed(source_key, f"cannot read {source_key}: {describe(error, detail=False)}")
                continue
            self.failures.succeeded(source_key)
        for _target, copy in sorted(desired.items()):
            if copy.source not in sources:
                continue  # could not read it: leave the copy as it is this round
            source_secret = sources[copy.source]
            if source_secret is None:
                continue  # just deleted: the watch will drop it from the plan, and the copy with it
            await self._ensure_copy(copy, source_secret)

        remaining = dict(intent)
        for target in sorted(set(intent) - set(desired)):
            target_key = f"Secret copy {target[0]}/{target[1]}"
            try:
                deleted = await asyncio.to_thread(self._delete_copy, target)
            except Exception as error:
                text = f"cannot delete {target_key}: {describe(error, detail=False)}"
                self.failures.failed(target_key, text)
                continue  # kept in the record: deleted next round
            self.failures.succeeded(target_key)
            self.verified.pop(target, None)
            self.foreign.discard(target)
            del remaining[target]
            if deleted:
                logger.info("deleted %s (no longer needed)", target_key)
        if remaining != record.entries:
            await self._save_record(remaining)
        if reload_record:
            record.forget()

    async def _save_record(self, entries: Record) -> bool | None:
        """True when saved; False when too large (the record read still holds); None on any other
        failure (the round stops)."""
        record = self.record
        try:
            await asyncio.to_thread(record.save, entries)
        except RecordTooLarge as error:
            new = len(set(entries) - set(record.entries or {}))
            text = (
                f"cannot record {new} new Secret copies in {record.key}: {error}; they are not made "
                "(copies already recorded are kept current)"
            )
            # A key of its own: the smaller record saved after deleting stale copies does not
            # clear it (that would log and post again every round).
            self.failures.failed(f"{record.key} (new copies)", text)
            if self.events is not None and self.record_full_posted != text:
                self.record_full_posted = text
                await self.events.post_about_configmap(
                    record.namespace, record.name, RECORD_FULL_REASON, text
                )
            return False
        except Exception as error:
            if status_of(error) == 409:
                record.forget()  # changed under us: read it again next round
            self.failures.failed(record.key, f"cannot update {record.key}: {describe(error)}")
            return None
        self.failures.succeeded(record.key)
        return True

    def _read_source(self, namespace: str, name: str) -> SourceSecret | None:
        if namespace not in self.options.source_namespaces:
            raise PermissionError(f"namespace {namespace} is not a secret source namespace")
        try:
            secret = self.resources.get(core_path("secrets", namespace, name), "V1Secret")
        except client.ApiException as error:
            if status_of(error) == 404:
                return None
            raise
        return SourceSecret.of(secret.type, _base64_data(secret.data))

    async def _ensure_copy(self, copy: SecretCopy, source: SourceSecret) -> None:
        target = copy.target
        verified = self.verified.get(target)
        if verified is not None and verified[0] == source.hash and verified[1] > time.monotonic():
            return
        key = f"Secret copy {copy.namespace}/{copy.name}"
        try:
            outcome = await asyncio.to_thread(self._write_copy, copy, source)
        except Exception as error:
            self.verified.pop(target, None)
            self.failures.failed(
                key,
                f"cannot write {key} from {copy.source_namespace}/{copy.source_name}: "
                f"{describe(error, detail=False)}",
            )
            return
        self.failures.succeeded(key)
        # Checked again after the verify interval (spread, so that thousands of copies written in
        # one round are not all checked in one round later), or at once when the source changes.
        due = time.monotonic() + self.verify_interval * random.uniform(0.5, 1.0)
        self.verified[target] = (source.hash, due)
        if outcome == "foreign":
            if target not in self.foreign:
                self.foreign.add(target)
                logger.warning(
                    "%s exists and is not managed by the webhook: left alone (pods there use it as it is)",
                    key,
                )
            return
        self.foreign.discard(target)
        if outcome != "unchanged":
            logger.info("%s %s from %s/%s", outcome, key, copy.source_namespace, copy.source_name)

    def _copy_body(self, copy: SecretCopy, source: SourceSecret) -> client.V1Secret:
        return client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=copy.name,
                namespace=copy.namespace,
                labels={MANAGED_BY_LABEL: MANAGER, COPY_SOURCE_LABEL: source_label_value(*copy.source)},
                annotations=_copy_annotations(copy, source),
            ),
            type=source.type,
            data=dict(source.data),
        )

    # Copies are written blind: the webhook may create, patch and delete Secrets anywhere but get,
    # list or watch them only in the source namespaces. JSON Patch `test` operations make every
    # write conditional on the Secret being one of ours (and on what it holds), so no read is needed:
    # a failed test is a 422 and changes nothing; a patch that changes nothing writes nothing.

    def _write_copy(self, copy: SecretCopy, source: SourceSecret) -> str:
        """Create or update one copy; returns created, updated, unchanged or foreign."""
        namespace, name = copy.target
        label_path = f"/metadata/labels/{escape_pointer(COPY_SOURCE_LABEL)}"
        label = source_label_value(*copy.source)
        annotations = _copy_annotations(copy, source)
        is_current: list[dict[str, Any]] = [
            OWNED_TEST,
            {"op": "test", "path": "/type", "value": source.type},
            {"op": "test", "path": "/data", "value": dict(source.data)},
            {"op": "test", "path": label_path, "value": label},
            *(
                {"op": "test", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value}
                for key, value in annotations.items()
            ),
        ]
        try:
            self._patch_secret(namespace, name, is_current)
            return "unchanged"
        except client.ApiException as error:
            if status_of(error) == 404:
                self._create_secret(copy, source)
                return "created"
            if status_of(error) != 422:
                raise
        update: list[dict[str, Any]] = [
            OWNED_TEST,
            {"op": "test", "path": "/type", "value": source.type},
            {"op": "add", "path": label_path, "value": label},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
            {"op": "add", "path": "/data", "value": dict(source.data)},
        ]
        try:
            self._patch_secret(namespace, name, update)
            return "updated"
        except client.ApiException as error:
            if status_of(error) != 422:
                raise
        existing = self._owned_copy(namespace, name)
        if existing is None:
            return "foreign"
        # Ours, but the source's type changed, and a Secret's type is immutable: replace it whole.
        self._delete_secret(existing)
        self._create_secret(copy, source)
        return "updated"

    def _delete_copy(self, target: tuple[str, str]) -> bool:
        """Delete our copy at `target`; False when there is none (gone, or not ours: left alone)."""
        try:
            existing = self._owned_copy(*target)
        except client.ApiException as error:
            if status_of(error) == 404:
                return False
            raise
        if existing is None:
            return False
        try:
            self._delete_secret(existing)
        except client.ApiException as error:
            if status_of(error) in (404, 409):  # gone, or replaced by someone else meanwhile
                return False
            raise
        return True

    def _owned_copy(self, namespace: str, name: str) -> client.V1Secret | None:
        """The Secret if it is one of ours (a patch that only tests, so writes nothing), else None."""
        try:
            secret: client.V1Secret = self._patch_secret(namespace, name, [OWNED_TEST])
        except client.ApiException as error:
            if status_of(error) == 422:
                return None
            raise
        return secret

    def _patch_secret(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> client.V1Secret:
        path = core_path("secrets", namespace, name)
        result: client.V1Secret = self.resources.patch(path, operations, "V1Secret", JSON_PATCH, MANAGER)
        return result

    def _create_secret(self, copy: SecretCopy, source: SourceSecret) -> None:
        path = core_path("secrets", copy.namespace)
        self.resources.create(path, self._copy_body(copy, source), "V1Secret", MANAGER)

    def _delete_secret(self, secret: client.V1Secret) -> None:
        # The uid precondition: delete exactly the copy seen, never a Secret created since.
        metadata = _meta(secret)
        self.resources.delete(
            core_path("secrets", str(metadata.namespace), str(metadata.name)),
            client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=metadata.uid)),
        )


def _copy_annotations(copy: SecretCopy, source: SourceSecret) -> dict[str, str]:
    return {
        COPY_SOURCE_ANNOTATION: f"{copy.source_namespace}/{copy.source_name}",
        COPY_SOURCE_HASH_ANNOTATION: source.hash,
    }


def _meta(obj: Any) -> client.V1ObjectMeta:
    metadata = getattr(obj, "metadata", None)
    return metadata if isinstance(metadata, client.V1ObjectMeta) else client.V1ObjectMeta()


def _base64_data(data: Mapping[str, bytes | str] | None) -> dict[str, str]:
    """Secret data as the API sends it (base64 text), whatever form the client model holds."""
    return {
        key: value if isinstance(value, str) else base64.b64encode(value).decode("ascii")
        for key, value in (data or {}).items()
    }

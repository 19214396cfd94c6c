"""The write side (run by the Lease holder only): ChaosImageRegistry status, pull-secret copies, Events.

Each round compares what `webhook.core.status` says should be true with what the API holds and
writes only the difference; then it waits for the next change of the watched state, or the resync
interval. An error is logged (one line, naming the object) and the object is retried next round:
the loop never ends by itself.

Least privilege: Secrets are read (get) only in the source namespaces, and never listed or watched
anywhere by the writer. Copies are written blind, by name: create, JSON Patch guarded by `test`
operations (so only Secrets labelled as ours are ever changed), delete with a uid precondition.
The copies made are remembered in a ConfigMap in the webhook's namespace, so stale ones are found
without listing. Secret contents go from the source to the copy and nowhere else: not to logs,
Events, status or the ConfigMap. A hash of the source's data, in an annotation on the copy
(readable only by whoever may read the copy), says whether the copy is current.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from kubernetes import client

from webhook.core.availability import Availability
from webhook.core.models import API_GROUP, API_VERSION, KIND, LABEL_PREFIX, PLURAL
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.core.status import (
    CopyPlan,
    SecretCopy,
    SecretSources,
    attention_needed,
    desired_copies,
    desired_statuses,
    owned,
    status_patch,
)
from webhook.service.kube import status_of
from webhook.service.leader import lease_time
from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState, RegistryObject

logger = logging.getLogger("webhook.writer")

VERSION = API_VERSION.split("/", 1)[1]
MANAGER = "chaos-registry-webhook"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SOURCE_LABEL = f"{LABEL_PREFIX}source"
SOURCE_ANNOTATION = f"{LABEL_PREFIX}source"
SOURCE_HASH_ANNOTATION = f"{LABEL_PREFIX}source-hash"
COPIES_KEY = "copies.json"
# Registries whose desired status is computed and written at a time.
STATUS_BATCH = 250
# Events about cluster-scoped objects must live in "default" (API server validation).
EVENT_NAMESPACE = "default"
REPORTING_CONTROLLER = f"{API_GROUP}/{MANAGER}"
MAX_LABEL_VALUE = 63
MAX_EVENT_NOTE = 1024
# Namespaces the webhook's namespaceSelector never matches: no pod there gets a pull secret.
NEVER_INJECTED = ("kube-system",)
# What makes a Secret one of ours: the label the copies carry (a test of a JSON Patch).
OWNED_TEST: dict[str, Any] = {
    "op": "test",
    "path": f"/metadata/labels/{MANAGED_BY_LABEL.replace('/', '~1')}",
    "value": MANAGER,
}
# A copy known current is read again after this many resync intervals (someone may have changed it).
VERIFY_EVERY_RESYNCS = 10


def copies_configmap_name(lease_name: str) -> str:
    """The record of copies belongs to the election: replicas sharing a Lease share it.

    The default Lease chaos-registry-webhook-leader gives chaos-registry-webhook-copies.
    """
    return f"{lease_name.removesuffix('-leader')}-copies"


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
class _RecordView:
    """A registry with the status to compare against (see `Writer._current_status`)."""

    name: str
    generation: int
    status: Mapping[str, Any]
    problems: tuple[str, ...]
    observed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What the statuses are computed from; the same inputs give the same statuses."""

    config: CompiledConfig
    sources: SecretSources
    records: tuple[RegistryObject, ...]
    availability: Availability | None = None

    def same(self, other: _Inputs) -> bool:
        return (
            self.config is other.config
            and self.availability is other.availability
            and self.sources == other.sources
            and len(self.records) == len(other.records)
            and all(a is b for a, b in zip(self.records, other.records, strict=True))
        )


@dataclass(frozen=True, slots=True)
class _CopyInputs:
    """What the copies are planned from; `source_changes` counts events of source Secrets."""

    config: CompiledConfig
    namespaces: Mapping[str, Mapping[str, str]]
    sources: SecretSources
    source_changes: int

    def same(self, other: _CopyInputs) -> bool:
        # Snapshots are immutable: the configuration and namespaces compare by identity.
        return (
            self.config is other.config
            and self.namespaces is other.namespaces
            and self.sources == other.sources
            and self.source_changes == other.source_changes
        )


def _canonical(status: Mapping[str, Any]) -> str:
    # str: orjson's bytes keep a 4 KiB buffer each (see state._compressed_json).
    return orjson.dumps(status, option=orjson.OPT_SORT_KEYS).decode()


def describe(error: BaseException, detail: bool = True) -> str:
    """One line about an API error. `detail=False` leaves out the server's message (Secret writes:
    an admission webhook's message could quote the object)."""
    if not isinstance(error, client.ApiException):
        return f"{type(error).__name__}: {error}"
    reason, message = error.reason, ""
    try:
        body = json.loads(error.body or "{}")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    except (ValueError, AttributeError):
        pass
    text = f"{error.status} {reason}"
    if detail and message:
        text += f": {message[:300]}"
    return text


class Writer:
    """Reconciles status, Secret copies and Events from `state`; `run()` while holding the Lease."""

    def __init__(self, state: ConfigState, api: client.ApiClient, options: ServeOptions) -> None:
        self.state = state
        self.api = api
        self.options = options
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.events = client.EventsV1Api(api)
        self.copies_configmap = copies_configmap_name(options.lease_name)
        self.verify_interval = options.resync_interval * VERIFY_EVERY_RESYNCS
        self.request_timeout = 30.0
        self._reset()

    def _reset(self) -> None:
        """Forget everything cached: another leader may have written in between."""
        # target (namespace, name) -> "source-namespace/source-name", as in the ConfigMap.
        self._record: dict[tuple[str, str], str] | None = None
        self._record_version: str | None = None
        # target -> (source hash written, monotonic time after which to read the copy again).
        self._verified: dict[tuple[str, str], tuple[str, float]] = {}
        # registry name -> (status observed before our write, owned status written), as JSON, until
        # the watch delivers what we wrote.
        self._written: dict[str, tuple[str, str]] = {}
        self._failures: dict[str, str] = {}
        self._foreign: set[tuple[str, str]] = set()
        self._settled: _Inputs | None = None
        # What the last clean copies round was computed from, and when a copy is next due a check.
        self._copies_done: _CopyInputs | None = None
        self._copies_due = math.inf
        self._failure_count = 0  # calls of _failed, so a round can tell whether anything failed

    # The loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._reset()
        logger.info(
            "writer started: status, Secret copies (record in ConfigMap %s/%s) and Events; resync every %ss",
            self.options.namespace,
            self.copies_configmap,
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
        """One round: status first (cheap, what users look at), then copies."""
        snapshot = self.state.snapshot
        if snapshot is None:
            return
        sources = SecretSources.of(
            self.options.namespace, self.options.source_namespaces, self.state.source_secrets
        )
        # RegistryObjects are replaced, never changed, on each watch event: a tuple of them is a
        # consistent view the thread below can read while the watches go on.
        records = tuple(self.state.objects.values())
        inputs = _Inputs(snapshot.config, sources, records, self.state.availability)
        if self._settled is None or not self._settled.same(inputs):
            # In batches: the desired statuses of 10,000 registries held at once were the largest
            # part of the process's peak memory (bench/RESULTS.md).
            clean = True
            for first in range(0, len(records), STATUS_BATCH):
                self._forget_overtaken()
                batch = records[first : first + STATUS_BATCH]
                try:
                    # Off the event loop, so admission requests are answered meanwhile.
                    views, statuses = await asyncio.to_thread(self._plan_statuses, snapshot, sources, batch)
                except Exception:
                    logger.exception("cannot compute the desired status of ChaosImageRegistries")
                    return
                clean = await self._write_statuses(views, statuses) and clean
            self._settled = inputs if clean else None
        # Copies depend on the configuration, the namespaces and the source Secrets; with none of
        # them changed and no copy due for a check, a round has nothing to do (at 10,000
        # namespaces, planning alone is a tenth of a CPU second, taken from admission's core).
        copy_inputs = _CopyInputs(snapshot.config, snapshot.namespaces, sources, self.state.source_changes)
        done = self._copies_done
        if done is not None and copy_inputs.same(done) and time.monotonic() < self._copies_due:
            return
        try:
            plan = await asyncio.to_thread(self._plan_copies, snapshot, sources)
        except Exception:
            logger.exception("cannot compute the pull-secret copies")
            return
        failures = self._failure_count
        await self._sync_copies(plan)
        self._copies_done = copy_inputs if self._failure_count == failures else None
        self._copies_due = min((due for _, due in self._verified.values()), default=math.inf)

    def _forget_overtaken(self) -> None:
        """Drop the record of a status we wrote once the watch has delivered it (or a newer one),
        or the registry is gone: so it holds about one batch, not every registry."""
        objects = self.state.objects
        for name, (before, _) in list(self._written.items()):
            record = objects.get(name)
            if record is None or _canonical(owned(record.status)) != before:
                del self._written[name]

    def _plan_statuses(
        self, snapshot: Snapshot, sources: SecretSources, records: tuple[RegistryObject, ...]
    ) -> tuple[list[_RecordView], dict[str, dict[str, Any]]]:
        """The desired status of each record, and what to compare it with. Runs in a thread."""
        views: list[_RecordView] = []
        for record in records:
            observed = owned(record.status)
            current = self._current_status(record.name, observed)
            views.append(_RecordView(record.name, record.generation, current, record.problems, observed))
        now = datetime.now(UTC)
        return views, desired_statuses(snapshot.config, views, sources, now, self.state.availability)

    def _plan_copies(self, snapshot: Snapshot, sources: SecretSources) -> CopyPlan:
        """The Secret copies that should exist. Runs in a thread."""
        return desired_copies(
            snapshot.config,
            snapshot.namespaces,
            sources,
            bound_only=not self.options.select_all_namespaces,
            excluded={*NEVER_INJECTED, self.options.namespace},
        )

    # Errors: one line the first time, then quiet until it changes or succeeds -----------------------

    def _failed(self, key: str, text: str) -> None:
        self._failure_count += 1
        if self._failures.get(key) != text:
            logger.warning("%s (retrying every round)", text)
            self._failures[key] = text
        else:
            logger.debug("%s (again)", text)

    def _succeeded(self, key: str) -> None:
        if self._failures.pop(key, None) is not None:
            logger.info("%s: succeeded after earlier failures", key)

    # Status --------------------------------------------------------------------------------------

    def _current_status(self, name: str, observed: dict[str, Any]) -> dict[str, Any]:
        """The owned status to compare with: what we wrote, until the watch delivers a newer one."""
        written = self._written.get(name)
        if written is not None and written[0] == _canonical(observed):
            status: dict[str, Any] = orjson.loads(written[1])
            return status
        return observed  # nothing written, or the watch has delivered a newer status

    async def _write_statuses(self, views: list[_RecordView], statuses: dict[str, dict[str, Any]]) -> bool:
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
                self._failed(key, f"cannot update {key}: {describe(error)}")
                continue
            self._succeeded(key)
            self._written[view.name] = (_canonical(view.observed), _canonical(desired))
            logger.info("updated %s: %s", key, _summary(desired))
            for reason, message in attention_needed(view.status, desired):
                await self._post_event(updated, reason, message)
        return clean

    def _patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result = self.custom.patch_cluster_custom_object_status(
            API_GROUP,
            VERSION,
            PLURAL,
            name,
            {"status": patch},
            field_manager=MANAGER,
            _request_timeout=self.request_timeout,
        )
        return result if isinstance(result, dict) else {}

    # Events --------------------------------------------------------------------------------------

    async def _post_event(self, registry: Mapping[str, Any], reason: str, message: str) -> None:
        metadata = registry.get("metadata") or {}
        name = str(metadata.get("name"))
        try:
            await asyncio.to_thread(self._create_event, metadata, reason, message)
        except Exception as error:
            # Events are best effort: the condition in status says the same.
            logger.warning(
                "cannot post Event %s for ChaosImageRegistry %s: %s", reason, name, describe(error)
            )
            return
        logger.info("posted Event %s for ChaosImageRegistry %s", reason, name)

    def _create_event(self, metadata: Mapping[str, Any], reason: str, message: str) -> None:
        name = str(metadata.get("name"))
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{name[:230]}.{secrets.token_hex(8)}", "namespace": EVENT_NAMESPACE},
            "eventTime": lease_time(datetime.now(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.options.identity[:128],
            "action": "Reconcile",
            "reason": reason,
            "note": message[:MAX_EVENT_NOTE],
            "type": "Warning",
            "regarding": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
        }
        self.events.create_namespaced_event(
            EVENT_NAMESPACE, client.EventsV1Event.model_validate(body), _request_timeout=self.request_timeout
        )

    # Secret copies -------------------------------------------------------------------------------

    async def _sync_copies(self, plan: CopyPlan) -> None:
        key = f"ConfigMap {self.options.namespace}/{self.copies_configmap}"
        if self._record is None:
            try:
                await asyncio.to_thread(self._load_record)
            except Exception as error:
                self._failed(key, f"cannot read {key}: {describe(error)}")
                return
        assert self._record is not None
        desired = {copy.target: copy for copy in plan.copies}
        if plan.skipped and logger.isEnabledFor(logging.DEBUG):
            # The registries' SecretMissing conditions say why; this is the per-namespace view.
            logger.debug(
                "%d bound namespaces get no pull-secret copy: %s", len(plan.skipped), plan.skipped[:5]
            )
        # Record first, then create: a copy made is always in the record, so it is never left behind.
        intent = dict(self._record)
        source_texts: dict[tuple[str, str], str] = {}  # one string per source, not one per copy
        for target, copy in desired.items():
            text = source_texts.get(copy.source)
            if text is None:
                text = source_texts[copy.source] = f"{copy.source_namespace}/{copy.source_name}"
            intent[target] = text
        if intent != self._record and not await self._save_record(intent):
            return

        sources: dict[tuple[str, str], SourceSecret | None] = {}
        for source in sorted({copy.source for copy in desired.values()}):
            source_key = f"source Secret {source[0]}/{source[1]}"
            try:
                sources[source] = await asyncio.to_thread(self._read_source, *source)
            except Exception as error:
                self._failed(source_key, f"cannot read {source_key}: {describe(error, detail=False)}")
                continue
            self._succeeded(source_key)
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
                self._failed(target_key, f"cannot delete {target_key}: {describe(error, detail=False)}")
                continue  # kept in the record: deleted next round
            self._succeeded(target_key)
            self._verified.pop(target, None)
            self._foreign.discard(target)
            del remaining[target]
            if deleted:
                logger.info("deleted %s (no longer needed)", target_key)
        if remaining != self._record:
            await self._save_record(remaining)

    def _load_record(self) -> None:
        try:
            configmap = self.core.read_namespaced_config_map(
                self.copies_configmap, self.options.namespace, _request_timeout=self.request_timeout
            )
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            self._record, self._record_version = {}, None
            return
        self._record = _parse_record((configmap.data or {}).get(COPIES_KEY))
        self._record_version = _meta(configmap).resource_version

    async def _save_record(self, record: dict[tuple[str, str], str]) -> bool:
        key = f"ConfigMap {self.options.namespace}/{self.copies_configmap}"
        try:
            await asyncio.to_thread(self._write_record, record)
        except Exception as error:
            if status_of(error) == 409:
                self._record = None  # changed under us: read it again next round
            self._failed(key, f"cannot update {key}: {describe(error)}")
            return False
        self._succeeded(key)
        return True

    def _write_record(self, record: dict[tuple[str, str], str]) -> None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.copies_configmap,
                namespace=self.options.namespace,
                labels={MANAGED_BY_LABEL: MANAGER},
                annotations={f"{LABEL_PREFIX}description": "Secret copies made by the webhook (names only)"},
                resource_version=self._record_version,
            ),
            data={COPIES_KEY: record_text(record)},
        )
        if self._record_version is None:
            result = self.core.create_namespaced_config_map(
                self.options.namespace, body, field_manager=MANAGER, _request_timeout=self.request_timeout
            )
        else:
            result = self.core.replace_namespaced_config_map(
                self.copies_configmap,
                self.options.namespace,
                body,
                field_manager=MANAGER,
                _request_timeout=self.request_timeout,
            )
        self._record = dict(record)
        self._record_version = _meta(result).resource_version

    def _read_source(self, namespace: str, name: str) -> SourceSecret | None:
        if namespace not in self.options.source_namespaces:
            raise PermissionError(f"namespace {namespace} is not a secret source namespace")
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.request_timeout)
        except client.ApiException as error:
            if status_of(error) == 404:
                return None
            raise
        return SourceSecret.of(secret.type, _base64_data(secret.data))

    async def _ensure_copy(self, copy: SecretCopy, source: SourceSecret) -> None:
        target = copy.target
        verified = self._verified.get(target)
        if verified is not None and verified[0] == source.hash and verified[1] > time.monotonic():
            return
        key = f"Secret copy {copy.namespace}/{copy.name}"
        try:
            outcome = await asyncio.to_thread(self._write_copy, copy, source)
        except Exception as error:
            self._verified.pop(target, None)
            self._failed(
                key,
                f"cannot write {key} from {copy.source_namespace}/{copy.source_name}: "
                f"{describe(error, detail=False)}",
            )
            return
        self._succeeded(key)
        # Checked again after the verify interval (spread, so that thousands of copies written in
        # one round are not all checked in one round later), or at once when the source changes.
        due = time.monotonic() + self.verify_interval * random.uniform(0.5, 1.0)
        self._verified[target] = (source.hash, due)
        if outcome == "foreign":
            if target not in self._foreign:
                self._foreign.add(target)
                logger.warning(
                    "%s exists and is not managed by the webhook: left alone (pods there use it as it is)",
                    key,
                )
            return
        self._foreign.discard(target)
        if outcome != "unchanged":
            logger.info("%s %s from %s/%s", outcome, key, copy.source_namespace, copy.source_name)

    def _copy_body(self, copy: SecretCopy, source: SourceSecret) -> client.V1Secret:
        return client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=copy.name,
                namespace=copy.namespace,
                labels={MANAGED_BY_LABEL: MANAGER, SOURCE_LABEL: source_label_value(*copy.source)},
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
        label_path = f"/metadata/labels/{_escape(SOURCE_LABEL)}"
        label = source_label_value(*copy.source)
        annotations = _copy_annotations(copy, source)
        is_current: list[dict[str, Any]] = [
            OWNED_TEST,
            {"op": "test", "path": "/type", "value": source.type},
            {"op": "test", "path": "/data", "value": dict(source.data)},
            {"op": "test", "path": label_path, "value": label},
            *(
                {"op": "test", "path": f"/metadata/annotations/{_escape(key)}", "value": value}
                for key, value in annotations.items()
            ),
        ]
        try:
            self._patch_secret(namespace, name, is_current)
            return "unchanged"
        except client.ApiException as error:
            if status_of(error) == 404:
                self.core.create_namespaced_secret(
                    namespace,
                    self._copy_body(copy, source),
                    field_manager=MANAGER,
                    _request_timeout=self.request_timeout,
                )
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
        self.core.create_namespaced_secret(
            namespace,
            self._copy_body(copy, source),
            field_manager=MANAGER,
            _request_timeout=self.request_timeout,
        )
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
        result: client.V1Secret = self.core.patch_namespaced_secret(
            name,
            namespace,
            operations,
            field_manager=MANAGER,
            _content_type="application/json-patch+json",
            _request_timeout=self.request_timeout,
        )
        return result

    def _delete_secret(self, secret: client.V1Secret) -> None:
        # The uid precondition: delete exactly the copy seen, never a Secret created since.
        metadata = _meta(secret)
        self.core.delete_namespaced_secret(
            str(metadata.name),
            str(metadata.namespace),
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=metadata.uid)),
            _request_timeout=self.request_timeout,
        )


def _escape(key: str) -> str:
    """A map key as a JSON Pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _copy_annotations(copy: SecretCopy, source: SourceSecret) -> dict[str, str]:
    return {
        SOURCE_ANNOTATION: f"{copy.source_namespace}/{copy.source_name}",
        SOURCE_HASH_ANNOTATION: source.hash,
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


def record_text(record: Mapping[tuple[str, str], str]) -> str:
    """copies.json: source "namespace/name" -> the namespaces holding a copy of it (or
    "namespace/name" for a copy named otherwise). Grouped by source, so 10,000 copies take about
    250 KB of the ConfigMap's 1 MiB, where one object per copy took 1.2 MB."""
    grouped: dict[str, list[str]] = {}
    for (namespace, name), source in sorted(record.items()):
        same_name = source.partition("/")[2] == name
        grouped.setdefault(source, []).append(namespace if same_name else f"{namespace}/{name}")
    return json.dumps(grouped, indent=1, sort_keys=True)


def _parse_record(text: str | None) -> dict[tuple[str, str], str]:
    """The copies.json of the ConfigMap; entries that do not parse are dropped (never deleted blindly).

    Also reads the first format, a list of {"namespace", "name", "source"} objects."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        logger.warning("%s does not parse: starting from an empty record", COPIES_KEY)
        return {}
    record = {}
    if isinstance(parsed, dict):
        for source, targets in parsed.items():
            if not isinstance(targets, list) or "/" not in source:
                continue
            for target in targets:
                if isinstance(target, str) and target:
                    namespace, _, name = target.partition("/")
                    record[(namespace, name or source.partition("/")[2])] = source
    for entry in parsed if isinstance(parsed, list) else []:
        if isinstance(entry, dict) and all(
            isinstance(entry.get(k), str) for k in ("namespace", "name", "source")
        ):
            record[(entry["namespace"], entry["name"])] = entry["source"]
    return record


def _summary(status: Mapping[str, Any]) -> str:
    conditions = status.get("conditions") or []
    parts = [
        f"{c['type']}={c['status']}"
        + (f" ({c['reason']})" if c["status"] == "True" and c["type"] != "Effective" else "")
        for c in conditions
    ]
    return ", ".join(parts) + f", observedGeneration {status.get('observedGeneration')}"

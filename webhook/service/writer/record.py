"""The record of the Secret copies made (a ConfigMap of the webhook's namespace).

The writer never lists Secrets outside the source namespaces: stale copies are found in this
record. It holds names only, never Secret contents.

Two keys, so a rollback leaves no copy behind: `copies.v2.json` (grouped by source, compact) is
what this release reads first; `copies.json` keeps the list format that the first release reads (a
release reads only the format it knows and would take anything else for an empty record, then
never delete the copies it no longer wants). Both are read and merged, whichever wrote last. When
both do not fit in one ConfigMap (past about 8,400 copies), `copies.json` is left out and a
warning says a rollback to the first release would leave copies behind. Keys this release does
not know (a later release's) are kept as they are on every save.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from webhook.core.models import DESCRIPTION_ANNOTATION, MANAGED_BY_LABEL, MANAGER
from webhook.service.kube.errors import status_of
from webhook.service.kube.resources import Resources, core_path

logger = logging.getLogger("webhook.writer")

# The first release's key and format (a list of {"namespace", "name", "source"}), kept for it.
LEGACY_KEY = "copies.json"
# Grouped by source: 10,000 copies in about 250 KB.
GROUPED_KEY = "copies.v2.json"
# The API server's limit on a ConfigMap's data: the sum of its keys' and values' lengths in bytes.
MAX_CONFIGMAP_DATA_BYTES = 1_048_576

# A copy's place: (namespace, name); its source: "namespace/name", as in the ConfigMap.
Target = tuple[str, str]
Record = dict[Target, str]


class RecordTooLarge(Exception):
    """The record would be over the ConfigMap limit: the copies it would name are not made."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the record would take {size:,} bytes, over the {MAX_CONFIGMAP_DATA_BYTES:,} a ConfigMap holds"
        )
        self.size = size


def copies_configmap_name(lease_name: str) -> str:
    """The record of copies belongs to the election: replicas sharing a Lease share it.

    The default Lease chaos-registry-webhook-leader gives chaos-registry-webhook-copies.
    """
    return f"{lease_name.removesuffix('-leader')}-copies"


class CopiesRecord:
    """The ConfigMap `namespace/name`, read once per leadership and replaced with its resourceVersion."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, request_timeout: float) -> None:
        self.resources = Resources(api, timeout=request_timeout)
        self.namespace = namespace
        self.name = name
        self.key = f"ConfigMap {namespace}/{name}"
        self.forget()

    def forget(self) -> None:
        """Read it again before the next use (another leader may have written it meanwhile)."""
        self.entries: Record | None = None
        self._version: str | None = None
        self._unknown: dict[str, str] = {}
        # Whether the last save left out the first release's key (warned once per change).
        self.legacy_left_out = False

    def load(self) -> None:
        """Blocking: run in a thread."""
        try:
            configmap = self.resources.get(core_path("configmaps", self.namespace, self.name), "V1ConfigMap")
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            self.entries, self._version, self._unknown = {}, None, {}
            return
        data: dict[str, str] = dict(configmap.data or {})
        self.entries = read_data(data)
        self._unknown = {k: v for k, v in data.items() if k not in (LEGACY_KEY, GROUPED_KEY)}
        self._version = _resource_version(configmap)

    def save(self, record: Record) -> None:
        """Blocking: run in a thread. A 409 means someone changed it since it was read;
        RecordTooLarge (raised before any request) that the ConfigMap cannot hold it."""
        data, legacy_left_out = record_data(record, self._unknown)
        if legacy_left_out and not self.legacy_left_out:
            logger.warning(
                "%s: %d copies are too many to keep %s (the first release's format) besides %s; "
                "a rollback to the first release would leave Secret copies behind",
                self.key,
                len(record),
                LEGACY_KEY,
                GROUPED_KEY,
            )
        self.legacy_left_out = legacy_left_out
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={MANAGED_BY_LABEL: MANAGER},
                annotations={DESCRIPTION_ANNOTATION: "Secret copies made by the webhook (names only)"},
                resource_version=self._version,
            ),
            data=data,
        )
        if self._version is None:
            path = core_path("configmaps", self.namespace)
            result = self.resources.create(path, body, "V1ConfigMap", MANAGER)
        else:
            path = core_path("configmaps", self.namespace, self.name)
            result = self.resources.replace(path, body, "V1ConfigMap", MANAGER)
        self.entries = dict(record)
        self._version = _resource_version(result)


def _resource_version(obj: Any) -> str | None:
    metadata = getattr(obj, "metadata", None)
    return metadata.resource_version if isinstance(metadata, client.V1ObjectMeta) else None


def read_data(data: Mapping[str, str]) -> Record:
    """The copies named by either key: each is ours to delete once no longer wanted, so the union
    is the safe reading, whichever release wrote last."""
    return {**parse_record(data.get(LEGACY_KEY)), **parse_record(data.get(GROUPED_KEY))}


def data_size(data: Mapping[str, str]) -> int:
    """A ConfigMap's data as the API server measures it against its limit."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in data.items())


def record_data(record: Mapping[Target, str], unknown: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The ConfigMap's data for `record`, and whether the first release's key had to be left out.

    Raises RecordTooLarge when even the grouped format does not fit."""
    data = {**unknown, GROUPED_KEY: record_text(record)}
    size = data_size(data)
    if size > MAX_CONFIGMAP_DATA_BYTES:
        raise RecordTooLarge(size)
    legacy = legacy_record_text(record)
    if size + len(LEGACY_KEY) + len(legacy.encode()) > MAX_CONFIGMAP_DATA_BYTES:
        return data, True
    data[LEGACY_KEY] = legacy
    return data, False


def legacy_record_text(record: Mapping[Target, str]) -> str:
    """The first release's format: one {"namespace", "name", "source"} object per copy."""
    return json.dumps(
        [{"namespace": ns, "name": name, "source": source} for (ns, name), source in sorted(record.items())],
        separators=(",", ":"),
    )


def record_text(record: Mapping[Target, str]) -> str:
    """copies.v2.json: source "namespace/name" -> the namespaces holding a copy of it (or
    "namespace/name" for a copy named otherwise). Grouped by source, so 10,000 copies take about
    250 KB of the ConfigMap's 1 MiB, where one object per copy took 1.2 MB."""
    grouped: dict[str, list[str]] = {}
    for (namespace, name), source in sorted(record.items()):
        same_name = source.partition("/")[2] == name
        grouped.setdefault(source, []).append(namespace if same_name else f"{namespace}/{name}")
    return json.dumps(grouped, indent=1, sort_keys=True)


def parse_record(text: str | None) -> Record:
    """The copies.json of the ConfigMap; entries that do not parse are dropped (never deleted blindly).

    Also reads the first format, a list of {"namespace", "name", "source"} objects."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        logger.warning("the copies record does not parse: that key is read as empty")
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

"""The record of the Secret copies made (a ConfigMap of the webhook's namespace).

The writer never lists Secrets outside the source namespaces: stale copies are found in this
record. It holds names only, never Secret contents.

Two keys, so a rollback leaves no copy behind: `copies.v2.json` (grouped by source, compact) is
what this release reads first; `copies.json` keeps the list format that the first release reads (a
release reads only the format it knows and would take anything else for an empty record, then
never delete the copies it no longer wants). Both are read and merged, whichever wrote last. When
both do not fit in one ConfigMap (past about 8,400 copies), `copies.json` is left out and a
warning says a rollback to the first release would leave copies behind. When `copies.v2.json`
alone does not fit either (past about 33,000 copies: 100,000 bound namespaces, a fifth of them
under a Private registry, need 52,500), the same text is kept gzipped in binaryData
(`copies.v2.json.gz`: 222 KB for the bench's 52,500 copies, whose text is 1.66 MB), with a warning
that a rollback to a release that does not read it would leave copies behind. Keys this release
does not know (a later release's) are kept as they are on every save.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
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
# copies.v2.json gzipped, in binaryData, where the plain text does not fit.
COMPRESSED_KEY = "copies.v2.json.gz"
# The API server's limit on a ConfigMap's data and binaryData (counted here with the keys' lengths).
MAX_CONFIGMAP_DATA_BYTES = 1_048_576
# Far more than a full ConfigMap's record unpacks to: what unpacks to more is not ours.
MAX_RECORD_TEXT_BYTES = 16 * 1024 * 1024

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


@dataclass(frozen=True)
class RecordData:
    """What the ConfigMap holds for a record: `data`, `binary` (binaryData, base64) and the keys
    of older formats that did not fit besides (for the warning a rollback deserves)."""

    data: dict[str, str]
    binary: dict[str, str]
    left_out: tuple[str, ...] = ()


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
        self._unknown_binary: dict[str, str] = {}
        # The older formats' keys the last save left out (warned once per change).
        self.left_out: tuple[str, ...] = ()

    def load(self) -> None:
        """Blocking: run in a thread."""
        try:
            configmap = self.resources.get(core_path("configmaps", self.namespace, self.name), "V1ConfigMap")
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            self.entries, self._version, self._unknown, self._unknown_binary = {}, None, {}, {}
            return
        data: dict[str, str] = dict(configmap.data or {})
        binary: dict[str, str] = dict(configmap.binary_data or {})
        self.entries = read_data(data, binary)
        self._unknown = {k: v for k, v in data.items() if k not in (LEGACY_KEY, GROUPED_KEY)}
        self._unknown_binary = {k: v for k, v in binary.items() if k != COMPRESSED_KEY}
        self._version = _resource_version(configmap)

    def save(self, record: Record) -> None:
        """Blocking: run in a thread. A 409 means someone changed it since it was read;
        RecordTooLarge (raised before any request) that the ConfigMap cannot hold it."""
        saved = record_data(record, self._unknown, self._unknown_binary)
        if saved.left_out and saved.left_out != self.left_out:
            kept = COMPRESSED_KEY if GROUPED_KEY in saved.left_out else GROUPED_KEY
            logger.warning(
                "%s: %d copies are too many to keep %s besides %s; a rollback to a release that "
                "does not read %s would leave Secret copies behind",
                self.key,
                len(record),
                " or ".join(saved.left_out),
                kept,
                kept,
            )
        self.left_out = saved.left_out
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={MANAGED_BY_LABEL: MANAGER},
                annotations={DESCRIPTION_ANNOTATION: "Secret copies made by the webhook (names only)"},
                resource_version=self._version,
            ),
            data=saved.data,
            binary_data=saved.binary or None,
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


def read_data(data: Mapping[str, str], binary: Mapping[str, str] | None = None) -> Record:
    """The copies named by any key: each is ours to delete once no longer wanted, so the union
    is the safe reading, whichever release wrote last."""
    compressed = (binary or {}).get(COMPRESSED_KEY)
    return {
        **parse_record(data.get(LEGACY_KEY)),
        **parse_record(data.get(GROUPED_KEY)),
        **parse_record(unpack(compressed) if compressed is not None else None),
    }


def pack(text: str) -> str:
    """`text` gzipped, as base64 for binaryData."""
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()


def unpack(value: str) -> str | None:
    """The text of a `pack`ed value; None (with a warning) for what is not one, or unpacks to more
    than MAX_RECORD_TEXT_BYTES."""
    try:
        unzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the gzip format
        text = unzip.decompress(base64.b64decode(value, validate=True), MAX_RECORD_TEXT_BYTES)
        if unzip.unconsumed_tail or not unzip.eof or unzip.unused_data:
            raise ValueError(f"over {MAX_RECORD_TEXT_BYTES:,} bytes unpacked, cut short, or followed by more")
        return text.decode()
    except (binascii.Error, zlib.error, ValueError) as error:  # UnicodeDecodeError is a ValueError
        logger.warning(
            "the copies record's %s does not unpack (%s): that key is read as empty", COMPRESSED_KEY, error
        )
        return None


def data_size(data: Mapping[str, str], binary: Mapping[str, str] | None = None) -> int:
    """A ConfigMap's data and binaryData (base64) as the API server measures them against its
    limit: binaryData as its bytes, not as their base64 (the keys are counted too, to be safe)."""
    plain = sum(len(key.encode()) + len(value.encode()) for key, value in data.items())
    return plain + sum(len(key) + len(base64.b64decode(value)) for key, value in (binary or {}).items())


def record_data(
    record: Mapping[Target, str], unknown: Mapping[str, str], unknown_binary: Mapping[str, str] | None = None
) -> RecordData:
    """What the ConfigMap holds for `record`: both plain formats where they fit, else the grouped
    one, else the grouped one gzipped. Raises RecordTooLarge when even that does not fit."""
    binary = dict(unknown_binary or {})
    text = record_text(record)
    data = {**unknown, GROUPED_KEY: text}
    size = data_size(data, binary)
    if size > MAX_CONFIGMAP_DATA_BYTES:
        data = dict(unknown)
        binary[COMPRESSED_KEY] = pack(text)
        size = data_size(data, binary)
        if size > MAX_CONFIGMAP_DATA_BYTES:
            raise RecordTooLarge(size)
        return RecordData(data, binary, (GROUPED_KEY, LEGACY_KEY))
    legacy = legacy_record_text(record)
    if size + len(LEGACY_KEY) + len(legacy.encode()) > MAX_CONFIGMAP_DATA_BYTES:
        return RecordData(data, binary, (LEGACY_KEY,))
    data[LEGACY_KEY] = legacy
    return RecordData(data, binary)


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

"""The record of the Secret copies made (copies.json in a ConfigMap of the webhook's namespace).

The writer never lists Secrets outside the source namespaces: stale copies are found in this
record. It holds names only, never Secret contents.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from webhook.core.models import DESCRIPTION_ANNOTATION, MANAGED_BY_LABEL, MANAGER
from webhook.service.kube.errors import status_of

logger = logging.getLogger("webhook.writer")

COPIES_KEY = "copies.json"

# A copy's place: (namespace, name); its source: "namespace/name", as in the ConfigMap.
Target = tuple[str, str]
Record = dict[Target, str]


def copies_configmap_name(lease_name: str) -> str:
    """The record of copies belongs to the election: replicas sharing a Lease share it.

    The default Lease chaos-registry-webhook-leader gives chaos-registry-webhook-copies.
    """
    return f"{lease_name.removesuffix('-leader')}-copies"


class CopiesRecord:
    """The ConfigMap `namespace/name`, read once per leadership and replaced with its resourceVersion."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, request_timeout: float) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.name = name
        self.request_timeout = request_timeout
        self.key = f"ConfigMap {namespace}/{name}"
        self.forget()

    def forget(self) -> None:
        """Read it again before the next use (another leader may have written it meanwhile)."""
        self.entries: Record | None = None
        self._version: str | None = None

    def load(self) -> None:
        """Blocking: run in a thread."""
        try:
            configmap = self.core.read_namespaced_config_map(
                self.name, self.namespace, _request_timeout=self.request_timeout
            )
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            self.entries, self._version = {}, None
            return
        self.entries = parse_record((configmap.data or {}).get(COPIES_KEY))
        self._version = _resource_version(configmap)

    def save(self, record: Record) -> None:
        """Blocking: run in a thread. A 409 means someone changed it since it was read."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={MANAGED_BY_LABEL: MANAGER},
                annotations={DESCRIPTION_ANNOTATION: "Secret copies made by the webhook (names only)"},
                resource_version=self._version,
            ),
            data={COPIES_KEY: record_text(record)},
        )
        if self._version is None:
            result = self.core.create_namespaced_config_map(
                self.namespace, body, field_manager=MANAGER, _request_timeout=self.request_timeout
            )
        else:
            result = self.core.replace_namespaced_config_map(
                self.name, self.namespace, body, field_manager=MANAGER, _request_timeout=self.request_timeout
            )
        self.entries = dict(record)
        self._version = _resource_version(result)


def _resource_version(obj: Any) -> str | None:
    metadata = getattr(obj, "metadata", None)
    return metadata.resource_version if isinstance(metadata, client.V1ObjectMeta) else None


def record_text(record: Mapping[Target, str]) -> str:
    """copies.json: source "namespace/name" -> the namespaces holding a copy of it (or
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

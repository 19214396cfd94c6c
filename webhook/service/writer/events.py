"""Events (events.k8s.io/v1) about ChaosImageRegistry resources, posted when a status change needs
someone's attention, and about the writer's own ConfigMap (the copies record). Best effort: the
condition in the status, or the log, says the same."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from webhook.core.models import API_GROUP, API_VERSION, KIND, MANAGER
from webhook.service.kube.errors import describe
from webhook.service.kube.lease import lease_time
from webhook.service.kube.resources import Resources, group_path

logger = logging.getLogger("webhook.writer")

# Events about cluster-scoped objects must live in "default" (API server validation).
EVENT_NAMESPACE = "default"
REPORTING_CONTROLLER = f"{API_GROUP}/{MANAGER}"
MAX_EVENT_NOTE = 1024


class EventPoster:
    """Posts Warning Events as `identity` (this replica) of the webhook's controller."""

    def __init__(self, api: client.ApiClient, identity: str, request_timeout: float) -> None:
        self.resources = Resources(api, timeout=request_timeout)
        self.identity = identity

    async def post(self, registry: Mapping[str, Any], reason: str, message: str) -> None:
        metadata = registry.get("metadata") or {}
        name = str(metadata.get("name"))
        try:
            await asyncio.to_thread(self._create, metadata, reason, message)
        except Exception as error:
            logger.warning(
                "cannot post Event %s for ChaosImageRegistry %s: %s", reason, name, describe(error)
            )
            return
        logger.info("posted Event %s for ChaosImageRegistry %s", reason, name)

    async def post_about_configmap(self, namespace: str, name: str, reason: str, message: str) -> None:
        """An Event about one of the webhook's own ConfigMaps (in its namespace, as the API requires)."""
        regarding = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": name}
        try:
            await asyncio.to_thread(self._send, namespace, regarding, reason, message)
        except Exception as error:
            logger.warning(
                "cannot post Event %s for ConfigMap %s/%s: %s", reason, namespace, name, describe(error)
            )
            return
        logger.info("posted Event %s for ConfigMap %s/%s", reason, namespace, name)

    def _create(self, metadata: Mapping[str, Any], reason: str, message: str) -> None:
        regarding = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": str(metadata.get("name")),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        }
        self._send(EVENT_NAMESPACE, regarding, reason, message)

    def _send(self, namespace: str, regarding: Mapping[str, Any], reason: str, message: str) -> None:
        name = str(regarding["name"])
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{name[:230]}.{secrets.token_hex(8)}", "namespace": namespace},
            "eventTime": lease_time(datetime.now(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.identity[:128],
            "action": "Reconcile",
            "reason": reason,
            "note": message[:MAX_EVENT_NOTE],
            "type": "Warning",
            "regarding": dict(regarding),
        }
        path = group_path("events.k8s.io/v1", "events", namespace)
        self.resources.create(path, client.EventsV1Event.model_validate(body), "EventsV1Event")

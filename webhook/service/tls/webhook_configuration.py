"""The MutatingWebhookConfiguration, owned by the project (not kopf-managed).

The chart renders the same object; `serve --webhook-url` creates or updates it for local runs and
tests, and the self-managed certificate mode keeps its caBundle current.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from kubernetes import client

from webhook.core.models import INJECT_LABEL, NAMESPACE_NAME_LABEL, NEVER_SELECTED_NAMESPACES, SCOPE_LABELS
from webhook.service.kube.errors import status_of
from webhook.service.kube.resources import JSON_PATCH, Resources, group_path

logger = logging.getLogger("webhook.config")

HANDLER_ID = "mutate-pods"
WEBHOOK_NAME = "pods.chaosregistry.io"
CONFIGURATION_MODEL = "V1MutatingWebhookConfiguration"  # the kubernetes model of the answers


def namespace_selector(webhook_namespace: str, select_all_namespaces: bool = False) -> dict[str, Any]:
    """Opt-in namespaces: bound to an account (unless all are selected), not opted out, never
    kube-system nor the webhook's own namespace (a webhook that admits its own pods can lock itself out)."""
    expressions: list[dict[str, Any]] = []
    if not select_all_namespaces:
        expressions.append({"key": SCOPE_LABELS[0], "operator": "Exists"})
    expressions.append({"key": INJECT_LABEL, "operator": "NotIn", "values": ["false"]})
    expressions.append(
        {
            "key": NAMESPACE_NAME_LABEL,
            "operator": "NotIn",
            "values": sorted({*NEVER_SELECTED_NAMESPACES, webhook_namespace}),
        }
    )
    return {"matchExpressions": expressions}


def build_webhook_configuration(
    *,
    name: str,
    webhook_namespace: str,
    ca_bundle: bytes | None,
    url: str | None = None,
    service_name: str | None = None,
    service_port: int = 443,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
    select_all_namespaces: bool = False,
) -> dict[str, Any]:
    """The object as a plain dict, ready for the API (and comparable with the chart's rendering)."""
    if (url is None) == (service_name is None):
        raise ValueError("exactly one of url and service_name is needed")
    client_config: dict[str, Any]
    if url is not None:
        client_config = {"url": url.rstrip("/") + f"/{HANDLER_ID}"}
    else:
        client_config = {
            "service": {
                "name": service_name,
                "namespace": webhook_namespace,
                "path": f"/{HANDLER_ID}",
                "port": service_port,
            }
        }
    if ca_bundle:
        client_config["caBundle"] = base64.b64encode(ca_bundle).decode("ascii")
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "chaos-registry-webhook"}},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    },
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["pods/ephemeralcontainers"],
                        "scope": "Namespaced",
                    },
                ],
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": timeout_seconds,
                "namespaceSelector": namespace_selector(webhook_namespace, select_all_namespaces),
                "objectSelector": {
                    "matchExpressions": [{"key": INJECT_LABEL, "operator": "NotIn", "values": ["false"]}]
                },
            }
        ],
    }


def apply_webhook_configuration(api: client.ApiClient, body: dict[str, Any]) -> None:
    """Create the configuration, or replace an existing one with ours."""
    resources = Resources(api)
    name = body["metadata"]["name"]
    try:
        existing = resources.get(_configuration_path(name), CONFIGURATION_MODEL)
    except client.ApiException as error:
        if status_of(error) != 404:
            raise
        resources.create(_configuration_path(), body, CONFIGURATION_MODEL)
        logger.info("created MutatingWebhookConfiguration %s", name)
        return
    version = existing.metadata.resource_version if existing.metadata else None
    body = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
    resources.replace(_configuration_path(name), body, CONFIGURATION_MODEL)
    logger.info("updated MutatingWebhookConfiguration %s", name)


def sync_ca_bundle(api: client.ApiClient, name: str, ca_bundle: bytes) -> bool:
    """Set caBundle on every webhook of configuration `name`; True when something changed.

    A missing configuration is not an error: the chart may not have created it yet.
    """
    resources = Resources(api)
    encoded = base64.b64encode(ca_bundle).decode("ascii")
    try:
        existing = resources.get(_configuration_path(name), CONFIGURATION_MODEL)
    except client.ApiException as error:
        if status_of(error) == 404:
            return False
        raise
    patch = [
        {
            "op": "replace" if hook.client_config.ca_bundle else "add",
            "path": f"/webhooks/{index}/clientConfig/caBundle",
            "value": encoded,
        }
        for index, hook in enumerate(existing.webhooks or [])
        if hook.client_config.ca_bundle != encoded
    ]
    if not patch:
        return False
    resources.patch(_configuration_path(name), patch, CONFIGURATION_MODEL, JSON_PATCH)
    logger.info("updated caBundle of MutatingWebhookConfiguration %s", name)
    return True


def _configuration_path(name: str | None = None) -> str:
    return group_path("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", name=name)

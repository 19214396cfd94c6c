"""Helpers shared by the admission end-to-end tests (test_admission_*.py).

Reading back what the apiserver stored (images, env values, pull secrets, annotations), polling a
dry-run create until a configuration change is visible, reading the webhook's /metrics, and
starting extra `chaos-registry serve` processes whose MutatingWebhookConfiguration is always
deleted afterwards (a stopped process behind failurePolicy Fail would block every chaos pod).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from tests.e2e.service.conftest import REPO, WEBHOOK_NAMESPACE, Cluster, images, wait_for

ORIGINAL_IMAGES = "chaosregistry.io/original-images"
SCOPE = "chaosregistry.io/scope"
REQUESTS_METRIC = "chaos_registry_admission_requests"
TLS_SECRET = "chaos-registry-webhook-tls"
PATH = "/mutate-pods"


def load_pod(path: str) -> dict[str, Any]:
    """A pod of examples/pods as a dict (a fresh copy each time)."""
    pod: dict[str, Any] = yaml.safe_load((REPO / path).read_text())
    return pod


def pod_annotations(pod: dict[str, Any]) -> dict[str, str]:
    return dict(pod["metadata"].get("annotations") or {})


def original_images(pod: dict[str, Any]) -> dict[str, str]:
    raw = pod_annotations(pod).get(ORIGINAL_IMAGES)
    result: dict[str, str] = json.loads(raw) if raw else {}
    return result


def scope_annotation(pod: dict[str, Any]) -> dict[str, Any] | None:
    raw = pod_annotations(pod).get(SCOPE)
    return json.loads(raw) if raw else None


def env_values(pod: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Container name -> {env name: value} (only variables with a literal value)."""
    spec = pod["spec"]
    return {
        c["name"]: {v["name"]: v["value"] for v in c.get("env") or [] if "value" in v}
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    }


def pull_secrets(pod: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in pod["spec"].get("imagePullSecrets") or []]


def resubmittable(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """A stored pod as a client would post it again: same spec and labels/annotations, new name."""
    body = copy.deepcopy(pod)
    metadata = body["metadata"]
    body["metadata"] = {
        "name": name,
        "labels": metadata.get("labels") or {},
        "annotations": metadata.get("annotations") or {},
    }
    body.pop("status", None)
    body["spec"].pop("nodeName", None)
    return body


def unique_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` with a fresh name, so one example can be created several times in a namespace."""
    body = copy.deepcopy(pod)
    body["metadata"].pop("generateName", None)
    body["metadata"]["name"] = f"{body['metadata'].get('name', 'pod')[:40]}-{secrets.token_hex(3)}"
    return body


def wait_admitted(
    cluster: Cluster,
    namespace: str,
    pod: dict[str, Any] | str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Dry-run create `pod` until the stored object satisfies `check` (the watches caught up)."""

    def attempt() -> dict[str, Any] | None:
        try:
            stored = cluster.create_pod(namespace, pod, dry_run=True)
        except kubernetes.client.ApiException:
            return None
        return stored if check(stored) else None

    return wait_for(attempt, timeout=timeout, interval=0.05, what=what)


def image_of(container: str, prefix: str) -> Callable[[dict[str, Any]], bool]:
    """A check for `wait_admitted`: container `container`'s image starts with `prefix`."""
    return lambda stored: images(stored).get(container, "").startswith(prefix)


def measure_propagation(
    cluster: Cluster,
    namespace: str,
    pod: dict[str, Any],
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> float:
    """Seconds from now (call it right after the API call returned) to the first dry-run admitted
    pod that passes `check`: the end of the first successful dry-run request."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        stored = cluster.create_pod(namespace, pod, dry_run=True)
        if check(stored):
            return time.monotonic() - started
    raise AssertionError(f"configuration change not visible after {timeout}s")


def metric_samples(process: WebhookProcess, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of metric family `name` from the process's /metrics: sorted label items -> value."""
    status, text = process.get("/metrics")
    assert status == 200, text
    result: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            result[tuple(sorted(sample.labels.items()))] = sample.value
    return result


def admission_requests(process: WebhookProcess) -> dict[str, float]:
    """Outcome -> count of chaos_registry_admission_requests_total."""
    return {
        dict(labels)["outcome"]: value for labels, value in metric_samples(process, REQUESTS_METRIC).items()
    }


def total_requests(process: WebhookProcess) -> float:
    return sum(admission_requests(process).values())


def webhook_tls_context(control_plane: ControlPlane) -> ssl.SSLContext:
    """Client TLS that verifies the webhook against the CA in its Secret (key ca.crt)."""
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        secret = kubernetes.client.CoreV1Api(api).read_namespaced_secret(TLS_SECRET, WEBHOOK_NAMESPACE)
    finally:
        api.close()
    ca = base64.b64decode(secret.data["ca.crt"]).decode()
    return ssl.create_default_context(cadata=ca)


def post_review(
    process: WebhookProcess, tls: ssl.SSLContext, body: bytes, path: str = PATH
) -> tuple[int, Any]:
    """POST `body` to the process's HTTPS admission port: HTTP status and decoded JSON answer."""
    connection = http.client.HTTPSConnection("127.0.0.1", process.port, context=tls, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def review(namespace: str, pod: dict[str, Any], uid: str | None = None, **request: Any) -> dict[str, Any]:
    """An AdmissionReview as the apiserver sends it for a pod CREATE."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or f"uid-{secrets.token_hex(8)}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:admin", "groups": ["system:masters"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            **request,
        },
    }


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    result = json.loads(json.dumps(document))
    del result["request"][key]
    return result


WELL_FORMED = review("somewhere", load_pod("examples/pods/litmus-runner.yaml"), uid="u-1")
MALFORMED: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{this is not json", "request body is not JSON"),
    "not an object": (b"[1, 2]", "request body is not a JSON object"),
    "wrong kind": (orjson.dumps({**WELL_FORMED, "kind": "Pod"}), "kind must be AdmissionReview, got 'Pod'"),
    "wrong apiVersion": (
        orjson.dumps({**WELL_FORMED, "apiVersion": "admission.k8s.io/v1beta1"}),
        "apiVersion must be admission.k8s.io/v1",
    ),
    "no request": (
        orjson.dumps({k: v for k, v in WELL_FORMED.items() if k != "request"}),
        "request is missing",
    ),
    "missing uid": (orjson.dumps(_without(WELL_FORMED, "uid")), "request.uid is missing"),
    "missing object": (
        orjson.dumps(_without(WELL_FORMED, "object")),
        "request u-1: request.object is missing",
    ),
    "missing operation": (orjson.dumps(_without(WELL_FORMED, "operation")), "request.operation is missing"),
}


def delete_webhook_configuration(api: kubernetes.client.ApiClient, name: str) -> None:
    with contextlib.suppress(kubernetes.client.ApiException):
        kubernetes.client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(name)


@contextlib.contextmanager
def extra_webhook(
    control_plane: ControlPlane,
    log_dir: Path,
    *,
    failure_policy: str = "Ignore",
    extra_args: Sequence[str] = (),
    prefix: str = "chaos-registry-extra",
) -> Iterator[WebhookProcess]:
    """Another `serve` process with its own MutatingWebhookConfiguration and no write side.

    The configuration is deleted on exit whatever happened, so a stopped process never blocks the
    pods of later tests.
    """
    name = f"{prefix}-{secrets.token_hex(3)}"
    process = WebhookProcess(
        control_plane.kubeconfig,
        log_dir / f"{name}.log",
        config_name=name,
        failure_policy=failure_policy,
        extra_args=["--no-writer", "--log-level", "debug", *extra_args],
    )
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        process.start(timeout=40)
        yield process
    finally:
        process.stop()
        delete_webhook_configuration(api, name)
        api.close()

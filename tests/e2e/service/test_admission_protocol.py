"""The webhook's HTTP surface, spoken to directly (no apiserver in between).

HTTPS to the admission port, verified with the CA of the self-managed Secret
(chaos-system/chaos-registry-webhook-tls, key ca.crt): malformed AdmissionReviews get HTTP 400 with
a message (and the server keeps serving), a well-formed review of a chaos pod gets a base64 JSON
Patch, a review the webhook cannot answer is refused per failurePolicy Fail. Plain HTTP:
/healthz, /readyz and the Prometheus metric families of docs/contract.md#the-service.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from tests.e2e.service.admission_support import (
    MALFORMED,
    REQUESTS_METRIC,
    WELL_FORMED,
    admission_requests,
    image_of,
    load_pod,
    metric_samples,
    post_review,
    review,
    scope_annotation,
    wait_admitted,
    webhook_tls_context,
)
from tests.e2e.service.conftest import Cluster, images, wait_for
from webhook.core.jsonpatch import apply_patch

RUNNER = "examples/pods/litmus-runner.yaml"


@pytest.fixture(scope="module")
def tls(control_plane: ControlPlane, webhook: WebhookProcess) -> ssl.SSLContext:
    """Verifies the webhook's certificate (SAN 127.0.0.1) against the CA the webhook published."""
    return webhook_tls_context(control_plane)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_review_gets_400_with_a_message(
    webhook: WebhookProcess, tls: ssl.SSLContext, case: str
) -> None:
    body, message = MALFORMED[case]
    before = admission_requests(webhook).get("bad_request", 0.0)

    status, answer = post_review(webhook, tls, body)

    assert status == 400
    assert message in answer["error"]
    assert admission_requests(webhook).get("bad_request", 0.0) == before + 1
    assert webhook.get("/healthz")[0] == 200  # still serving


def test_chaos_pod_review_gets_a_base64_json_patch(
    cluster: Cluster, webhook: WebhookProcess, tls: ssl.SSLContext
) -> None:
    cluster.registry(
        "root",
        {
            "registry": {
                "server": "registry.acme.corp",
                "account": "chaos",
                "type": "Private",
                "secretName": "acme-pull",
            }
        },
    )
    namespace = cluster.namespace("retail")
    wait_admitted(
        cluster, namespace, RUNNER, image_of("chaos-runner", "registry.acme.corp/"), what="the registry"
    )
    pod = load_pod(RUNNER)
    uid = f"uid-{secrets.token_hex(8)}"

    status, answer = post_review(webhook, tls, orjson.dumps(review(namespace, pod, uid=uid)))

    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == uid and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": "registry.acme.corp/chaos/chaos-runner:3.11.0",
    } in patch
    patched = apply_patch(pod, patch)
    assert images(patched) == {"chaos-runner": "registry.acme.corp/chaos/chaos-runner:3.11.0"}
    assert patched["spec"]["imagePullSecrets"] == [{"name": "acme-pull"}]
    assert scope_annotation(patched) == {
        "scope": f"{cluster.account}/retail",
        "registries": [f"{cluster.account}-root"],
    }

    # The patched pod sent again (reinvocation) is answered without a patch.
    status, answer = post_review(webhook, tls, orjson.dumps(review(namespace, patched)))
    assert status == 200 and answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]

    # Opted out by its own label, or not a chaos pod: allowed, no patch (even when sent directly).
    opted_out = load_pod(RUNNER)
    opted_out["metadata"]["labels"]["chaosregistry.io/inject"] = "false"
    for other in (opted_out, load_pod("examples/pods/not-chaos.yaml")):
        status, answer = post_review(webhook, tls, orjson.dumps(review(namespace, other)))
        assert status == 200 and answer["response"]["allowed"] is True and "patch" not in answer["response"]

    # An UPDATE of the pod itself is not the webhook's business: allowed untouched.
    status, answer = post_review(
        webhook, tls, orjson.dumps(review(namespace, pod, operation="UPDATE", oldObject=pod))
    )
    assert status == 200 and answer["response"]["allowed"] is True and "patch" not in answer["response"]


def test_review_for_an_unknown_namespace_is_refused_per_failure_policy(
    webhook: WebhookProcess, tls: ssl.SSLContext
) -> None:
    """The selector matched, yet the namespace never reached the cache: failurePolicy Fail refuses,
    with a message naming the namespace, after waiting a moment for the watch."""
    uid = f"uid-{secrets.token_hex(8)}"
    namespace = f"nowhere-{secrets.token_hex(3)}"
    started = time.monotonic()

    status, answer = post_review(webhook, tls, orjson.dumps(review(namespace, load_pod(RUNNER), uid=uid)))

    assert status == 200
    response = answer["response"]
    assert response["uid"] == uid and response["allowed"] is False
    assert response["status"]["code"] == 500
    assert (
        namespace in response["status"]["message"]
        and "chaos-registry-webhook" in response["status"]["message"]
    )
    assert time.monotonic() - started < 4.0  # well within the apiserver's 5 s timeout


def test_unknown_path_is_not_served_as_a_mutation(webhook: WebhookProcess, tls: ssl.SSLContext) -> None:
    """kopf answers paths of no handler with an allowed review and no patch: never a mutation."""
    status, answer = post_review(webhook, tls, orjson.dumps(WELL_FORMED), path="/something-else")
    assert status == 200
    assert answer["response"] == {"uid": "u-1", "allowed": True}
    status, answer = post_review(webhook, tls, b"junk", path="/something-else")
    assert status == 400 and answer["error"]


def test_health_endpoints(webhook: WebhookProcess) -> None:
    assert webhook.get("/healthz") == (200, "ok\n")
    assert webhook.get("/readyz") == (200, "ready\n")


def test_metrics_families(cluster: Cluster, webhook: WebhookProcess, tls: ssl.SSLContext) -> None:
    # The organization resource first, then the account that locks it: once the account applies,
    # the organization resource (earlier in the same watch stream) has been seen too.
    cluster.registry("org", {"registry": {"server": "org.acme.corp"}}, scope=("retail",))
    cluster.registry("root", {"registry": {"server": "registry.acme.corp"}, "allowOverrides": False})
    namespace = cluster.namespace("retail")
    wait_admitted(
        cluster, namespace, RUNNER, image_of("chaos-runner", "registry.acme.corp/"), what="the lock"
    )
    cluster.create_pod(namespace, RUNNER)  # mutated
    cluster.create_pod(namespace, "examples/pods/not-chaos.yaml")  # skipped
    assert post_review(webhook, tls, b"not a review")[0] == 400  # bad_request

    status, text = webhook.get("/metrics")
    assert status == 200
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families[REQUESTS_METRIC] == "counter"
    assert families["chaos_registry_admission_duration_seconds"] == "histogram"
    assert families["chaos_registry_image_rewrites"] == "counter"
    assert families["chaos_registry_config_objects"] == "gauge"
    assert families["chaos_registry_blocked_resources"] == "gauge"

    requests = admission_requests(webhook)
    assert requests["mutated"] >= 1 and requests["skipped"] >= 1 and requests["bad_request"] >= 1
    buckets = metric_samples(webhook, "chaos_registry_admission_duration_seconds")
    count = next(value for labels, value in buckets.items() if dict(labels).get("le") == "+Inf")
    assert count >= sum(requests.values()) - requests.get("bad_request", 0)
    rewrites = metric_samples(webhook, "chaos_registry_image_rewrites")
    assert rewrites[(("component", "chaosRunner"),)] >= 1
    objects = metric_samples(webhook, "chaos_registry_config_objects")
    assert objects[(("kind", "ChaosImageRegistry"),)] >= 2
    assert objects[(("kind", "Namespace"),)] >= 1

    # The blocked gauge counts the organization resource, and drops when it is deleted.
    blocked = metric_samples(webhook, "chaos_registry_blocked_resources")[()]
    assert blocked >= 1
    cluster.delete_registry("org")
    wait_for(
        lambda: metric_samples(webhook, "chaos_registry_blocked_resources")[()] == blocked - 1,
        timeout=15,
        what="the blocked-resources gauge to drop with the blocked resource",
    )

"""More than one `serve` process behind the same apiserver, and the kopf admission engine.

Two replicas serve at once: each registered configuration makes the apiserver call its process, and
the counters of both move for every pod; the second one to see a pod finds nothing left to change.
The `--engine kopf` process (kopf's own admission machinery and admission/kopf_engine.py's kopf.on.mutate
handler) stores exactly what the default direct engine stores.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import kubernetes
import orjson
import yaml

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from tests.e2e.service.admission_support import (
    MALFORMED,
    admission_requests,
    env_values,
    extra_webhook,
    image_of,
    load_pod,
    pod_annotations,
    post_review,
    pull_secrets,
    review,
    total_requests,
    unique_pod,
    wait_admitted,
    webhook_tls_context,
)
from tests.e2e.service.conftest import WEBHOOK_NAMESPACE, Cluster, images, wait_for

RUNNER = "examples/pods/litmus-runner.yaml"
SERVER = "registry.acme.corp"
PRIVATE = {"server": SERVER, "account": "chaos", "type": "Private", "secretName": "acme-pull"}
KINDS = (
    "hce-ddcr-runner",
    "hce-fault",
    "hce-helper",
    "litmus-experiment",
    "litmus-helper",
    "argo-step",
    "not-chaos",
)


def _called(cluster: Cluster, namespace: str, process: WebhookProcess) -> None:
    """Dry-run until the apiserver has loaded `process`'s configuration and calls it."""

    def called() -> bool:
        cluster.create_pod(namespace, RUNNER, dry_run=True)
        return total_requests(process) > 0

    wait_for(called, timeout=20, what=f"the apiserver to call {process.config_name}")


def test_two_replicas_serve_at_once(
    cluster: Cluster, webhook: WebhookProcess, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace("retail")
    wait_admitted(cluster, namespace, RUNNER, image_of("chaos-runner", SERVER), what="the registry")

    with extra_webhook(control_plane, tmp_path, prefix="chaos-registry-replica") as replica:
        _called(cluster, namespace, replica)
        first = admission_requests(webhook)
        second = admission_requests(replica)

        stored = [
            cluster.create_pod(namespace, unique_pod(load_pod(f"examples/pods/{kind}.yaml")))
            for kind in KINDS
        ]

        first_delta = {k: v - first.get(k, 0.0) for k, v in admission_requests(webhook).items()}
        second_delta = {k: v - second.get(k, 0.0) for k, v in admission_requests(replica).items()}
    chaos_pods = len(KINDS) - 1
    # Both processes answered every pod.
    assert sum(first_delta.values()) >= len(KINDS) and sum(second_delta.values()) >= len(KINDS)
    assert first_delta.get("skipped", 0) >= 1 and second_delta.get("skipped", 0) >= 1  # not-chaos
    # Exactly one of them patched each chaos pod; the other found it done (no double rewrite).
    assert first_delta.get("mutated", 0) + second_delta.get("mutated", 0) == chaos_pods
    assert first_delta.get("unchanged", 0) + second_delta.get("unchanged", 0) >= chaos_pods
    for pod in stored[:-1]:
        assert all(image.startswith(f"{SERVER}/chaos/") for image in images(pod).values()), images(pod)
        assert pull_secrets(pod).count("acme-pull") == 1
    assert images(stored[-1]) == {"nginx": "nginx:1.27"}


def test_kopf_engine_mutates_like_the_direct_engine(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The kopf-engine process selects every namespace and maps unlabelled ones to this test's
    account (its own defaults ConfigMap), so a namespace without labels is admitted by it alone."""
    cluster.registry("root", {"registry": PRIVATE})
    labelled = cluster.namespace()
    wait_admitted(cluster, labelled, RUNNER, image_of("chaos-runner", SERVER), what="the registry")
    # What the direct engine stores, before the kopf-engine process exists.
    direct = {kind: cluster.create_pod(labelled, f"examples/pods/{kind}.yaml") for kind in KINDS}

    defaults_name = f"kopf-defaults-{secrets.token_hex(3)}"
    unlabelled = f"{cluster.account}-kopf-{secrets.token_hex(3)}"
    core = cluster.core
    core.create_namespaced_config_map(
        WEBHOOK_NAMESPACE,
        {
            "metadata": {"name": defaults_name},
            "data": {"config.yaml": yaml.safe_dump({"defaultAccount": cluster.account})},
        },
    )
    core.create_namespace({"metadata": {"name": unlabelled}})
    engine_args = ["--engine", "kopf", "--select-all-namespaces", "--defaults-configmap", defaults_name]
    try:
        with extra_webhook(
            control_plane, tmp_path, extra_args=engine_args, prefix="chaos-registry-kopf"
        ) as kopf:
            wait_admitted(
                cluster,
                unlabelled,
                RUNNER,
                image_of("chaos-runner", SERVER),
                what="the kopf engine to mutate",
            )
            before = admission_requests(kopf)
            via_kopf = {kind: cluster.create_pod(unlabelled, f"examples/pods/{kind}.yaml") for kind in KINDS}
            after = admission_requests(kopf)
            # The kopf engine answered them all (and counts its outcomes like the direct engine).
            assert after.get("mutated", 0) - before.get("mutated", 0) == len(KINDS) - 1
            assert after.get("skipped", 0) - before.get("skipped", 0) == 1
            for kind in KINDS:
                assert _admitted_view(via_kopf[kind]) == _admitted_view(direct[kind]), kind
            assert images(via_kopf["hce-fault"])["fault"] == f"{SERVER}/chaos/chaos-ddcr-faults:1.47.0"
            assert pod_annotations(via_kopf["not-chaos"]) == {}

            # Malformed reviews get the same 400s as from the direct engine (kopf alone would admit a
            # wrong kind or a missing uid, and crash with HTTP 500 on a review without resource).
            tls = webhook_tls_context(control_plane)
            no_resource = review(unlabelled, load_pod(RUNNER), uid="u-2")
            del no_resource["request"]["resource"]
            cases = {**MALFORMED, "no resource": (orjson.dumps(no_resource), "request u-2: malformed")}
            for case, (body, message) in cases.items():
                status, answer = post_review(kopf, tls, body)
                assert status == 400, (case, answer)
                assert message in answer["error"], (case, answer)

            # pods/ephemeralcontainers through the kopf engine: only the new container changes.
            name = via_kopf["litmus-helper"]["metadata"]["name"]
            debug = {"name": "debug", "image": "litmuschaos/go-runner:latest", "command": ["sleep", "60"]}
            core.patch_namespaced_pod_ephemeralcontainers(
                name, unlabelled, {"spec": {"ephemeralContainers": [debug]}}
            )
            updated = cluster.api.sanitize_for_serialization(core.read_namespaced_pod(name, unlabelled))
            assert images(updated) == {
                **images(via_kopf["litmus-helper"]),
                "debug": f"{SERVER}/chaos/go-runner:latest",
            }
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespace(unlabelled)
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespaced_config_map(defaults_name, WEBHOOK_NAMESPACE)


def _admitted_view(pod: dict[str, Any]) -> dict[str, Any]:
    """What the webhook decides about a pod: images, image env values, pull secrets, annotations."""
    return {
        "images": images(pod),
        "env": env_values(pod),
        "pullSecrets": pull_secrets(pod),
        "annotations": pod_annotations(pod),
    }

"""Chaos pods created through the real apiserver, as HCE and LitmusChaos create them.

Every assertion reads what the apiserver stored (or would store, for dry-run): images, image env
values, imagePullSecrets and the webhook's annotations. Also: which pods are never touched (ordinary
pods, opted-out namespaces and pods, kube-system and the webhook's own namespace), pod labels that
try to claim another scope, ephemeral containers, dry-run, and re-submitting a mutated pod.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import kubernetes
import pytest

from controlplane.webhook import WebhookProcess
from tests.e2e.service.admission_support import (
    SCOPE,
    admission_requests,
    env_values,
    image_of,
    load_pod,
    original_images,
    pod_annotations,
    pull_secrets,
    resubmittable,
    scope_annotation,
    total_requests,
    unique_pod,
    wait_admitted,
)
from tests.e2e.service.conftest import Cluster, images

SERVER = "registry.acme.corp:5000/mirror"
TARGET = f"{SERVER}/chaos"  # server + registry account
PRIVATE = {"server": SERVER, "account": "chaos", "type": "Private", "secretName": "acme-pull"}
SCARF_GO_RUNNER = "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:3.11.0"
DIGEST = "sha256:4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"

# pod file -> (namespace scope below the account, images, env image values, pull secrets,
#              original-images annotation)
EXPECTED: dict[
    str, tuple[tuple[str, ...], dict[str, str], dict[str, dict[str, str]], list[str], dict[str, str]]
] = {
    "hce-ddcr-runner": (
        (),
        {"scheduler": f"{TARGET}/chaos-ddcr:1.47.0"},
        {
            "scheduler": {
                "LOG_WATCHER_IMAGE": f"{TARGET}/chaos-log-watcher:1.47.0",
                "LIB_IMAGE": f"{TARGET}/chaos-ddcr-faults:1.47.0",
            }
        },
        ["acme-pull"],
        {
            "scheduler": "docker.io/harness/chaos-ddcr:1.47.0",
            "scheduler/env/LOG_WATCHER_IMAGE": "docker.io/harness/chaos-log-watcher:1.47.0",
            "scheduler/env/LIB_IMAGE": "docker.io/harness/chaos-ddcr-faults:1.47.0",
        },
    ),
    "hce-fault": (
        ("retail",),
        {
            "log-watcher": f"{TARGET}/chaos-log-watcher:1.47.0",
            "fault": f"{TARGET}/chaos-ddcr-faults:1.47.0",
        },
        {"log-watcher": {}, "fault": {"LIB_IMAGE": f"{TARGET}/chaos-ddcr-faults:1.47.0"}},
        ["acme-pull"],
        {
            "log-watcher": "harness/chaos-log-watcher:1.47.0",
            "fault": "docker.io/harness/chaos-ddcr-faults:1.47.0",
            "fault/env/LIB_IMAGE": "docker.io/harness/chaos-ddcr-faults:1.47.0",
        },
    ),
    "hce-helper": (
        ("retail", "payments"),
        {"helper": f"{TARGET}/chaos-ddcr-faults:1.47.0@{DIGEST}"},  # tag and digest both kept
        {"helper": {}},
        ["acme-pull"],
        {"helper": f"docker.io/harness/chaos-ddcr-faults:1.47.0@{DIGEST}"},
    ),
    "litmus-runner": (
        ("retail", "payments", "prod"),
        {"chaos-runner": f"{TARGET}/chaos-runner:3.11.0"},
        {"chaos-runner": {}},
        ["acme-pull"],
        {"chaos-runner": "litmuschaos/chaos-runner:3.11.0"},
    ),
    "litmus-experiment": (
        ("retail", "payments", "prod"),
        {"pod-network-loss-x7k2pd": f"{TARGET}/go-runner:3.11.0"},
        {
            "pod-network-loss-x7k2pd": {
                "LIB_IMAGE": f"{TARGET}/go-runner:3.11.0",
                "TC_IMAGE": f"{TARGET}/iproute2",
                "TOTAL_CHAOS_DURATION": "60",  # not an image variable: untouched
            }
        },
        ["acme-pull"],
        {
            "pod-network-loss-x7k2pd": SCARF_GO_RUNNER,
            "pod-network-loss-x7k2pd/env/LIB_IMAGE": SCARF_GO_RUNNER,
            "pod-network-loss-x7k2pd/env/TC_IMAGE": "gaiadocker/iproute2",
        },
    ),
    "litmus-helper": (
        ("retail", "payments", "prod"),
        {"pod-network-loss-helper-hq8vz": f"{TARGET}/go-runner:latest"},
        {"pod-network-loss-helper-hq8vz": {}},
        ["existing-secret", "acme-pull"],  # the pod's own secret kept, ours appended
        {"pod-network-loss-helper-hq8vz": "litmuschaos/go-runner:latest"},
    ),
    "litmus-probe": (
        ("retail",),
        {"pod-delete-probe-9xk2m": f"{TARGET}/litmus-checker:3.11.0"},
        {"pod-delete-probe-9xk2m": {}},
        ["acme-pull"],
        {"pod-delete-probe-9xk2m": "litmuschaos/litmus-checker:3.11.0"},
    ),
    "argo-step": (
        ("retail", "payments"),
        {
            "init": f"{TARGET}/argoexec:v3.4.16",
            "wait": f"{TARGET}/argoexec:v3.4.16",
            "main": f"{TARGET}/k8s:3.11.0",
        },
        {"init": {}, "wait": {}, "main": {}},
        ["acme-pull"],
        {
            "init": "quay.io/argoproj/argoexec:v3.4.16",
            "wait": "quay.io/argoproj/argoexec:v3.4.16",
            "main": "litmuschaos/k8s:3.11.0",
        },
    ),
}


def _registered(cluster: Cluster, namespace: str) -> None:
    """Wait until the webhook applies the account's registry to pods of `namespace`."""
    wait_admitted(
        cluster,
        namespace,
        "examples/pods/litmus-runner.yaml",
        image_of("chaos-runner", TARGET),
        what="the account registry to reach the webhook",
    )


def _read(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    stored = cluster.core.read_namespaced_pod(name, namespace)
    result: dict[str, Any] = cluster.api.sanitize_for_serialization(stored)
    return result


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_chaos_pod_kind_is_rewritten_as_stored(cluster: Cluster, kind: str) -> None:
    scope, want_images, want_env, want_secrets, want_originals = EXPECTED[kind]
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace(*scope)
    _registered(cluster, namespace)

    created = cluster.create_pod(namespace, f"examples/pods/{kind}.yaml")
    stored = _read(cluster, namespace, created["metadata"]["name"])

    assert images(stored) == want_images
    assert env_values(stored) == want_env
    assert pull_secrets(stored) == want_secrets
    assert original_images(stored) == want_originals
    assert scope_annotation(stored) == {
        "scope": "/".join((cluster.account, *scope)),
        "registries": [f"{cluster.account}-root"],
    }
    # Nothing else about the pod changed: labels and commands are the client's.
    source = load_pod(f"examples/pods/{kind}.yaml")
    assert (stored["metadata"].get("labels") or {}) == (source["metadata"].get("labels") or {})
    for key in ("initContainers", "containers"):
        for before, after in zip(source["spec"].get(key) or [], stored["spec"].get(key) or [], strict=True):
            assert after.get("command") == before.get("command")
            assert after.get("args") == before.get("args")


def test_ordinary_pod_reaches_the_webhook_and_is_stored_untouched(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace()
    _registered(cluster, namespace)
    before = admission_requests(webhook).get("skipped", 0.0)

    stored = cluster.create_pod(namespace, "examples/pods/not-chaos.yaml")

    assert images(stored) == {"nginx": "nginx:1.27"}
    assert pod_annotations(stored) == {}
    assert pull_secrets(stored) == []
    # It was sent and answered without a patch (not merely missed by the selector).
    assert admission_requests(webhook).get("skipped", 0.0) == before + 1


def test_opted_out_namespace_and_pod_are_never_sent(cluster: Cluster, webhook: WebhookProcess) -> None:
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace()
    opted_out_namespace = cluster.namespace(labels={"chaosregistry.io/inject": "false"})
    _registered(cluster, namespace)

    opted_out_pod = load_pod("examples/pods/litmus-runner.yaml")
    opted_out_pod["metadata"]["labels"]["chaosregistry.io/inject"] = "false"
    before = total_requests(webhook)

    in_namespace = cluster.create_pod(opted_out_namespace, "examples/pods/litmus-runner.yaml")
    labelled = cluster.create_pod(namespace, opted_out_pod)

    for stored in (in_namespace, labelled):
        assert images(stored) == {"chaos-runner": "litmuschaos/chaos-runner:3.11.0"}
        assert pod_annotations(stored) == {}
        assert pull_secrets(stored) == []
    assert total_requests(webhook) == before, "an opted-out pod was sent to the webhook"


@pytest.mark.parametrize("system_namespace", ["kube-system", "chaos-system"])
def test_system_namespaces_are_never_sent_even_when_labelled(
    cluster: Cluster, webhook: WebhookProcess, system_namespace: str
) -> None:
    """kube-system and the webhook's own namespace are excluded by the selector itself: labelled with
    the test's account (whose registry exists), their chaos pods are still never sent."""
    cluster.registry("root", {"registry": PRIVATE})
    control = cluster.namespace()
    label = {"metadata": {"labels": {"chaosregistry.io/account": cluster.account}}}
    pod = unique_pod(load_pod("examples/pods/litmus-runner.yaml"))
    cluster.core.patch_namespace(system_namespace, label)
    try:
        # The apiserver evaluates selectors on its namespace informer: label first, and let the
        # wait for the registry give the informer time to see the label.
        _registered(cluster, control)
        assert (
            cluster.core.read_namespace(system_namespace).metadata.labels["chaosregistry.io/account"]
            == cluster.account
        )
        before = total_requests(webhook)
        stored = cluster.create_pod(system_namespace, pod)
        after = total_requests(webhook)
        assert images(stored) == {"chaos-runner": "litmuschaos/chaos-runner:3.11.0"}
        assert pod_annotations(stored) == {}
        assert pull_secrets(stored) == []
        assert after == before, f"a pod in {system_namespace} was sent to the webhook"
        # Positive control: the same pod in an ordinary namespace of the account is sent and rewritten.
        rewritten = cluster.create_pod(control, pod)
        assert images(rewritten) == {"chaos-runner": f"{TARGET}/chaos-runner:3.11.0"}
        assert total_requests(webhook) == after + 1
    finally:
        cluster.core.patch_namespace(
            system_namespace, {"metadata": {"labels": {"chaosregistry.io/account": None}}}
        )
        with contextlib.suppress(kubernetes.client.ApiException):
            cluster.core.delete_namespaced_pod(
                pod["metadata"]["name"], system_namespace, grace_period_seconds=0
            )


def test_pod_labels_never_change_the_scope(cluster: Cluster) -> None:
    p1 = {"server": "p1.acme.corp", "account": "team1", "type": "Private", "secretName": "p1-pull"}
    p2 = {"server": "p2.acme.corp", "account": "team2", "type": "Private", "secretName": "p2-pull"}
    cluster.registry("p1", {"registry": p1}, scope=("retail", "p1"))
    cluster.registry("p2", {"registry": p2}, scope=("retail", "p2"))
    ns_p1 = cluster.namespace("retail", "p1")
    ns_p2 = cluster.namespace("retail", "p2")
    runner = "examples/pods/litmus-runner.yaml"
    # Both registries are live in the webhook: p2's would be applied to a pod that could claim it.
    wait_admitted(cluster, ns_p2, runner, image_of("chaos-runner", "p2.acme.corp/"), what="p2's registry")
    wait_admitted(cluster, ns_p1, runner, image_of("chaos-runner", "p1.acme.corp/"), what="p1's registry")

    claiming = load_pod(runner)
    claiming["metadata"]["labels"].update(
        {
            "chaosregistry.io/account": cluster.account,
            "chaosregistry.io/organization": "retail",
            "chaosregistry.io/project": "p2",
        }
    )
    stored = cluster.create_pod(ns_p1, claiming)

    assert images(stored) == {"chaos-runner": "p1.acme.corp/team1/chaos-runner:3.11.0"}
    assert pull_secrets(stored) == ["p1-pull"]
    assert scope_annotation(stored) == {
        "scope": f"{cluster.account}/retail/p1",
        "registries": [f"{cluster.account}-p1"],
    }


def test_ephemeral_container_is_rewritten_and_existing_containers_are_not(cluster: Cluster) -> None:
    # The pod is created before any registry covers its scope, so it is stored with its original
    # images: a webhook that (wrongly) rewrote existing containers on the UPDATE would show.
    namespace = cluster.namespace()
    created = cluster.create_pod(namespace, "examples/pods/litmus-experiment.yaml")
    name = created["metadata"]["name"]
    original = images(created)
    assert original == {"pod-network-loss-x7k2pd": "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:3.11.0"}
    cluster.registry("root", {"registry": PRIVATE})
    _registered(cluster, namespace)

    debug = {"name": "debug", "image": "litmuschaos/go-runner:latest", "command": ["sleep", "60"]}
    cluster.core.patch_namespaced_pod_ephemeralcontainers(
        name, namespace, {"spec": {"ephemeralContainers": [debug]}}
    )
    stored = _read(cluster, namespace, name)
    assert images(stored) == {**original, "debug": f"{TARGET}/go-runner:latest"}
    assert env_values(stored) == {**env_values(created), "debug": {}}
    assert pod_annotations(stored) == pod_annotations(created)
    assert pull_secrets(stored) == pull_secrets(created) == []

    # replace_namespaced_pod_ephemeralcontainers with the whole pod: only the new one is rewritten.
    stored["spec"]["ephemeralContainers"].append(
        {"name": "debug2", "image": "harness/chaos-log-watcher:1.47.0", "command": ["sleep", "60"]}
    )
    cluster.core.replace_namespaced_pod_ephemeralcontainers(name, namespace, stored)
    replaced = _read(cluster, namespace, name)
    assert images(replaced) == {
        **original,
        "debug": f"{TARGET}/go-runner:latest",
        "debug2": f"{TARGET}/chaos-log-watcher:1.47.0",
    }


def test_server_side_dry_run_is_mutated_and_nothing_is_stored(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace()
    _registered(cluster, namespace)
    pod = unique_pod(load_pod("examples/pods/hce-fault.yaml"))

    answered = cluster.create_pod(namespace, pod, dry_run=True)

    assert images(answered) == EXPECTED["hce-fault"][1]
    assert pull_secrets(answered) == ["acme-pull"]
    assert SCOPE in pod_annotations(answered)
    with pytest.raises(kubernetes.client.ApiException) as error:
        cluster.core.read_namespaced_pod(pod["metadata"]["name"], namespace)
    assert error.value.status == 404
    assert cluster.core.list_namespaced_pod(namespace).items == []
    # The webhook was told it was a dry run (its debug line per admission says so).
    log = webhook.log_file.read_text(errors="replace")
    assert f"pod={pod['metadata']['name']} operation=CREATE chaos=True" in log
    assert any(pod["metadata"]["name"] in line and "dryRun=True" in line for line in log.splitlines())


def test_resubmitting_a_mutated_pod_changes_nothing(cluster: Cluster, webhook: WebhookProcess) -> None:
    cluster.registry("root", {"registry": PRIVATE})
    namespace = cluster.namespace("retail")
    _registered(cluster, namespace)
    for kind in ("litmus-experiment", "hce-ddcr-runner", "litmus-helper"):
        first = cluster.create_pod(namespace, unique_pod(load_pod(f"examples/pods/{kind}.yaml")))
        before = admission_requests(webhook).get("unchanged", 0.0)

        again = cluster.create_pod(
            namespace, resubmittable(first, f"{first['metadata']['name'][:40]}-r{secrets.token_hex(2)}")
        )

        assert images(again) == images(first)
        assert env_values(again) == env_values(first)
        assert pull_secrets(again) == pull_secrets(first)  # no duplicate secret
        assert pod_annotations(again) == pod_annotations(first)  # still the true originals
        assert original_images(again) == EXPECTED[kind][4]
        # The webhook answered without any patch.
        assert admission_requests(webhook).get("unchanged", 0.0) == before + 1

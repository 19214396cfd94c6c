"""Chaos pods on a real node: what the kubelet did with the images the webhook chose.

Before: a chaos pod whose image is on docker.io cannot be pulled here (no internet), exactly like
a cluster whose nodes may only pull from the organisation's registry. After: the webhook rewrites
it to the local registry, copies the pull secret into the namespace, the kubelet pulls with those
credentials (the registry's log names the user) and the pod runs.
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.node import NodeCluster, pod_summary, waiting_reasons
from tests.node.conftest import PULL_SECRET, PULLER, apply, wait_for

PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff"}


def _experiment_pod(name: str, image: str = "litmuschaos/go-runner:3.11.0") -> dict[str, Any]:
    """A LitmusChaos experiment pod, as examples/pods/litmus-experiment.yaml."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"chaosUID": "node-test", "name": "pod-delete"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "experiment",
                    "image": image,
                    "command": ["/bin/bash"],
                    "args": ["-c", "./experiments -name pod-delete"],
                    "env": [{"name": "LIB_IMAGE", "value": image}],
                }
            ],
        },
    }


def _create(cluster: NodeCluster, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    result = cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(manifest))
    created: dict[str, Any] = json.loads(result.stdout)
    return created


def test_without_the_webhook_a_docker_io_chaos_pod_never_pulls(
    node_cluster: NodeCluster, plain_namespace: str
):
    stored = _create(node_cluster, plain_namespace, _experiment_pod("before"))

    assert stored["spec"]["containers"][0]["image"] == "litmuschaos/go-runner:3.11.0"
    pod = node_cluster.wait_for_waiting_reason(plain_namespace, "before", PULL_FAILURES, timeout=90)
    assert pod["status"]["phase"] == "Pending"
    message = pod["status"]["containerStatuses"][0]["state"]["waiting"].get("message", "")
    assert "docker.io/litmuschaos/go-runner:3.11.0" in message, pod_summary(pod)


def test_with_the_webhook_the_pod_is_pulled_with_the_copied_secret_and_runs(
    node_cluster: NodeCluster, chaos_namespace: str
):
    registry = node_cluster.registry
    pulled_before = len(registry.pulls(user=PULLER, image="chaos/go-runner:3.11.0"))

    stored = _create(node_cluster, chaos_namespace, _experiment_pod("after"))

    rewritten = f"{registry.host}/chaos/go-runner:3.11.0"
    container = stored["spec"]["containers"][0]
    assert container["image"] == rewritten
    assert {"name": "LIB_IMAGE", "value": rewritten} in container["env"]
    assert stored["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    # The copy the kubelet reads: same credentials as the source Secret.
    secret = wait_for(
        lambda: (
            node_cluster.kubectl(
                "get", "secret", PULL_SECRET, "-n", chaos_namespace, "-o", "json", check=False
            ).stdout
        ),
        what="the pull secret copied into the namespace",
    )
    assert json.loads(secret)["type"] == "kubernetes.io/dockerconfigjson"

    pod = node_cluster.wait_for_pod_phase(chaos_namespace, "after", {"Succeeded", "Failed"}, timeout=90)

    assert pod["status"]["phase"] == "Succeeded", pod_summary(pod)
    state = pod["status"]["containerStatuses"][0]
    assert state["state"]["terminated"]["exitCode"] == 0
    # Every chaos test image is one busybox image (one digest): containerd names the digest by
    # whichever of its repositories it knows first, so any chaos repository of ours will do here;
    # the registry's log below shows go-runner itself was pulled.
    assert state["imageID"].startswith(f"{registry.host}/chaos/")
    assert "@sha256:" in state["imageID"]
    assert "experiments -name pod-delete: done" in node_cluster.container_log(
        chaos_namespace, "after", "experiment"
    )
    assert len(registry.pulls(user=PULLER, image="chaos/go-runner:3.11.0")) > pulled_before


def test_a_job_of_the_controller_manager_has_its_pods_rewritten_and_completes(
    node_cluster: NodeCluster, chaos_namespace: str
):
    # A Litmus experiment Job: the pod gets generateName and owner references from the Job
    # controller; it has no name when the webhook admits it.
    template = {
        "metadata": {"labels": {"chaosUID": "node-test", "app.kubernetes.io/component": "experiment-job"}},
        "spec": _experiment_pod("unused")["spec"],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pod-delete-x7k2pd", "namespace": chaos_namespace},
        "spec": {"backoffLimit": 0, "template": template},
    }
    apply(node_cluster, job)

    node_cluster.kubectl(
        "wait",
        "--for=condition=Complete",
        "--timeout=90s",
        "job/pod-delete-x7k2pd",
        "-n",
        chaos_namespace,
        timeout=100,
    )

    pods = json.loads(
        node_cluster.kubectl(
            "get", "pods", "-n", chaos_namespace, "-l", "job-name=pod-delete-x7k2pd", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["generateName"] == "pod-delete-x7k2pd-"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", "pod-delete-x7k2pd", True)
    assert pod["spec"]["containers"][0]["image"] == f"{node_cluster.registry.host}/chaos/go-runner:3.11.0"
    assert pod["status"]["phase"] == "Succeeded"
    assert "chaosregistry.io/original-images" in pod["metadata"]["annotations"]


def test_a_rewritten_image_missing_from_the_registry_shows_the_pull_failure_naming_it(
    node_cluster: NodeCluster, chaos_namespace: str
):
    registry = node_cluster.registry
    stored = _create(
        node_cluster, chaos_namespace, _experiment_pod("missing", "litmuschaos/go-runner:9.9.9-missing")
    )
    missing = f"{registry.host}/chaos/go-runner:9.9.9-missing"
    assert stored["spec"]["containers"][0]["image"] == missing

    pod = node_cluster.wait_for_waiting_reason(chaos_namespace, "missing", PULL_FAILURES, timeout=90)

    # The kubelet names the image it could not pull, in the pod's status and its events.
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert missing in waiting.get("message", ""), pod_summary(pod)
    failed = wait_for(
        lambda: [e for e in node_cluster.events(chaos_namespace, "missing") if e["reason"] == "Failed"],
        what="a Failed event",
    )
    assert any(missing in event["message"] for event in failed)
    # The registry's side: a 404 for exactly that manifest, asked with the copied credentials
    # (containerd reports it as a TLS error; the registry log tells the truth).
    not_found = [
        r for r in registry.requests() if r.image == "chaos/go-runner:9.9.9-missing" and r.status == 404
    ]
    assert not_found and {r.user for r in not_found} == {PULLER}
    assert {r.error for r in not_found} == {"manifest unknown"}


def test_image_env_vars_of_a_runner_deployment_reach_its_running_container(
    node_cluster: NodeCluster, chaos_namespace: str
):
    # The HCE chaos runner, as its Deployment creates it (examples/pods/hce-ddcr-runner.yaml):
    # the images it will give its fault and helper pods are in its environment.
    registry = node_cluster.registry.host
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chaos-ddcr", "namespace": chaos_namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"ddcr.app/name": "chaos-ddcr"}},
            "template": {
                "metadata": {
                    "labels": {"ddcr.app/name": "chaos-ddcr", "ddcr.app/namespace": chaos_namespace}
                },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "scheduler",
                            "image": "docker.io/harness/chaos-ddcr:1.47.0",
                            "command": ["/entrypoint", "sh", "-c", "env | sort; exec sleep 3600"],
                            "env": [
                                {
                                    "name": "LOG_WATCHER_IMAGE",
                                    "value": "docker.io/harness/chaos-log-watcher:1.47.0",
                                },
                                {"name": "LIB_IMAGE", "value": "docker.io/harness/chaos-ddcr-faults:1.47.0"},
                            ],
                        }
                    ],
                },
            },
        },
    }
    apply(node_cluster, deployment)
    node_cluster.kubectl(
        "rollout", "status", "deployment/chaos-ddcr", "-n", chaos_namespace, "--timeout=90s", timeout=100
    )
    pod = json.loads(
        node_cluster.kubectl(
            "get", "pods", "-n", chaos_namespace, "-l", "ddcr.app/name=chaos-ddcr", "-o", "json"
        ).stdout
    )["items"][0]
    name = pod["metadata"]["name"]

    # What the process sees, printed by the container itself, not only the stored spec.
    log = wait_for(
        lambda: (
            (text := node_cluster.container_log(chaos_namespace, name, "scheduler"))
            and "LIB_IMAGE=" in text
            and text
        ),
        what="the runner's environment in its log",
    )
    assert f"LIB_IMAGE={registry}/chaos/chaos-ddcr-faults:1.47.0" in log
    assert f"LOG_WATCHER_IMAGE={registry}/chaos/chaos-log-watcher:1.47.0" in log
    assert pod["spec"]["containers"][0]["image"] == f"{registry}/chaos/chaos-ddcr:1.47.0"
    assert pod["status"]["phase"] == "Running"
    assert not waiting_reasons(pod)


# The runner's side of a Litmus experiment: read LIB_IMAGE from the environment and create the
# helper pod with it through the apiserver, with kubectl's in-cluster config (the ServiceAccount
# token and CA the kubelet mounted, the `kubernetes` Service's address it put in the environment).
_RUNNER_SCRIPT = r"""
set -e
echo "creating helper with $LIB_IMAGE via https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
cat > /tmp/helper.json <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "pod-delete-helper-abcde", "labels": {"chaosUID": "node-test"}},
 "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
          "containers": [{"name": "helper", "image": "$LIB_IMAGE",
                          "command": ["/bin/bash"], "args": ["-c", "./helpers -name pod-delete"]}]}}
EOF
namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)
kubectl --cache-dir=/tmp/kube -n "$namespace" create -f /tmp/helper.json
"""


def test_a_runner_pod_starts_its_helper_with_the_rewritten_image_through_in_cluster_access(
    node_cluster: NodeCluster, chaos_namespace: str
):
    registry = node_cluster.registry
    # What the chaos platform grants its runner's ServiceAccount.
    apply(node_cluster, [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "runner", "namespace": chaos_namespace},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "runner", "namespace": chaos_namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": chaos_namespace}]},
    ])  # fmt: skip
    # LitmusChaos's k8s image: a shell and kubectl.
    runner = _experiment_pod("pod-delete-runner", image="litmuschaos/k8s:3.11.0")
    runner["spec"]["containers"][0]["args"] = ["-c", _RUNNER_SCRIPT]
    runner["spec"]["containers"][0]["env"] = [{"name": "LIB_IMAGE", "value": "litmuschaos/go-runner:3.11.0"}]
    _create(node_cluster, chaos_namespace, runner)

    runner_pod = node_cluster.wait_for_pod_phase(
        chaos_namespace, "pod-delete-runner", {"Succeeded", "Failed"}, timeout=90
    )
    log = node_cluster.container_log(chaos_namespace, "pod-delete-runner", "experiment")
    assert runner_pod["status"]["phase"] == "Succeeded", f"{pod_summary(runner_pod)}\n{log}"
    assert f"creating helper with {registry.host}/chaos/go-runner:3.11.0 via https://10.0.0.1:443" in log
    assert "pod/pod-delete-helper-abcde created" in log

    helper = node_cluster.wait_for_pod_phase(
        chaos_namespace, "pod-delete-helper-abcde", {"Succeeded", "Failed"}, timeout=90
    )
    assert helper["status"]["phase"] == "Succeeded", pod_summary(helper)
    assert helper["spec"]["containers"][0]["image"] == f"{registry.host}/chaos/go-runner:3.11.0"
    assert helper["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    assert "helpers -name pod-delete: done" in node_cluster.container_log(
        chaos_namespace, "pod-delete-helper-abcde", "helper"
    )

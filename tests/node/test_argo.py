"""A LitmusChaos-style Argo workflow on the real node: step pods rewritten, pulled and run.

LitmusChaos's chaos infrastructure runs a namespaced workflow-controller with an `instanceID`;
its step pods (init and wait `argoexec`, and `main`) are chaos pods by the webhook's
`argo-chaos-step` rule. Without the rewrite none of the three images can be pulled here
(`Init:ErrImagePull`); with it, the executor really runs: init copies argoexec, main runs through
`argoexec emissary`, wait reports the result back to the apiserver with in-cluster credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.argo import ARGO_VERSION, WorkflowController, argo_bin_dir
from controlplane.images import build_tool_image
from controlplane.node import NodeCluster, pod_summary
from controlplane.webhook import WebhookProcess
from tests.node.conftest import ACCOUNT, PULL_SECRET, PULLER, _namespace, apply, wait_for

INSTANCE_ID = "chaos-infra-1234"


@pytest.fixture(scope="module")
def argo_namespace(node_cluster: NodeCluster, node_webhook: WebhookProcess) -> Iterator[str]:
    executor = build_tool_image(argo_bin_dir() / "argoexec", entrypoint="argoexec")
    node_cluster.registry.push(executor, f"{node_cluster.account}/argoexec:{ARGO_VERSION}")
    for name in _namespace(node_cluster, "litmus", {"chaosregistry.io/account": ACCOUNT}):
        # What LitmusChaos grants the workflows' ServiceAccount (argo-chaos): the executor
        # reports each step's result as a WorkflowTaskResult.
        apply(node_cluster, [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "argo-chaos", "namespace": name}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "argo-chaos", "namespace": name},
             "rules": [
                 {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                  "verbs": ["create", "patch", "get", "list", "watch"]},
                 {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
             ]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "argo-chaos", "namespace": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-chaos"},
             "subjects": [{"kind": "ServiceAccount", "name": "argo-chaos", "namespace": name}]},
        ])  # fmt: skip
        with WorkflowController(node_cluster, name, instance_id=INSTANCE_ID):
            yield name


def _workflow(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "labels": {"workflows.argoproj.io/controller-instanceid": INSTANCE_ID, "subject": "custom-chaos"},
        },
        "spec": {
            "entrypoint": "install-chaos-faults",
            "serviceAccountName": "argo-chaos",
            "podGC": {"strategy": "OnWorkflowCompletion", "deleteDelayDuration": "600s"},
            "templates": [
                {
                    "name": "install-chaos-faults",
                    "container": {
                        "image": "litmuschaos/k8s:3.11.0",
                        "command": ["sh", "-c"],
                        "args": ["echo installing chaos faults; echo done > /tmp/result"],
                    },
                }
            ],
        },
    }


def test_a_workflow_step_pod_is_rewritten_and_its_three_containers_run(
    node_cluster: NodeCluster, argo_namespace: str
):
    registry = node_cluster.registry
    pulled_before = len(registry.pulls(user=PULLER, image=f"chaos/argoexec:{ARGO_VERSION}"))
    workflow = _workflow("custom-chaos-workflow-1717000000")
    workflow["metadata"]["namespace"] = argo_namespace
    apply(node_cluster, workflow)

    def finished() -> dict[str, Any] | None:
        result = node_cluster.kubectl(
            "get", "workflow", workflow["metadata"]["name"], "-n", argo_namespace, "-o", "json"
        )
        stored: dict[str, Any] = json.loads(result.stdout)
        return stored if stored.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error") else None

    stored = wait_for(finished, timeout=120, what="the workflow to finish")

    selector = f"workflows.argoproj.io/workflow={workflow['metadata']['name']}"
    listed = node_cluster.kubectl("get", "pods", "-n", argo_namespace, "-l", selector, "-o", "json")
    pods = json.loads(listed.stdout)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert stored["status"]["phase"] == "Succeeded", f"{stored['status']}\n{pod_summary(pod)}"
    assert pod["metadata"]["labels"]["workflows.argoproj.io/controller-instanceid"] == INSTANCE_ID
    images = {c["name"]: c["image"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]}
    executor = f"{registry.host}/chaos/argoexec:{ARGO_VERSION}"
    assert images == {"init": executor, "wait": executor, "main": f"{registry.host}/chaos/k8s:3.11.0"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    assert pod["status"]["phase"] == "Succeeded"
    states = {
        s["name"]: s["state"]
        for s in pod["status"]["initContainerStatuses"] + pod["status"]["containerStatuses"]
    }
    assert {name: state["terminated"]["exitCode"] for name, state in states.items()} == {
        "init": 0,
        "wait": 0,
        "main": 0,
    }
    assert "installing chaos faults" in node_cluster.container_log(
        argo_namespace, pod["metadata"]["name"], "main"
    )
    assert len(registry.pulls(user=PULLER, image=f"chaos/argoexec:{ARGO_VERSION}")) > pulled_before

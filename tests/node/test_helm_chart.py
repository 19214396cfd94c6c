"""The Helm chart on the real node: the image built from the Dockerfile, installed, used, upgraded,
tested and uninstalled, with the kubelet running it.

* The webhook's image comes from the repository's Dockerfile (controlplane/build-image.sh: buildah,
  no container engine), pushed into the node's registry; `helm install` uses the chart's defaults
  plus that image and the registry's pull secret.
* Both replicas become Ready through their probes, and the kubelet runs them as user 65532 with a
  read-only root filesystem (read from /proc of the container processes).
* The API server calls the webhook through the chart's Service (no kube-proxy here: the API server
  dials the Service's endpoints, `--enable-aggregator-routing`); the webhook talks to the API server
  with in-cluster configuration (ServiceAccount token). A chaos pod is rewritten to the local
  registry, the pull secret copied, the image pulled with it, and the pod runs; the replicas'
  /metrics count the admission.
* `helm test` passes (the chart's check-admission hook) and leaves no test object.
* `helm upgrade` with a changed value rolls the replicas without refusing a chaos pod and leaves the
  running chaos pod alone; `helm uninstall` removes every object the chart rendered, the webhook
  configuration included, and chaos pods are admitted unchanged afterwards (none refused, none broken).

Other webhook configurations (the session's local `serve`, tests/node/conftest.py) are set aside
for this module and put back afterwards, so every rewrite seen here is the chart's.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.node import NodeCluster, pod_summary
from controlplane.node_webhook import registry_manifest
from controlplane.webhook_image import BuiltImage, build_webhook_image
from tests.node.conftest import PULLER, apply, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "chaos-registry-webhook"
RELEASE = "node-chart"
NAMESPACE = "chaos-chart"
FULLNAME = f"{RELEASE}-chaos-registry-webhook"
ACCOUNT = "chart-node"
PULL_SECRET = "local-pull"
FIGURES = REPO / ".cache" / "node" / "chart-figures.json"


@dataclass
class Installed:
    cluster: NodeCluster
    image: BuiltImage
    pushed: str
    chaos_namespace: str
    install_to_ready_seconds: float
    figures: dict[str, float] = field(default_factory=dict)

    def helm(self, *args: str, check: bool = True, timeout: float = 300.0) -> Any:
        return helm(self.cluster, *args, check=check, timeout=timeout)


def helm(cluster: NodeCluster, *args: str, check: bool = True, timeout: float = 300.0) -> Any:
    home = cluster.root / "helm-home"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    command = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def get_json(cluster: NodeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def webhook_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        cluster,
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=chaos-registry-webhook",
    )["items"]
    return [
        pod for pod in items if pod["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "test"
    ]


def ready_replicas(cluster: NodeCluster) -> int:
    deployment = get_json(cluster, "deployment", FULLNAME, "-n", NAMESPACE)
    status = deployment.get("status", {})
    current = status.get("updatedReplicas", 0) == deployment["spec"]["replicas"] == status.get("replicas")
    return int(status.get("readyReplicas", 0)) if current else 0


def set_aside_other_pod_webhooks(cluster: NodeCluster) -> list[dict[str, Any]]:
    """Delete the MutatingWebhookConfigurations that are not the chart's; returns them to put back."""
    kept = []
    for config in get_json(cluster, "mutatingwebhookconfigurations")["items"]:
        if config["metadata"]["name"] == FULLNAME:
            continue
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            config["metadata"].pop(key, None)
        kept.append(config)
        cluster.kubectl("delete", "mutatingwebhookconfiguration", config["metadata"]["name"])
    return kept


def chaos_runner(name: str) -> dict[str, Any]:
    """A LitmusChaos runner (examples/pods/litmus-runner.yaml): idles, so it stays Running."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/component": "chaos-runner", "chaosUID": "chart-node"},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "chaos-runner", "image": "litmuschaos/chaos-runner:3.11.0"}],
        },
    }


def dry_run(cluster: NodeCluster, namespace: str, pod: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(pod),
        check=False,
    )
    return (
        (0, json.loads(result.stdout))
        if result.returncode == 0
        else (result.returncode, result.stderr.strip())
    )


def admissions_mutated(cluster: NodeCluster) -> int:
    """chaos_registry_admission_requests_total{outcome="mutated"} summed over the chart's replicas,
    read from each pod's /metrics (pod IPs are routable from the host through the CNI bridge)."""
    total = 0
    for pod in webhook_pods(cluster):
        ip = pod["status"].get("podIP")
        if not ip:
            continue
        with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(r'^chaos_registry_admission_requests_total\{outcome="mutated"\} (\S+)$', text, re.M)
        total += int(float(match.group(1))) if match else 0
    return total


@pytest.fixture(scope="module")
def installed(request: pytest.FixtureRequest, node_cluster: NodeCluster) -> Iterator[Installed]:
    cluster = node_cluster
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        image = build_webhook_image(quiet=False)
    pushed = cluster.registry.push(
        image.source, f"{cluster.account}/chaos-registry-webhook:{image.reference.rsplit(':', 1)[1]}"
    )
    repository, tag = pushed.rsplit(":", 1)
    others = set_aside_other_pod_webhooks(cluster)
    chaos_namespace = f"chart-chaos-{secrets.token_hex(3)}"
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        # The webhook's own pods must pass Pod Security restricted where it is enforced.
        cluster.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        # One Secret for both: the webhook's pods pull its image with it, and it is the source the
        # webhook copies into chaos namespaces (the release namespace is always a source).
        apply(cluster, cluster.registry.pull_secret(PULL_SECRET, NAMESPACE, user=PULLER))
        began = time.monotonic()
        helm(
            cluster, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"imagePullSecrets={{{PULL_SECRET}}}",
        )  # fmt: skip
        wait_for(lambda: ready_replicas(cluster) == 2, timeout=300, what=f"2 Ready replicas of {FULLNAME}")
        install_to_ready = round(time.monotonic() - began, 1)
        cluster.kubectl("create", "namespace", chaos_namespace)
        cluster.kubectl("label", "namespace", chaos_namespace, f"chaosregistry.io/account={ACCOUNT}")
        apply(
            cluster,
            registry_manifest(cluster, account=ACCOUNT, secret_namespace=NAMESPACE, secret_name=PULL_SECRET),
        )
        wait_for(
            lambda: (
                cluster.kubectl("get", "sa", "default", "-n", chaos_namespace, check=False).returncode == 0
            ),
            what=f"the default ServiceAccount of {chaos_namespace}",
        )
        result = Installed(cluster, image, pushed, chaos_namespace, install_to_ready)
        result.figures = {"image_build_seconds": image.seconds, "install_to_ready_seconds": install_to_ready}
        yield result
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(result.figures, indent=2) + "\n")
    finally:
        helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "chaosimageregistry", ACCOUNT, "--ignore-not-found", check=False)
        for namespace in (chaos_namespace, NAMESPACE):
            cluster.kubectl(
                "delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False
            )
        for config in others:
            cluster.kubectl("create", "-f", "-", input=json.dumps(config), check=False)


# --- install ------------------------------------------------------------------------------------------


def test_both_replicas_become_ready_through_their_probes(installed: Installed) -> None:
    cluster = installed.cluster
    pods = webhook_pods(cluster)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        container = pod["spec"]["containers"][0]
        assert container["image"] == installed.pushed
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True", pod_summary(pod)
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"] and "running" in status["state"], pod_summary(pod)
        assert status["restartCount"] == 0, pod_summary(pod)
        # What the kubelet's probes ask, asked again from the host.
        for path in ("/readyz", "/healthz"):
            with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080{path}", timeout=5) as response:
                assert response.status == 200
    # The image was pulled from the local registry with the pull secret given to the chart.
    pulls = cluster.registry.pulls(user=PULLER, image=installed.pushed.split("/", 1)[1])
    assert pulls, "the registry's log shows no pull of the webhook's image by the pull secret's user"
    print(f"\nchart figures: {installed.figures}")


def container_process(cluster: NodeCluster, pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in cluster.ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"containerd runs no task {container_id}")


def test_replicas_run_as_non_root_with_a_read_only_root_filesystem(installed: Installed) -> None:
    for pod in webhook_pods(installed.cluster):
        pid = container_process(installed.cluster, pod)
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
        assert uids and set(uids.group(1).split()) == {"65532"}, status
        assert gids and set(gids.group(1).split()) == {"65532"}, status
        mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        root = next(fields for fields in mounts if fields[4] == "/")
        assert "ro" in root[5].split(","), f"root filesystem mounted {root[5]}"
        tmp = next(fields for fields in mounts if fields[4] == "/tmp")
        assert "rw" in tmp[5].split(",")  # the emptyDir the server writes its certificate to


# --- admission through the chart's Service ------------------------------------------------------------


def test_api_server_calls_the_chart_service_and_the_rewritten_pod_runs(installed: Installed) -> None:
    cluster, namespace = installed.cluster, installed.chaos_namespace
    config = get_json(cluster, "mutatingwebhookconfiguration", FULLNAME)
    client_config = config["webhooks"][0]["clientConfig"]
    assert client_config["service"] == {
        "name": FULLNAME,
        "namespace": NAMESPACE,
        "path": "/mutate-pods",
        "port": 443,
    }
    assert "url" not in client_config
    assert client_config.get("caBundle"), "the webhook did not fill its configuration's caBundle"
    others = [c["metadata"]["name"] for c in get_json(cluster, "mutatingwebhookconfigurations")["items"]]
    assert others == [FULLNAME]
    mutated_before = admissions_mutated(cluster)
    pulled_before = len(cluster.registry.pulls(user=PULLER, image=f"{cluster.account}/chaos-runner:3.11.0"))

    # The webhook may not have seen the new ChaosImageRegistry yet: dry runs until it rewrites.
    wanted = f"{cluster.registry.host}/{cluster.account}/chaos-runner:3.11.0"
    wait_for(
        lambda: (answer := dry_run(cluster, namespace, chaos_runner("probe")))[0] == 0
        and answer[1]["spec"]["containers"][0]["image"] == wanted,  # type: ignore[index]
        timeout=60, what="the chart's webhook to rewrite chaos pods",
    )  # fmt: skip
    stored = json.loads(
        cluster.kubectl(
            "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(chaos_runner("runner"))
        ).stdout
    )
    assert stored["spec"]["containers"][0]["image"] == wanted
    assert stored["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
    assert json.loads(stored["metadata"]["annotations"]["chaosregistry.io/original-images"]) == {
        "chaos-runner": "litmuschaos/chaos-runner:3.11.0"
    }
    pod = cluster.wait_for_pod_phase(namespace, "runner", {"Running"}, timeout=120)
    assert pod["status"]["containerStatuses"][0]["ready"], pod_summary(pod)
    pulls = cluster.registry.pulls(user=PULLER, image=f"{cluster.account}/chaos-runner:3.11.0")
    assert len(pulls) > pulled_before, "the kubelet did not pull the rewritten image with the copied secret"
    # The chart's replicas answered (the only pod webhook here), through the Service's endpoints.
    assert admissions_mutated(cluster) >= mutated_before + 2


def test_helm_test_passes_and_leaves_nothing(installed: Installed) -> None:
    began = time.monotonic()
    result = installed.helm("test", RELEASE, "--namespace", NAMESPACE, "--timeout", "3m")
    installed.figures["helm_test_seconds"] = round(time.monotonic() - began, 1)
    phases = re.findall(r"^Phase:\s+(\S+)", result.stdout, re.M)
    assert phases and set(phases) == {"Succeeded"}, result.stdout
    test_name = f"{FULLNAME}-test"
    cluster = installed.cluster
    # Deleted on success (hook-delete-policy hook-succeeded): no test namespace, registry, account or pod.
    for args in (
        ("namespace", test_name),
        ("chaosimageregistry", test_name),
        ("serviceaccount", test_name, "-n", NAMESPACE),
        ("pod", test_name, "-n", NAMESPACE),
    ):
        wait_for(
            lambda args=args: cluster.kubectl("get", *args, check=False).returncode != 0,
            timeout=120, what=f"{' '.join(args)} to be deleted",
        )  # fmt: skip


# --- upgrade and uninstall ----------------------------------------------------------------------------


class DryRunLoop(threading.Thread):
    """Chaos pods sent to the API server (dry run) without pause: what a busy cluster does while
    the chart rolls its replicas."""

    def __init__(self, cluster: NodeCluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.answers: list[tuple[int, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.answers.append(dry_run(self.cluster, self.namespace, chaos_runner("during")))

    def stop(self) -> list[tuple[int, Any]]:
        self.stopping.set()
        self.join(timeout=60)
        return self.answers


def test_upgrade_rolls_the_replicas_without_refusing_or_breaking_a_chaos_pod(installed: Installed) -> None:
    cluster, namespace = installed.cluster, installed.chaos_namespace
    old_pods = {p["metadata"]["name"] for p in webhook_pods(cluster)}
    runner_uid = cluster.pod(namespace, "runner")["metadata"]["uid"]
    loop = DryRunLoop(cluster, namespace)
    loop.start()
    try:
        installed.helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "logLevel=debug",
        )

        def replaced() -> bool:
            names = {p["metadata"]["name"] for p in webhook_pods(cluster)}
            return ready_replicas(cluster) == 2 and not old_pods & names

        wait_for(replaced, timeout=300, what="the upgraded replicas to replace the old ones")
    finally:
        answers = loop.stop()
    installed.figures["dry_runs_during_upgrade"] = len(answers)
    refused = [answer for code, answer in answers if code != 0]
    assert not refused, (
        f"{len(refused)} of {len(answers)} chaos pods refused during the upgrade: {refused[:3]}"
    )
    wanted = f"{cluster.registry.host}/{cluster.account}/chaos-runner:3.11.0"
    assert answers and all(pod["spec"]["containers"][0]["image"] == wanted for _, pod in answers)
    for pod in webhook_pods(cluster):
        assert "--log-level=debug" in pod["spec"]["containers"][0]["args"]
    runner = cluster.pod(namespace, "runner")
    assert runner["metadata"]["uid"] == runner_uid
    assert (
        runner["status"]["phase"] == "Running"
        and runner["status"]["containerStatuses"][0]["restartCount"] == 0
    )


def test_uninstall_removes_every_chart_object_and_breaks_no_chaos_pod(installed: Installed) -> None:
    cluster, namespace = installed.cluster, installed.chaos_namespace
    manifest = installed.helm("get", "manifest", RELEASE, "--namespace", NAMESPACE).stdout
    rendered = [doc for doc in yaml.safe_load_all(manifest) if doc]
    assert "MutatingWebhookConfiguration" in {obj["kind"] for obj in rendered}
    installed.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "3m")
    for obj in rendered:
        args = [obj["kind"].lower(), obj["metadata"]["name"]]
        args += ["-n", obj["metadata"]["namespace"]] if obj["metadata"].get("namespace") else []
        assert cluster.kubectl("get", *args, check=False).returncode != 0, (
            f"{' '.join(args)} survived uninstall"
        )
    wait_for(lambda: not webhook_pods(cluster), timeout=120, what="the webhook's pods to go")
    assert get_json(cluster, "mutatingwebhookconfigurations")["items"] == []
    # The chaos pod admitted before keeps running; new ones are admitted, unchanged, not refused.
    runner = cluster.pod(namespace, "runner")
    assert runner["status"]["phase"] == "Running" and runner["status"]["containerStatuses"][0]["ready"]
    code, pod = dry_run(cluster, namespace, chaos_runner("after-uninstall"))
    assert code == 0, pod
    assert pod["spec"]["containers"][0]["image"] == "litmuschaos/chaos-runner:3.11.0"  # type: ignore[index]
    # Left, as the README's Uninstall says: what the webhook made itself (its certificate Secret,
    # Lease and copies record in the release namespace, the pull-secret copies) and the CRD.
    left = {
        f"{item['kind']}/{item['metadata']['name']}"
        for kind in ("secrets", "configmaps", "leases.coordination.k8s.io")
        for item in get_json(cluster, kind, "-n", NAMESPACE)["items"]
        if item["metadata"]["name"] not in (PULL_SECRET, "kube-root-ca.crt")
    }
    assert left <= {f"Secret/{FULLNAME}-tls", f"ConfigMap/{FULLNAME}-copies", f"Lease/{FULLNAME}-leader"}, (
        left
    )

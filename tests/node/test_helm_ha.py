"""High availability of the chart on the real node, under continuous chaos-pod creation.

The chart runs two replicas behind failurePolicy Fail, so whatever takes a replica away is felt by
every team creating chaos pods. While creators make real chaos pods (not dry runs) in a namespace a
ChaosImageRegistry covers, retrying refused creates as controllers do (backoff, a few attempts):

* `helm upgrade` with a changed value AND a new image tag (the same image pushed under a second tag)
  rolls both replicas: no create refused, no pod admitted unrewritten, and at most one replica
  unavailable at any moment (the PodDisruptionBudget's promise, polled from the pods themselves).
  The same for `kubectl rollout restart` (full run).
* The container of the replica holding the Lease is killed (SIGKILL to its process, found through
  containerd): the other replica keeps admitting, takes the Lease, and a namespace and a
  ChaosImageRegistry created during the outage get their pull-secret copy and status. The time to
  a new Lease holder is recorded. In the full run the pod of the new holder is then deleted, and
  the Lease moves back.

The creators' pods carry a scheduling gate: they are admitted and stored but never scheduled, so
the load costs the node nothing but API calls. `RELIABILITY_FULL=1` (make reliability) runs more
creators for longer and the heavier cases; `make test` runs one upgrade and one killed container.
Figures go to .cache/node/ha-figures.json and, under make reliability, to the reliability figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.node import NodeCluster
from controlplane.node_webhook import registry_manifest
from controlplane.webhook_image import build_webhook_image
from tests.node.conftest import PULLER, apply, wait_for
from tests.node.test_helm_chart import container_process, get_json, helm
from tests.reliability import figures
from tests.reliability.scale import current_scale

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "chaos-registry-webhook"
RELEASE = "node-ha"
NAMESPACE = "chaos-ha"
FULLNAME = f"{RELEASE}-chaos-registry-webhook"
LEASE = f"{FULLNAME}-leader"
ACCOUNT = "ha-node"
PULL_SECRET = "ha-pull"
FIGURES = REPO / ".cache" / "node" / "ha-figures.json"
SECTION = "chart on the node: high availability"
SCALE = current_scale()
CREATORS = SCALE.pick(2, 3)
# Refused creates a controller would retry (client-go's workqueue backs off the same way).
RETRIES = 5
GATE = "chaosregistry.io/ha-test-hold"


def creator_pod(name: str) -> dict[str, Any]:
    """A LitmusChaos runner held by a scheduling gate: admitted and stored, never run."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/component": "chaos-runner", "chaosUID": "ha-node"},
        },
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "containers": [{"name": "chaos-runner", "image": "litmuschaos/chaos-runner:3.11.0"}],
        },
    }


@dataclass
class Release:
    cluster: NodeCluster
    repository: str
    tags: tuple[str, str]
    chaos_namespace: str
    figures: dict[str, Any] = field(default_factory=dict)

    def helm(self, *args: str) -> Any:
        return helm(self.cluster, *args)

    @property
    def wanted_image(self) -> str:
        return f"{self.cluster.registry.host}/{self.cluster.account}/chaos-runner:3.11.0"

    def record(self, name: str, value: Any) -> None:
        self.figures[name] = value
        figures.record(SECTION, name, value)


def webhook_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        cluster, "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}"
    )["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "test"]


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


def rolled_out(cluster: NodeCluster, old: set[str]) -> bool:
    deployment = get_json(cluster, "deployment", FULLNAME, "-n", NAMESPACE)
    status = deployment.get("status", {})
    pods = webhook_pods(cluster)
    names = {p["metadata"]["name"] for p in pods}
    return (
        status.get("updatedReplicas") == status.get("replicas") == status.get("readyReplicas") == 2
        and len(pods) == 2
        and not names & old
        and all(is_ready(p) for p in pods)
    )


def lease_holder(cluster: NodeCluster) -> str:
    result = cluster.kubectl("get", "lease", LEASE, "-n", NAMESPACE, "-o", "json", check=False)
    if result.returncode != 0:
        return ""
    return str(json.loads(result.stdout)["spec"].get("holderIdentity") or "")


def set_aside_other_pod_webhooks(cluster: NodeCluster) -> list[dict[str, Any]]:
    kept = []
    for config in get_json(cluster, "mutatingwebhookconfigurations")["items"]:
        if config["metadata"]["name"] == FULLNAME:
            continue
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            config["metadata"].pop(key, None)
        kept.append(config)
        cluster.kubectl("delete", "mutatingwebhookconfiguration", config["metadata"]["name"])
    return kept


class Creators:
    """Threads creating chaos pods without pause, each refused create retried with backoff."""

    def __init__(self, release: Release, prefix: str) -> None:
        self.release, self.prefix = release, prefix.replace("_", "-")  # pod names are DNS labels
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.created = 0
        self.refused_attempts = 0  # creates the apiserver refused because the webhook failed
        self.lost: list[str] = []  # pods never created after every retry
        self.unrewritten: list[str] = []
        self.refusals: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CREATORS)]

    def __enter__(self) -> Creators:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _run(self, index: int) -> None:
        cluster, namespace = self.release.cluster, self.release.chaos_namespace
        number = 0
        while not self.stopping.is_set():
            number += 1
            name = f"{self.prefix}-{index}-{number}"
            body = json.dumps(creator_pod(name))
            for attempt in range(RETRIES):
                result = cluster.kubectl(
                    "create", "-n", namespace, "-o", "json", "-f", "-", input=body, check=False
                )
                if result.returncode == 0:
                    pod = json.loads(result.stdout)
                    with self.lock:
                        self.created += 1
                        if pod["spec"]["containers"][0]["image"] != self.release.wanted_image:
                            self.unrewritten.append(name)
                    break
                with self.lock:
                    self.refused_attempts += 1
                    self.refusals.append(result.stderr.strip()[:300])
                time.sleep(min(0.2 * 2**attempt, 2.0))
            else:
                with self.lock:
                    self.lost.append(name)


class AvailabilityWatch(threading.Thread):
    """Polls the webhook's pods: the fewest Ready (and not terminating) replicas seen."""

    def __init__(self, cluster: NodeCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stopping = threading.Event()
        self.fewest_ready = 2
        self.polls = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(subprocess.SubprocessError, json.JSONDecodeError, KeyError):
                ready = sum(is_ready(p) for p in webhook_pods(self.cluster))
                self.fewest_ready = min(self.fewest_ready, ready)
                self.polls += 1
            time.sleep(0.2)

    def __enter__(self) -> AvailabilityWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=60)


@pytest.fixture(scope="module")
def release(request: pytest.FixtureRequest, node_cluster: NodeCluster) -> Iterator[Release]:
    cluster = node_cluster
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        image = build_webhook_image(quiet=False)
    tag = image.reference.rsplit(":", 1)[1]
    # The same image under a second tag: an upgrade to "a new version" that changes the pod template.
    first = cluster.registry.push(image.source, f"{cluster.account}/chaos-registry-webhook:{tag}")
    cluster.registry.push(image.source, f"{cluster.account}/chaos-registry-webhook:{tag}-next")
    repository = first.rsplit(":", 1)[0]
    others = set_aside_other_pod_webhooks(cluster)
    chaos_namespace = f"ha-chaos-{secrets.token_hex(3)}"
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        apply(cluster, cluster.registry.pull_secret(PULL_SECRET, NAMESPACE, user=PULLER))
        helm(
            cluster, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"imagePullSecrets={{{PULL_SECRET}}}", "--set", "resyncIntervalSeconds=5",
        )  # fmt: skip
        wait_for(lambda: rolled_out(cluster, set()), timeout=300, what=f"2 Ready replicas of {FULLNAME}")
        cluster.kubectl("create", "namespace", chaos_namespace)
        cluster.kubectl("label", "namespace", chaos_namespace, f"chaosregistry.io/account={ACCOUNT}")
        apply(cluster, registry_object(cluster, ACCOUNT))
        wait_for(
            lambda: (
                cluster.kubectl("get", "sa", "default", "-n", chaos_namespace, check=False).returncode == 0
            ),
            what=f"the default ServiceAccount of {chaos_namespace}",
        )
        result = Release(cluster, repository, (tag, f"{tag}-next"), chaos_namespace)
        # Until the replicas have seen the ChaosImageRegistry, pods pass unrewritten: wait for both.
        wait_for(
            lambda: all(dry_run_image(result) == result.wanted_image for _ in range(6)),
            timeout=60, what="both replicas to rewrite chaos pods",
        )  # fmt: skip
        yield result
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(result.figures, indent=2) + "\n")
    finally:
        helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "chaosimageregistries", "-l", "chaosregistry.io/ha-test=true", check=False)
        cluster.kubectl(
            "delete", "namespace", "-l", "chaosregistry.io/ha-test=true", "--wait=false", check=False
        )
        for namespace in (chaos_namespace, NAMESPACE):
            cluster.kubectl(
                "delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False
            )
        for config in others:
            cluster.kubectl("create", "-f", "-", input=json.dumps(config), check=False)


def registry_object(cluster: NodeCluster, account: str) -> dict[str, Any]:
    return registry_manifest(
        cluster, account=account, secret_namespace=NAMESPACE, secret_name=PULL_SECRET,
        labels={"chaosregistry.io/ha-test": "true"},
    )  # fmt: skip


def dry_run_image(release: Release) -> str:
    result = release.cluster.kubectl(
        "create", "--dry-run=server", "-n", release.chaos_namespace, "-o", "json", "-f", "-",
        input=json.dumps(creator_pod("probe")), check=False,
    )  # fmt: skip
    return str(json.loads(result.stdout)["spec"]["containers"][0]["image"]) if result.returncode == 0 else ""


def roll_under_load(release: Release, name: str, roll: Any) -> None:
    """Run `roll()` while creators create and the pods are watched; assert and record the figures."""
    cluster = release.cluster
    old = {p["metadata"]["name"] for p in webhook_pods(cluster)}
    began = time.monotonic()
    with AvailabilityWatch(cluster) as watch, Creators(release, name) as creators:
        time.sleep(2)  # load before the roll starts
        roll()
        wait_for(lambda: rolled_out(cluster, old), timeout=300, what=f"{name}: new replicas to replace {old}")
        time.sleep(2)  # and after it ends
    release.record(f"{name}_seconds", round(time.monotonic() - began, 1))
    release.record(f"{name}_pods_created", creators.created)
    release.record(f"{name}_refused_attempts", creators.refused_attempts)
    release.record(f"{name}_pods_unrewritten", len(creators.unrewritten))
    release.record(f"{name}_max_unavailable", 2 - watch.fewest_ready)
    figures.add(SECTION, "pods_created", creators.created)
    figures.add(SECTION, "pods_wrong", len(creators.unrewritten))
    print(f"\n{name}: {release.figures}; first refusals: {creators.refusals[:3]}")
    assert creators.created > 0 and watch.polls > 0, creators.refusals[:3]
    refused, lost = creators.refused_attempts, len(creators.lost)
    assert refused == 0 and not lost, f"{refused} creates refused, {lost} pods lost: {creators.refusals[:3]}"
    assert not creators.unrewritten, f"admitted unrewritten: {creators.unrewritten[:5]}"
    assert watch.fewest_ready >= 1, f"{2 - watch.fewest_ready} replicas unavailable at once"


def test_helm_upgrade_with_a_new_value_and_image_tag_refuses_no_pod(release: Release) -> None:
    def upgrade() -> None:
        release.helm(
            "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
            "--set", "logLevel=debug", "--set", f"image.tag={release.tags[1]}",
        )  # fmt: skip

    roll_under_load(release, "helm_upgrade", upgrade)
    for pod in webhook_pods(release.cluster):
        container = pod["spec"]["containers"][0]
        assert container["image"] == f"{release.repository}:{release.tags[1]}"
        assert "--log-level=debug" in container["args"]


def test_rollout_restart_refuses_no_pod(release: Release) -> None:
    roll_under_load(
        release,
        "rollout_restart",
        lambda: release.cluster.kubectl("rollout", "restart", f"deployment/{FULLNAME}", "-n", NAMESPACE),
    )


def converges_during_outage(release: Release, label: str) -> None:
    """A new registry and a new chaos namespace made while a replica is down get status and copy."""
    cluster = release.cluster
    account = f"ha-{label}-{secrets.token_hex(2)}"
    apply(cluster, registry_object(cluster, account))
    namespace = f"ha-{label}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        f"chaosregistry.io/account={ACCOUNT}",
        "chaosregistry.io/ha-test=true",
    )

    def status_written() -> bool:
        obj = get_json(cluster, "chaosimageregistry", account)
        conditions = obj.get("status", {}).get("conditions", [])
        generation = obj["metadata"]["generation"]
        return bool(conditions) and all(c.get("observedGeneration") == generation for c in conditions)

    wait_for(status_written, timeout=90, what=f"the status of ChaosImageRegistry {account}")
    wait_for(
        lambda: cluster.kubectl("get", "secret", PULL_SECRET, "-n", namespace, check=False).returncode == 0,
        timeout=90, what=f"the pull-secret copy in {namespace}",
    )  # fmt: skip


def wait_new_holder(release: Release, old: str, timeout: float = 120.0) -> tuple[str, float]:
    began = time.monotonic()
    holder = wait_for(
        lambda: (h := lease_holder(release.cluster)) not in ("", old) and h,
        timeout=timeout, what=f"a Lease holder other than {old}",
    )  # fmt: skip
    return str(holder), round(time.monotonic() - began, 1)


def test_killed_lease_holder_the_other_replica_serves_and_takes_the_lease(release: Release) -> None:
    cluster = release.cluster
    holder = wait_for(lambda: lease_holder(cluster), timeout=60, what="a Lease holder")
    pods = {p["metadata"]["name"]: p for p in webhook_pods(cluster)}
    assert holder in pods, f"Lease held by {holder}, not one of {sorted(pods)}"
    with AvailabilityWatch(cluster) as watch, Creators(release, "kill") as creators:
        time.sleep(2)
        # The crash: SIGKILL, so the holder never releases its Lease. Then its pod is deleted (its
        # node gone, say): a container merely restarted by the kubelet keeps the pod's name, which
        # is its identity, and would renew its own Lease rather than hand it over.
        os.kill(container_process(cluster, pods[holder]), signal.SIGKILL)
        cluster.kubectl("delete", "pod", holder, "-n", NAMESPACE, "--wait=false")
        new_holder, seconds = wait_new_holder(release, holder)
        converges_during_outage(release, "kill")
        wait_for(lambda: rolled_out(cluster, {holder}), timeout=180, what="a replacement replica")
        time.sleep(2)
    release.record("kill_seconds_to_new_lease_holder", seconds)
    release.record("kill_lease_taken_by_the_other_replica", new_holder in pods)
    release.record("kill_pods_created", creators.created)
    release.record("kill_refused_attempts", creators.refused_attempts)
    release.record("kill_pods_lost", len(creators.lost))
    release.record("kill_max_unavailable", 2 - watch.fewest_ready)
    release.record("kill_pods_unrewritten", len(creators.unrewritten))
    figures.add(SECTION, "pods_created", creators.created)
    figures.add(SECTION, "pods_wrong", len(creators.unrewritten))
    figures.add(SECTION, "faults_injected", 1)
    print(f"\nkill: {release.figures}")
    assert new_holder != holder
    assert watch.fewest_ready >= 1, "no replica Ready while the other was down"
    assert new_holder in {p["metadata"]["name"] for p in webhook_pods(cluster)}, new_holder
    # A create sent to the killed replica's endpoint before it is marked unready is refused once;
    # retried as a controller does, every pod gets in, rewritten.
    assert creators.created > 0 and not creators.lost, creators.refusals[:3]
    assert not creators.unrewritten, creators.unrewritten[:5]


def test_deleted_lease_holder_pod_hands_the_lease_over(release: Release) -> None:
    cluster = release.cluster
    holder = wait_for(lambda: lease_holder(cluster), timeout=60, what="a Lease holder")
    with AvailabilityWatch(cluster) as watch, Creators(release, "delete") as creators:
        time.sleep(2)
        cluster.kubectl("delete", "pod", holder, "-n", NAMESPACE, "--wait=false")
        new_holder, seconds = wait_new_holder(release, holder)
        converges_during_outage(release, "delete")
        wait_for(lambda: rolled_out(cluster, {holder}), timeout=180, what="a replacement replica")
        time.sleep(2)
    release.record("delete_seconds_to_new_lease_holder", seconds)
    release.record("delete_pods_created", creators.created)
    release.record("delete_refused_attempts", creators.refused_attempts)
    release.record("delete_pods_unrewritten", len(creators.unrewritten))
    release.record("delete_max_unavailable", 2 - watch.fewest_ready)
    figures.add(SECTION, "pods_created", creators.created)
    figures.add(SECTION, "pods_wrong", len(creators.unrewritten))
    figures.add(SECTION, "faults_injected", 1)
    print(f"\ndelete: {release.figures}")
    assert new_holder != holder
    assert creators.created > 0 and not creators.lost, creators.refusals[:3]
    assert creators.refused_attempts == 0, creators.refusals[:3]
    assert not creators.unrewritten, creators.unrewritten[:5]


if not SCALE.full:
    # The CI share (make test) keeps one roll and one killed container; the full run (make
    # reliability) collects these too. Not collected rather than skipped: nothing is missing in CI.
    del test_rollout_restart_refuses_no_pod, test_deleted_lease_holder_pod_hands_the_lease_over

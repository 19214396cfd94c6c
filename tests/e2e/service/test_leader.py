"""Only the holder of the coordination.k8s.io Lease writes (docs/contract.md#the-service): several `serve`
processes campaign, exactly one holds the Lease and runs the write side, and when it stops (it
releases the Lease) or dies (the Lease expires) another takes over and writes.

The extra processes run with --lease-duration 3 and their own MutatingWebhookConfiguration
(failurePolicy Ignore), deleted afterwards. The first test elects among a pair on a Lease of its
own; the second joins the session replica's Lease and stops that replica (restarting it after), to
show that status is written by whoever leads.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from tests.e2e.service.admission_support import delete_webhook_configuration, metric_samples
from tests.e2e.service.conftest import WEBHOOK_NAMESPACE, Cluster, wait_for

DEFAULT_LEASE = "chaos-registry-webhook-leader"
LEASE_DURATION = 3.0
TIMEOUT = 20.0


class Replicas:
    """Extra serve processes that all write (no --no-writer); stopped and unregistered on exit."""

    def __init__(self, control_plane: ControlPlane, log_dir: Path) -> None:
        self.control_plane = control_plane
        self.log_dir = log_dir
        self.processes: list[WebhookProcess] = []
        self.extra_leases: list[str] = []
        self.api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
        self.leases = kubernetes.client.CoordinationV1Api(self.api)

    def start(self, identity: str, *extra_args: str) -> WebhookProcess:
        name = f"chaos-registry-{identity}"
        process = WebhookProcess(
            self.control_plane.kubeconfig,
            self.log_dir / f"{identity}.log",
            config_name=name,
            failure_policy="Ignore",
            extra_args=[
                "--identity", identity,
                "--lease-duration", str(LEASE_DURATION),
                "--resync-interval", "2",
                *extra_args,
            ],
        )  # fmt: skip
        self.processes.append(process)
        process.start(timeout=40)
        return process

    def holder(self, lease: str) -> str | None:
        try:
            spec = self.leases.read_namespaced_lease(lease, WEBHOOK_NAMESPACE).spec
        except kubernetes.client.ApiException:
            return None
        return spec.holder_identity if spec is not None else None

    def transitions(self, lease: str) -> int:
        return int(self.leases.read_namespaced_lease(lease, WEBHOOK_NAMESPACE).spec.lease_transitions or 0)

    def wait_holder(self, lease: str, identity: str, timeout: float = TIMEOUT) -> float:
        """Wait until `identity` holds `lease`; return the seconds it took."""
        started = time.monotonic()
        wait_for(
            lambda: self.holder(lease) == identity,
            timeout=timeout,
            interval=0.1,
            what=f"{identity} to hold {lease}",
        )
        return time.monotonic() - started

    def forget(self, lease: str) -> None:
        """Delete a Lease of a test's own, and the record of copies that goes with it."""
        self.extra_leases.append(lease)

    def close(self) -> None:
        for process in self.processes:
            process.stop()
            delete_webhook_configuration(self.api, process.config_name)
        core = kubernetes.client.CoreV1Api(self.api)
        for lease in self.extra_leases:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.leases.delete_namespaced_lease(lease, WEBHOOK_NAMESPACE)
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespaced_config_map(
                    lease.removesuffix("-leader") + "-copies", WEBHOOK_NAMESPACE
                )
        self.api.close()


@pytest.fixture
def replicas(control_plane: ControlPlane, webhook: WebhookProcess, tmp_path: Path) -> Iterator[Replicas]:
    helper = Replicas(control_plane, tmp_path)
    try:
        yield helper
    finally:
        helper.close()


def leader_gauge(process: WebhookProcess) -> float:
    return metric_samples(process, "chaos_registry_leader").get((), -1.0)


def log_of(process: WebhookProcess) -> str:
    return process.log_file.read_text(errors="replace")


def identity_of(process: WebhookProcess) -> str:
    """The default --identity of a serve process: host-pid."""
    assert process.process is not None
    return f"{socket.gethostname()}-{process.process.pid}"


def test_one_of_two_replicas_holds_the_lease_and_failover(replicas: Replicas) -> None:
    lease = f"pair-{secrets.token_hex(3)}-leader"
    replicas.forget(lease)
    tag = secrets.token_hex(2)
    first = replicas.start(f"first-{tag}", "--lease-name", lease)
    second = replicas.start(f"second-{tag}", "--lease-name", lease)
    identities = {f"first-{tag}": first, f"second-{tag}": second}

    holder = wait_for(lambda: replicas.holder(lease), timeout=TIMEOUT, what=f"someone to hold {lease}")
    assert holder in identities
    leader = identities[holder]
    (follower_id, follower), *_ = [(i, p) for i, p in identities.items() if i != holder]
    wait_for(lambda: leader_gauge(leader) == 1.0, what="the leader's chaos_registry_leader gauge")
    assert leader_gauge(follower) == 0.0
    assert replicas.holder(lease) == holder  # still the same one: renewals keep it
    wait_for(lambda: "writer started" in log_of(leader), what="the leader's write side to start")
    assert "writer started" not in log_of(follower)
    assert f"Lease {WEBHOOK_NAMESPACE}/{lease} is held by {holder}" in log_of(follower)
    transitions = replicas.transitions(lease)

    # A clean stop releases the Lease: the follower takes it at its next try, well before expiry.
    leader.stop()
    assert f"released Lease {WEBHOOK_NAMESPACE}/{lease}" in log_of(leader)
    took = replicas.wait_holder(lease, follower_id)
    assert took < LEASE_DURATION, f"took {took:.1f}s after a release"
    wait_for(lambda: leader_gauge(follower) == 1.0, what="the new leader's gauge")
    wait_for(lambda: "writer started" in log_of(follower), what="the new leader's write side to start")
    assert replicas.transitions(lease) == transitions + 1

    # The old leader comes back as a follower; then the new leader dies without releasing:
    # the Lease changes hands only once it has expired (renewTime + 3 s), within about its duration.
    leader.start(timeout=40)
    wait_for(lambda: f"is held by {follower_id}" in log_of(leader), what="the restarted replica to follow")
    assert leader_gauge(leader) == 0.0
    follower.kill()
    killed = time.monotonic()
    replicas.wait_holder(lease, holder)
    took = time.monotonic() - killed
    assert 1.0 <= took <= 3 * LEASE_DURATION, f"took over {took:.1f}s after the leader died"
    assert f"Lease {WEBHOOK_NAMESPACE}/{lease} of {follower_id} has expired" in log_of(leader)
    assert replicas.transitions(lease) == transitions + 2


def test_status_is_written_by_whoever_holds_the_lease(
    replicas: Replicas, cluster: Cluster, webhook: WebhookProcess
) -> None:
    session_id = identity_of(webhook)
    assert replicas.holder(DEFAULT_LEASE) == session_id
    standby_id = f"standby-{secrets.token_hex(2)}"
    standby = replicas.start(standby_id)  # the default Lease: campaigns against the session replica
    wait_for(
        lambda: f"Lease {WEBHOOK_NAMESPACE}/{DEFAULT_LEASE} is held by {session_id}" in log_of(standby),
        what="the standby to see the session replica's Lease",
    )
    name = f"{cluster.account}-moved"

    restarted_at = 0
    try:
        webhook.stop()
        assert f"released Lease {WEBHOOK_NAMESPACE}/{DEFAULT_LEASE}" in log_of(webhook)
        replicas.wait_holder(DEFAULT_LEASE, standby_id)
        # Only the standby runs a write side now: this status can only come from it.
        cluster.registry("moved", {"registry": {"server": "moved.example.com"}})
        wait_for(
            lambda: (cluster.get_registry("moved").get("status") or {}).get("observedGeneration") == 1,
            timeout=TIMEOUT,
            what="the standby to write status",
        )
        # The writer logs once its PATCH has returned: the status can be read a moment before.
        wait_for(
            lambda: f"updated status of ChaosImageRegistry {name}" in log_of(standby),
            what="the standby's log line of that status",
        )
    finally:
        # Later tests need the session replica, whatever happened here.
        if webhook.process is None or webhook.process.poll() is not None:
            restarted_at = len(log_of(webhook))
            webhook.start(timeout=40)

    # The session replica is back and follows; the standby stops, releasing: leadership returns.
    session_id = identity_of(webhook)
    wait_for(
        lambda: f"is held by {standby_id}" in log_of(webhook)[restarted_at:],
        what="the restarted session replica to follow the standby",
    )
    standby.stop()
    replicas.wait_holder(DEFAULT_LEASE, session_id)
    wait_for(lambda: leader_gauge(webhook) == 1.0, what="the session replica's leader gauge")
    cluster.patch_registry("moved", {"spec": {"registry": {"server": "again.example.com"}}})
    wait_for(
        lambda: (
            (cluster.get_registry("moved").get("status") or {}).get("effectiveServer") == "again.example.com"
        ),
        timeout=TIMEOUT,
        what="the session replica to write status again",
    )
    # As above: the status can be read a moment before the writer logs its PATCH.
    wait_for(
        lambda: f"updated status of ChaosImageRegistry {name}" in log_of(webhook)[restarted_at:],
        what="the session replica's log line of that status",
    )

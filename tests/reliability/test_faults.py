"""Faults on the real control plane while chaos pods are being created.

* The webhook killed with SIGKILL (and restarted) while pods are created by a creator that retries
  refused creates, as controllers do: with failurePolicy Fail every pod that exists carries
  rewritten images (none slipped through); with Ignore every create is admitted.
* The kube-apiserver restarted (etcd kept) under a running webhook: its watches reconnect, a
  registry change made right after the restart and a namespace created then are both honoured.
* ChaosImageRegistry updated over and over while pods are created: every pod's images come from
  one configuration that existed (no pod mixes two), and the last one wins.
* The serving certificate renewed every few seconds while pods are created: zero failed admissions.

Every test uses its own account, webhook configuration, Lease and (for the certificate) TLS Secret;
the configurations are deleted on exit so that a stopped Fail webhook never blocks another test.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from cryptography import x509

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster, wait_for
from tests.reliability import figures
from tests.reliability.scale import Scale
from tests.reliability.support import (
    ORIGINAL_IMAGES,
    PodCreator,
    all_images,
    fault_pod,
    list_pods,
    rewritten_to,
    running_webhook,
    wait_admitted,
)


def _unchanged(pod: dict[str, Any]) -> bool:
    return ORIGINAL_IMAGES not in (pod["metadata"].get("annotations") or {})


def creating_fault_pods(
    control_plane: ControlPlane, namespace: str, stored: list[dict[str, Any]], *, retry: bool = True
) -> PodCreator:
    """Three threads creating fault pods until stopped; each pod the apiserver stored goes to `stored`."""
    lock = threading.Lock()

    def keep(_index: int, pod: dict[str, Any]) -> None:
        with lock:
            stored.append(pod)

    return PodCreator(
        control_plane,
        namespace,
        lambda i: fault_pod(f"pod-{i}"),
        total=None,
        threads=3,
        retry=retry,
        on_created=keep,
    ).start()


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_webhook_killed_while_pods_are_created(
    policy: str, control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    section = f"webhook killed (-9) while pods are created, failurePolicy {policy}"
    total = reliability_scale.pick(100, 500)
    kills = reliability_scale.pick(1, 3)
    prefix = f"{policy.lower()}.mirror.example:5000/chaos/"
    cluster.registry("root", {"registry": {"server": prefix.split("/")[0], "account": "chaos"}})
    namespace = cluster.namespace()
    downtime = 0.0
    with running_webhook(control_plane, log_dir, failure_policy=policy) as webhook:
        wait_admitted(cluster, namespace, rewritten_to(prefix), what="the webhook to rewrite pods")
        creator = PodCreator(
            control_plane, namespace, lambda i: fault_pod(f"pod-{i}"), total=total, threads=3
        ).start()
        for kill in range(kills):
            target = total * (kill + 1) // (kills + 2)
            wait_for(lambda t=target: creator.created >= t, timeout=180, what=f"{target} pods created")
            before = creator.stats.rejected, creator.created
            webhook.kill()
            down_at = time.monotonic()
            # Let the fault bite: refusals (Fail) or pods admitted without the webhook (Ignore).
            wait_for(
                lambda b=before: (
                    creator.stats.rejected > b[0] + 3
                    or creator.created > b[1] + 3
                    or creator.created >= total
                ),
                timeout=60,
                what="creates while the webhook is down",
            )
            webhook.restart()
            downtime += time.monotonic() - down_at
        creator.join(timeout=600)
        # Back up: pods are rewritten again.
        wait_admitted(cluster, namespace, rewritten_to(prefix), what="the restarted webhook to rewrite pods")
    pods = [pod for pod in list_pods(control_plane, namespace) if pod["metadata"]["name"].startswith("pod-")]
    wrong = [pod["metadata"]["name"] for pod in pods if not rewritten_to(prefix)(pod)]
    unchanged = sum(1 for pod in pods if _unchanged(pod))
    figures.record(section, "pods_created", len(pods))
    figures.record(section, "faults_injected", kills)
    figures.record(section, "creates refused and retried", creator.stats.rejected)
    figures.record(section, "webhook down (s)", round(downtime, 1))
    figures.record(section, "pods admitted without the webhook", unchanged)
    assert len(pods) == total, f"{len(pods)} of {total} pods exist: {creator.stats}"
    if policy == "Fail":
        figures.record(section, "pods_wrong", len(wrong))
        assert not wrong, f"{len(wrong)} pods slipped through unrewritten: {wrong[:5]}"
        assert creator.stats.rejected > 0, "the webhook was never down while pods were created"
        reasons = creator.stats.rejection_reasons
        assert all(key.startswith("500:") and "chaos" in key for key in reasons), reasons
    else:
        figures.record(section, "pods_wrong", 0)  # admitted unchanged is what Ignore means
        assert creator.stats.rejected == 0, f"creates refused under Ignore: {creator.stats.rejection_reasons}"
        assert all(rewritten_to(prefix)(pod) or _unchanged(pod) for pod in pods), "a pod was half rewritten"


def test_apiserver_restart_under_a_running_webhook(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    section = "kube-apiserver restarted (etcd kept) under a running webhook"
    restarts = reliability_scale.pick(1, 3)
    cluster.registry("root", {"registry": {"server": "before.mirror.example", "account": "chaos"}})
    namespace = cluster.namespace()
    outages: list[float] = []
    resyncs: list[float] = []
    created = 0
    with running_webhook(control_plane, log_dir) as webhook:
        wait_admitted(cluster, namespace, rewritten_to("before.mirror.example/chaos/"), what="the webhook")
        for restart in range(restarts):
            # SIGTERM, SIGKILL 3 s later: the webhook's open watches would hold a graceful stop anyway.
            outages.append(control_plane.restart_apiserver(grace=3.0))
            # Changes made through the apiserver right after it is back: a new server, a new namespace.
            server = f"after{restart}.mirror.example"
            wait_for(
                lambda s=server: _try(
                    lambda: cluster.patch_registry("root", {"spec": {"registry": {"server": s}}})
                ),
                timeout=60,
                what="the registry update after the restart",
            )
            fresh = wait_for(
                lambda: _try(cluster.namespace), timeout=60, what="a namespace after the restart"
            )
            began = time.monotonic()
            for target in (namespace, fresh):
                wait_admitted(
                    cluster,
                    target,
                    rewritten_to(f"{server}/chaos/"),
                    timeout=180,
                    what=f"pods in {target} on {server}",
                )
            resyncs.append(time.monotonic() - began)
            # and real pods, all right
            creator = PodCreator(
                control_plane, fresh, lambda i, r=restart: fault_pod(f"after-{r}-{i}"), total=20, retry=False
            )
            creator.start().join(timeout=120)
            assert creator.stats.rejected == 0, creator.stats
            created += creator.created
            wrong = [
                p["metadata"]["name"]
                for p in list_pods(control_plane, fresh)
                if not rewritten_to(f"{server}/chaos/")(p)
            ]
            assert not wrong, wrong
        assert webhook.alive() and webhook.starts == 1, "the webhook had to be restarted"
    figures.record(section, "faults_injected", restarts)
    figures.record(section, "apiserver unavailable (s), longest", round(max(outages), 1))
    figures.record(section, "caches right again after (s), longest", round(max(resyncs), 1))
    figures.record(section, "pods_created", created)
    figures.record(section, "pods_wrong", 0)


def _try(action: Any) -> Any:
    """`action()`, or None while the apiserver still refuses (it may be finishing its start-up)."""
    try:
        return action() or True
    except (kubernetes.client.ApiException, OSError, kubernetes.client.exceptions.ApiException):
        return None
    except Exception as error:  # urllib3 errors while the port is closed
        if "Connection" in type(error).__name__ or "MaxRetry" in type(error).__name__:
            return None
        raise


def _server_and_account(image: str) -> tuple[str, str]:
    server, account, _rest = image.split("/", 2)
    return server, account


def test_registry_updates_while_pods_are_created(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    section = "ChaosImageRegistry updated while pods are created"
    updates = reliability_scale.pick(100, 1000)
    configs: list[tuple[str, str]] = [("c0000.mirror.example", "a0")]
    cluster.registry("root", {"registry": {"server": configs[0][0], "account": configs[0][1]}})
    namespace = cluster.namespace()
    stored: list[dict[str, Any]] = []

    with running_webhook(control_plane, log_dir) as webhook:
        wait_admitted(cluster, namespace, rewritten_to("c0000.mirror.example/a0/"), what="the webhook")
        creator = creating_fault_pods(control_plane, namespace, stored)
        began = time.monotonic()
        for update in range(1, updates + 1):
            config = (f"c{update:04d}.mirror.example", f"a{update % 7}")
            configs.append(config)  # recorded before the change: a pod may see it the moment it is made
            cluster.patch_registry(
                "root", {"spec": {"registry": {"server": config[0], "account": config[1]}}}
            )
        update_seconds = time.monotonic() - began
        last = creator.created
        wait_for(lambda: creator.created >= last + 10, timeout=60, what="pods after the last update")
        creator.stop()
        creator.join(timeout=120)
        final = wait_admitted(
            cluster,
            namespace,
            rewritten_to(f"{configs[-1][0]}/{configs[-1][1]}/"),
            what="the last configuration",
        )
        assert final
        assert webhook.alive()
    known = set(configs)
    used: set[tuple[str, str]] = set()
    mixed: list[str] = []
    unknown: list[str] = []
    for pod in stored:
        seen = {_server_and_account(image) for image in all_images(pod)}
        if len(seen) != 1:
            mixed.append(f"{pod['metadata']['name']}: {sorted(seen)}")
        elif not seen <= known:
            unknown.append(f"{pod['metadata']['name']}: {seen}")
        used |= seen
    figures.record(section, "faults_injected", updates)
    figures.record(section, "updates per second", round(updates / update_seconds, 1))
    figures.record(section, "pods_created", len(stored))
    figures.record(section, "configurations seen in pods", len(used))
    figures.record(section, "pods_wrong", len(mixed) + len(unknown))
    figures.record(section, "creates refused", creator.stats.rejected)
    assert not mixed, f"pods mixing two configurations: {mixed[:5]}"
    assert not unknown, f"pods with a configuration that never existed: {unknown[:5]}"
    assert creator.stats.rejected == 0, creator.stats.rejection_reasons
    assert len(stored) >= 10


def _peer_serial(port: int, ca_bundle: bytes) -> int:
    """The serial of the certificate a new TLS connection gets, verified as the apiserver verifies it."""
    context = ssl.create_default_context(cadata=ca_bundle.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_serving_certificate_rotates_under_load(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    section = "serving certificate rotated under load (self-managed, 8.6 s validity)"
    seconds = reliability_scale.pick(20.0, 60.0)
    server = "rotation.mirror.example"
    cluster.registry("root", {"registry": {"server": server, "account": "chaos"}})
    namespace = cluster.namespace()
    name = f"chaos-registry-rot-{secrets.token_hex(3)}"
    extra = ["--tls-secret", f"{name}-tls", "--cert-validity-days", "0.0001", "--cert-check-interval", "1"]
    stored: list[dict[str, Any]] = []
    serials: list[int] = []
    handshake_failures: list[str] = []

    with running_webhook(control_plane, log_dir, name=name, extra_args=extra) as webhook:
        assert webhook.process is not None
        wait_admitted(cluster, namespace, rewritten_to(f"{server}/chaos/"), what="the webhook")
        bundle = webhook.ca_bundle()
        creator = creating_fault_pods(control_plane, namespace, stored, retry=False)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                serial = _peer_serial(webhook.process.port, bundle)
                if not serials or serials[-1] != serial:
                    serials.append(serial)
            except (ssl.SSLError, OSError) as error:
                handshake_failures.append(str(error))
            time.sleep(0.25)
        creator.stop()
        creator.join(timeout=120)
        assert webhook.ca_bundle() == bundle, "the CA changed: only the serving certificate should rotate"
        loads = webhook.log_text().count("serving certificate loaded")
        assert webhook.alive()
    renewals = loads - 1
    wrong = [pod["metadata"]["name"] for pod in stored if not rewritten_to(f"{server}/chaos/")(pod)]
    figures.record(section, "faults_injected", renewals)
    figures.record(section, "distinct certificates seen by new connections", len(set(serials)))
    figures.record(section, "pods_created", len(stored))
    figures.record(section, "failed admissions", creator.stats.rejected)
    figures.record(section, "pods_wrong", len(wrong))
    figures.record(section, "seconds under load", seconds)
    assert creator.stats.rejected == 0, creator.stats.rejection_reasons
    assert not handshake_failures, handshake_failures[:5]
    assert not wrong, wrong[:5]
    assert renewals >= reliability_scale.pick(2, 6), f"only {renewals} renewals in {seconds}s"
    assert len(set(serials)) >= renewals, f"{len(set(serials))} certificates seen for {renewals} renewals"
    assert len(stored) >= 10


def _first_certificate(bundle: bytes) -> int:
    return x509.load_pem_x509_certificates(bundle)[0].serial_number


def test_certificate_authority_rotates_under_load(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    """The self-managed CA itself renewed under load (17 s lifetime): the caBundle the apiserver trusts
    must hold the new CA before any serving certificate from it is used."""
    section = "certificate authority rotated under load (self-managed, 17 s CA validity)"
    seconds = reliability_scale.pick(25.0, 60.0)
    server = "ca-rotation.mirror.example"
    cluster.registry("root", {"registry": {"server": server, "account": "chaos"}})
    namespace = cluster.namespace()
    name = f"chaos-registry-ca-{secrets.token_hex(3)}"
    extra = [
        "--tls-secret", f"{name}-tls",
        "--ca-validity-days", "0.0002",
        "--cert-validity-days", "0.0001",
        "--cert-check-interval", "1",
    ]  # fmt: skip
    stored: list[dict[str, Any]] = []
    authorities: list[int] = []
    handshake_failures: list[str] = []

    with running_webhook(control_plane, log_dir, name=name, extra_args=extra) as webhook:
        wait_admitted(cluster, namespace, rewritten_to(f"{server}/chaos/"), what="the webhook")
        creator = creating_fault_pods(control_plane, namespace, stored, retry=False)
        assert webhook.process is not None
        deadline = time.monotonic() + seconds
        probes = 0
        while time.monotonic() < deadline:
            # What the apiserver does with a new connection: verify against the published caBundle.
            bundle = webhook.ca_bundle()
            authority = _first_certificate(bundle)
            if not authorities or authorities[-1] != authority:
                authorities.append(authority)
            try:
                _peer_serial(webhook.process.port, bundle)
            except (ssl.SSLError, OSError) as error:
                handshake_failures.append(f"{time.monotonic() - deadline + seconds:.1f}s: {error}")
            probes += 1
        creator.stop()
        creator.join(timeout=120)
        assert webhook.alive()
    wrong = [pod["metadata"]["name"] for pod in stored if not rewritten_to(f"{server}/chaos/")(pod)]
    figures.record(section, "faults_injected", len(authorities) - 1)
    figures.record(section, "pods_created", len(stored))
    figures.record(section, "failed admissions", creator.stats.rejected)
    figures.record(section, "pods_wrong", len(wrong))
    figures.record(section, "seconds under load", seconds)
    figures.record(section, "new connections verified with the published caBundle", probes)
    figures.record(section, "new connections refused", len(handshake_failures))
    assert len(authorities) - 1 >= reliability_scale.pick(1, 3), f"CA renewed {len(authorities) - 1} times"
    assert not handshake_failures, handshake_failures[:5]
    assert creator.stats.rejected == 0, creator.stats.rejection_reasons
    assert not wrong, wrong[:5]

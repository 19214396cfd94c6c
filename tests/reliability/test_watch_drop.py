"""A watch connection silently dropped while chaos pods are created.

The webhook reaches the apiserver through a loopback proxy (`SilentDropProxy`) that, at some point,
stops forwarding without closing anything, as a NAT or load balancer that lost its connection table
does. The webhook must notice within its idle timeout (`--watch-idle-timeout`, 4 s here; 150 s by
default, the apiserver sending a bookmark each minute), list again once the way is back, and apply a
ChaosImageRegistry change made during the drop; /readyz says that it stalled and when it listed
again. Admissions never stop: the apiserver calls the webhook directly, and the webhook answers from
its caches (a pod created during the drop gets the configuration from before it, as during any
watch lag). Pods are created all along by creators that retry a refused create; none may be refused
and none admitted unrewritten.

The watches are kept busy by a heartbeat (a label on one namespace, an annotation on one registry,
changed twice a second) so that a 4 s idle timeout is reached only when the connection is dead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster, wait_for
from tests.reliability import figures
from tests.reliability.scale import Scale
from tests.reliability.support import (
    ORIGINAL_IMAGES,
    PodCreator,
    SilentDropProxy,
    fault_pod,
    list_pods,
    rewritten_to,
    running_webhook,
    wait_admitted,
)

IDLE_TIMEOUT = 4.0
# /readyz while a watch has stalled and not listed again yet ("stalled at T, listed again at T'"
# tells of an earlier one).
STALLED_NOW = "stalled since"


class Heartbeat:
    """Changes one namespace label and one registry annotation every half second until stopped."""

    def __init__(self, cluster: Cluster, namespace: str, registry: str) -> None:
        self.cluster, self.namespace, self.registry = cluster, namespace, registry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            beat = str(self.beats)
            self.cluster.core.patch_namespace(self.namespace, {"metadata": {"labels": {"heartbeat": beat}}})
            self.cluster.patch_registry(self.registry, {"metadata": {"annotations": {"heartbeat": beat}}})
            self.beats += 1


def _stored(stored: list[dict[str, Any]], lock: threading.Lock) -> Any:
    def keep(_index: int, pod: dict[str, Any]) -> None:
        with lock:
            stored.append(pod)

    return keep


def test_watch_connection_silently_dropped(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    section = "watch connection silently dropped (loopback proxy stops forwarding)"
    drops = reliability_scale.pick(1, 3)
    drop_seconds = reliability_scale.pick(7.0, 15.0)
    cluster.registry("root", {"registry": {"server": "before.mirror.example", "account": "chaos"}})
    cluster.registry("heartbeat", {"registry": {"server": "hb.mirror.example"}}, scope=("heartbeat-org",))
    namespace = cluster.namespace()
    beat_namespace = cluster.namespace("heartbeat-org")
    proxy = SilentDropProxy(control_plane.port)
    kubeconfig = proxy.kubeconfig(control_plane.kubeconfig, log_dir / f"proxied-{time.time_ns()}.kubeconfig")
    stored: list[dict[str, Any]] = []
    lock = threading.Lock()
    noticed: list[float] = []
    applied: list[float] = []
    servers = ["before.mirror.example"]
    try:
        with (
            running_webhook(
                control_plane,
                log_dir,
                kubeconfig=kubeconfig,
                extra_args=["--watch-idle-timeout", str(IDLE_TIMEOUT)],
            ) as webhook,
            Heartbeat(cluster, beat_namespace, "heartbeat"),
        ):
            wait_admitted(
                cluster, namespace, rewritten_to("before.mirror.example/chaos/"), what="the webhook"
            )
            # A busy watch never reaches the idle timeout: no stall before the fault.
            time.sleep(IDLE_TIMEOUT + 1.0)
            assert webhook.get("/readyz") == (200, "ready\n")
            creator = PodCreator(
                control_plane,
                namespace,
                lambda i: fault_pod(f"pod-{i}"),
                total=None,
                threads=3,
                on_created=_stored(stored, lock),
            ).start()
            try:
                for drop in range(drops):
                    server = f"during{drop}.mirror.example"
                    proxy.drop()
                    dropped_at = time.monotonic()
                    time.sleep(1.0)
                    # Made while the webhook's connections carry nothing: it can learn of it only
                    # by noticing the drop and listing again once the way is back.
                    cluster.patch_registry("root", {"spec": {"registry": {"server": server}}})
                    servers.append(server)
                    readyz = wait_for(
                        lambda: (lambda answer: answer if STALLED_NOW in answer[1] else None)(
                            webhook.get("/readyz")
                        ),
                        timeout=drop_seconds - 1.5,
                        what="/readyz to tell of the stalled watch",
                        interval=0.2,
                    )
                    noticed.append(time.monotonic() - dropped_at)
                    assert readyz[0] == 200, readyz  # admissions go on from the caches
                    remaining = drop_seconds - (time.monotonic() - dropped_at)
                    time.sleep(max(0.0, remaining))
                    # The change cannot have arrived: every way to the apiserver is cut.
                    assert STALLED_NOW in webhook.get("/readyz")[1]
                    proxy.heal()
                    healed_at = time.monotonic()
                    wait_admitted(
                        cluster,
                        namespace,
                        rewritten_to(f"{server}/chaos/"),
                        timeout=60,
                        what=f"pods on {server}",
                    )
                    applied.append(time.monotonic() - healed_at)
                    status, text = webhook.get("/readyz")
                    assert status == 200 and "listed again at" in text, text
                    time.sleep(2.0)  # pods keep coming on the new configuration
            finally:
                creator.stop()
                creator.join(timeout=60)
            log = webhook.log_text()
            assert "stalled (nothing received for 4 s" in log, "the stall is not in the log"
            assert "listed again after a stall" in log
            status, text = webhook.get("/readyz")
            figures.record(section, "readyz after", text.strip())
    finally:
        proxy.close()
    pods = [pod for pod in list_pods(control_plane, namespace) if pod["metadata"]["name"].startswith("pod-")]
    wrong = [
        p["metadata"]["name"]
        for p in pods
        if ORIGINAL_IMAGES not in (p["metadata"].get("annotations") or {})
        or not any(rewritten_to(f"{s}/chaos/")(p) for s in servers)
    ]
    figures.record(section, "faults_injected", drops)
    figures.record(section, "drop (s)", drop_seconds)
    figures.record(section, "idle timeout (s)", IDLE_TIMEOUT)
    figures.record(section, "stall reported by /readyz after (s), longest", round(max(noticed), 1))
    figures.record(
        section, "change made during the drop applied after heal (s), longest", round(max(applied), 1)
    )
    figures.record(section, "pods_created", len(pods))
    figures.record(section, "creates refused", creator.stats.rejected)
    figures.record(section, "pods_wrong", len(wrong))
    assert creator.stats.rejected == 0, creator.stats.rejection_reasons
    assert not wrong, f"{len(wrong)} pods unrewritten or on an unknown server: {wrong[:5]}"
    assert len(pods) > 0
    # Noticed within the idle timeout (plus the poll and the retry pause), not the watch's deadline.
    assert max(noticed) < IDLE_TIMEOUT + 4.0, noticed

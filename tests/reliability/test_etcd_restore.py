"""etcd restored from a snapshot taken earlier, under a running webhook, while chaos pods are created.

An operator's restore (`ControlPlane.restore_etcd`: kube-apiserver and etcd stopped, the data
replaced by `etcdutl snapshot restore` without a revision bump, both started again): every
resourceVersion the webhook has seen since the snapshot is now "from the future". Its watches must
list again (resuming from a resourceVersion ahead of the server is refused), after which:

* a ChaosImageRegistry created after the snapshot is gone from the caches (pods in its scope go
  back to the registry above it), and a change made after the snapshot is undone;
* the status of a registry whose spec changed just before the snapshot, while the writer was down
  (so the snapshot holds the older status), is rewritten for the restored generation;
* the Lease, restored to a holder that no longer runs, is taken again.

Pods are created all along by creators that retry a refused create. Pods created after the
snapshot are erased by the restore; those that exist at the end must all carry rewritten images.
Pods admitted in the short window between the apiserver's return and the webhook's new listing may
get the configuration from the future: counted, and the window measured.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster, wait_for
from tests.reliability import figures
from tests.reliability.scale import Scale
from tests.reliability.support import (
    ORIGINAL_IMAGES,
    PodCreator,
    fault_pod,
    list_pods,
    rewritten_to,
    running_webhook,
    wait_admitted,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def etcdutl() -> Path:
    """etcdutl built from the Go module proxy on first use (hack/etcdutl.sh), then cached."""
    built = subprocess.run(["bash", str(ROOT / "hack" / "etcdutl.sh")], stdout=subprocess.PIPE, text=True)
    assert built.returncode == 0, "hack/etcdutl.sh failed (see its output above)"
    return Path(built.stdout.strip().splitlines()[-1])


def _status_says(cluster: Cluster, name: str, generation: int, server: str) -> bool:
    try:
        registry = cluster.get_registry(name)
    except Exception:
        return False
    status = registry.get("status") or {}
    return (
        registry["metadata"]["generation"] == generation
        and status.get("observedGeneration") == generation
        and status.get("effectiveServer") == server
    )


def test_etcd_restored_from_an_earlier_snapshot(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, etcdutl: Path, reliability_scale: Scale
) -> None:
    section = "etcd restored from an earlier snapshot (resourceVersions go back)"
    rounds = reliability_scale.pick(1, 2)
    cluster.registry(
        "root", {"allowOverrides": True, "registry": {"server": "past.mirror.example", "account": "chaos"}}
    )
    namespace = cluster.namespace()
    future_namespace = cluster.namespace("future-org")
    stored: list[dict[str, Any]] = []
    lock = threading.Lock()
    outages: list[float] = []
    caches_right: list[float] = []
    statuses_right: list[float] = []
    future_admitted = 0
    snapshot_bytes = 0

    def keep(_index: int, pod: dict[str, Any]) -> None:
        with lock:
            stored.append(pod)

    with running_webhook(
        control_plane, log_dir, writer=True, extra_args=["--resync-interval", "2", "--lease-duration", "4"]
    ) as webhook:
        wait_admitted(cluster, namespace, rewritten_to("past.mirror.example/chaos/"), what="the webhook")
        wait_for(
            lambda: _status_says(cluster, "root", 1, "past.mirror.example"), timeout=60, what="status gen 1"
        )
        creator: PodCreator | None = None
        try:
            for round_ in range(rounds):
                generation = cluster.get_registry("root")["metadata"]["generation"]
                snap_server = f"snap{round_}.mirror.example"
                # The writer down while the spec changes: the snapshot holds a status one generation behind.
                if creator is not None:
                    creator.stop()
                    creator.join(timeout=60)
                webhook.kill()
                cluster.patch_registry("root", {"spec": {"registry": {"server": snap_server}}})
                snapshot = log_dir / f"etcd-{round_}.snapshot"
                snapshot_bytes = control_plane.snapshot_etcd(snapshot)
                webhook.restart()
                wait_admitted(cluster, namespace, rewritten_to(f"{snap_server}/chaos/"), what=snap_server)
                wait_for(
                    lambda g=generation + 1, s=snap_server: _status_says(cluster, "root", g, s),
                    timeout=60,
                    what="the status of the snapshot's generation",
                )
                creator = PodCreator(
                    control_plane,
                    namespace,
                    lambda i, r=round_: fault_pod(f"pod-{r}-{i}"),
                    total=None,
                    threads=3,
                    on_created=keep,
                ).start()
                # After the snapshot: a new registry below root, and root changed again.
                cluster.registry(
                    f"future{round_}",
                    {"registry": {"server": "future.mirror.example", "account": "chaos"}},
                    scope=("future-org",),
                )
                cluster.patch_registry("root", {"spec": {"registry": {"server": "after.mirror.example"}}})
                wait_admitted(cluster, namespace, rewritten_to("after.mirror.example/chaos/"), what="after")
                wait_admitted(
                    cluster, future_namespace, rewritten_to("future.mirror.example/chaos/"), what="the future"
                )
                wait_for(
                    lambda g=generation + 2: _status_says(cluster, "root", g, "after.mirror.example"),
                    timeout=60,
                    what="the status after the snapshot",
                )
                time.sleep(1.0)

                outages.append(control_plane.restore_etcd(snapshot, etcdutl))
                back = time.monotonic()
                with lock:
                    before_restore = len(stored)
                # The restored world: root at the snapshot's generation, no future registry.
                for target in (namespace, future_namespace):
                    wait_admitted(
                        cluster,
                        target,
                        rewritten_to(f"{snap_server}/chaos/"),
                        timeout=120,
                        what=f"pods in {target} back on {snap_server}",
                    )
                caches_right.append(time.monotonic() - back)
                wait_for(
                    lambda g=generation + 1, s=snap_server: _status_says(cluster, "root", g, s),
                    timeout=120,
                    what="the restored registry's status rewritten for its generation",
                )
                statuses_right.append(time.monotonic() - back)
                with pytest.raises(kubernetes.client.ApiException) as gone:
                    cluster.get_registry(f"future{round_}")
                assert gone.value.status == 404
                cluster._registries.remove(f"{cluster.account}-future{round_}")
                with lock:
                    future_admitted += sum(
                        1
                        for pod in stored[before_restore:]
                        if rewritten_to("after.mirror.example/chaos/")(pod)
                    )
                time.sleep(2.0)
        finally:
            if creator is not None:
                creator.stop()
                creator.join(timeout=120)
        # The Lease, restored to a holder that is gone, is held again (statuses were rewritten above).
        assert webhook.alive()
        log = webhook.log_text()
    pods = [pod for pod in list_pods(control_plane, namespace) if pod["metadata"]["name"].startswith("pod-")]
    unrewritten = [
        p["metadata"]["name"] for p in pods if ORIGINAL_IMAGES not in (p["metadata"].get("annotations") or {})
    ]
    figures.record(section, "faults_injected", rounds)
    figures.record(section, "snapshot (bytes)", snapshot_bytes)
    figures.record(section, "apiserver unavailable during the restore (s), longest", round(max(outages), 1))
    figures.record(section, "caches right again after (s), longest", round(max(caches_right), 1))
    figures.record(section, "status rewritten after (s), longest", round(max(statuses_right), 1))
    figures.record(section, "pods_created", len(stored))
    figures.record(section, "pods existing at the end", len(pods))
    figures.record(
        section, "pods admitted with the future configuration before the relisting", future_admitted
    )
    figures.record(section, "creates refused", creator.stats.rejected if creator else 0)
    figures.record(section, "pods_wrong", len(unrewritten))
    assert not unrewritten, f"{len(unrewritten)} pods admitted unrewritten: {unrewritten[:5]}"
    # The restored Lease names the holder killed before the snapshot: taken over, not waited for.
    assert "has expired: taking it over" in log, "the restored Lease was not taken over"

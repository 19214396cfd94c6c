"""The webhook behind the real apiserver: a chaos pod is rewritten, an ordinary pod is not."""

from __future__ import annotations

import time

from tests.e2e.service.conftest import Cluster, images, wait_for


def test_ddcr_fault_pod_is_rewritten_and_ordinary_pod_untouched(cluster: Cluster) -> None:
    cluster.registry("root", {"registry": {"server": "registry.acme.corp:5000/mirror", "account": "harness"}})
    namespace = cluster.namespace()
    time.sleep(0.3)  # the watch delivers the new namespace and registry to the webhook
    fault = wait_for(
        lambda: (
            (pod := cluster.create_pod(namespace, "examples/pods/hce-fault.yaml", dry_run=True))
            and images(pod)["fault"].startswith("registry.acme.corp")
            and pod
        ),
        what="the fault pod to be rewritten",
    )
    assert images(fault) == {
        "log-watcher": "registry.acme.corp:5000/mirror/harness/chaos-log-watcher:1.47.0",
        "fault": "registry.acme.corp:5000/mirror/harness/chaos-ddcr-faults:1.47.0",
    }
    web = cluster.create_pod(namespace, "examples/pods/not-chaos.yaml")
    assert images(web) == {"nginx": "nginx:1.27"}
    assert "chaosregistry.io/scope" not in (web["metadata"].get("annotations") or {})

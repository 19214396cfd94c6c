"""Fixtures of the real-node tier: a kubelet, containerd, the controllers and a local registry.

Every test under tests/node gets the `node` marker. Whatever the tier needs (Debian packages,
the node's binaries, the test images) is installed or built on first use, never skipped. One
node cluster serves the whole session (it is host-global: a second session on this machine waits).

Fixtures:
    test_images   (session)  controlplane.images.TestImages, built once and cached across runs
    registry      (session)  a standalone Registry with users `puller` and `intruder`
    node_cluster  (session)  controlplane.node.NodeCluster: control plane + node + registry
    node_webhook  (session)  `chaos-registry serve` as a local process, a Private
                             ChaosImageRegistry of account `node` at the node's registry
    chaos_namespace (function) a fresh namespace of account `node` (pods there are rewritten)
    plain_namespace (function) a fresh namespace no ChaosImageRegistry covers
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.images import TestImages, build_test_images
from controlplane.node import NodeCluster, install_node_dependencies
from controlplane.registry import Registry
from controlplane.webhook import WebhookProcess

_NODE_DIR = Path(__file__).resolve().parent
REPO = _NODE_DIR.parent.parent
CRD_FILE = REPO / "charts/chaos-registry-webhook/crds/chaosimageregistries.chaosregistry.io.yaml"
WEBHOOK_NAMESPACE = "chaos-system"
PULL_SECRET = "chaos-pull"
ACCOUNT = "node"
PULLER, PULLER_PASSWORD = "puller", "pull-s3cret"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _NODE_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.node)


def _uncaptured(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[Any]:
    # Installs and cold builds take minutes: show their progress live instead of a silent pytest.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()


@pytest.fixture(scope="session")
def node_dependencies(request: pytest.FixtureRequest) -> None:
    with _uncaptured(request):
        install_node_dependencies()


@pytest.fixture(scope="session")
def test_images(node_dependencies: None) -> TestImages:
    return build_test_images()


@pytest.fixture(scope="session")
def registry(node_dependencies: None) -> Iterator[Registry]:
    with Registry(users={PULLER: PULLER_PASSWORD, "intruder": "other-s3cret"}) as started:
        yield started


@pytest.fixture(scope="session")
def node_cluster(request: pytest.FixtureRequest, node_dependencies: None) -> Iterator[NodeCluster]:
    with _uncaptured(request):
        cluster = NodeCluster(registry_users={PULLER: PULLER_PASSWORD, "intruder": "other-s3cret"})
        cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what or check}; last value {last!r}")


def apply(cluster: NodeCluster, manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
    items = manifest if isinstance(manifest, list) else [manifest]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(item) for item in items))


@pytest.fixture(scope="session")
def node_webhook(
    node_cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    cluster = node_cluster
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/chaosimageregistries.chaosregistry.io"
    )
    cluster.kubectl("create", "namespace", WEBHOOK_NAMESPACE)
    apply(cluster, cluster.registry.pull_secret(PULL_SECRET, WEBHOOK_NAMESPACE, user=PULLER))
    apply(cluster, {
        "apiVersion": "chaosregistry.io/v1alpha1", "kind": "ChaosImageRegistry",
        "metadata": {"name": ACCOUNT},
        "spec": {
            "scope": {"account": ACCOUNT},
            "registry": {"server": cluster.registry.host, "account": cluster.account, "type": "Private",
                         "secretName": PULL_SECRET, "secretNamespace": WEBHOOK_NAMESPACE},
            "allowOverrides": True,
        },
    })  # fmt: skip
    log = tmp_path_factory.mktemp("node-webhook") / "serve.log"
    with WebhookProcess(cluster.kubeconfig, log, extra_args=["--resync-interval", "2"]) as process:
        _wait_until_admitting(cluster)
        yield process


def _wait_until_admitting(cluster: NodeCluster) -> None:
    """The apiserver loads new webhook configurations asynchronously: dry-run until ours rewrites."""
    name = f"probe-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"chaosregistry.io/account={ACCOUNT}")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": name, "labels": {"chaosUID": "p"}},
        "spec": {"containers": [{"name": "c", "image": "litmuschaos/go-runner:3.11.0"}]},
    }

    def rewritten() -> bool:
        result = cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod), check=False
        )
        return result.returncode == 0 and cluster.registry.host in result.stdout

    try:
        wait_for(rewritten, timeout=30, what="the apiserver to call the webhook")
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def _namespace(cluster: NodeCluster, prefix: str, labels: dict[str, str]) -> Iterator[str]:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    if labels:
        cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    # ServiceAccount admission rejects pods until the controller manager made `default`.
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"the default ServiceAccount of {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def chaos_namespace(node_cluster: NodeCluster, node_webhook: WebhookProcess) -> Iterator[str]:
    yield from _namespace(node_cluster, "chaos", {"chaosregistry.io/account": ACCOUNT})


@pytest.fixture
def plain_namespace(node_cluster: NodeCluster, node_webhook: WebhookProcess) -> Iterator[str]:
    yield from _namespace(node_cluster, "plain", {})

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.images import TestImages, build_test_images
from controlplane.node import NodeCluster, NodeError, install_node_dependencies
from controlplane.node_webhook import PULL_SECRET, WEBHOOK_NAMESPACE, apply, create_namespace, wait_until
from controlplane.node_webhook import node_webhook as node_webhook_process
from controlplane.registry import Registry
from controlplane.webhook import WebhookProcess

_NODE_DIR = Path(__file__).resolve().parent
__all__ = ["ACCOUNT", "PULLER", "PULL_SECRET", "WEBHOOK_NAMESPACE", "apply", "wait_for"]
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
    try:
        return wait_until(check, timeout, what)
    except NodeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def node_webhook(
    node_cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    log = tmp_path_factory.mktemp("node-webhook") / "serve.log"
    with node_webhook_process(
        node_cluster, log, account=ACCOUNT, user=PULLER, extra_args=["--resync-interval", "2"]
    ) as process:
        yield process


def _namespace(cluster: NodeCluster, prefix: str, labels: dict[str, str]) -> Iterator[str]:
    name = create_namespace(cluster, prefix, labels)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def chaos_namespace(node_cluster: NodeCluster, node_webhook: WebhookProcess) -> Iterator[str]:
    yield from _namespace(node_cluster, "chaos", {"chaosregistry.io/account": ACCOUNT})


@pytest.fixture
def plain_namespace(node_cluster: NodeCluster, node_webhook: WebhookProcess) -> Iterator[str]:
    yield from _namespace(node_cluster, "plain", {})

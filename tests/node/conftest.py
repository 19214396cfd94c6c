"""Fixtures of the real-node tier: a local OCI registry, a kubelet, containerd and controllers.

Every test under tests/node gets the `node` marker. Whatever the tier needs (Debian packages,
the node's binaries, the test images) is installed or built on first use, never skipped.

Fixtures:
    test_images  (session)  controlplane.images.TestImages, built once and cached across runs
    registry     (session)  controlplane.registry.Registry with users `puller` and `intruder`
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.images import TestImages, build_test_images
from controlplane.registry import Registry

_NODE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _NODE_DIR.parent.parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _NODE_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_dependencies(request: pytest.FixtureRequest) -> None:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        result = subprocess.run(["bash", str(_REPO_ROOT / "controlplane" / "install-node-deps.sh")])
    if result.returncode != 0:
        pytest.fail("the node tier's Debian packages are missing (see the line above)", pytrace=False)


@pytest.fixture(scope="session")
def test_images(node_dependencies: None) -> TestImages:
    return build_test_images()


@pytest.fixture(scope="session")
def registry(node_dependencies: None) -> Iterator[Registry]:
    with Registry(users={"puller": "pull-s3cret", "intruder": "other-s3cret"}) as started:
        yield started

"""Fixtures for end-to-end tests against a real kube-apiserver (etcd + apiserver as processes).

Every test under tests/e2e gets the `e2e` marker. The control plane is built on first use if its
binaries are missing (minutes, once), never skipped.

Fixtures:
    control_plane  (session)  controlplane.ControlPlane, started once per test session
    kube_api       (function) kubernetes.client.ApiClient logged in as cluster admin
    namespace      (function) name of a fresh namespace, deleted after the test
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from controlplane import ControlPlane, ensure_binaries

_E2E_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be on the items before `-m e2e` / `-m "not e2e"` deselects.
    for item in items:
        if _E2E_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # A cold build takes minutes: show its progress live instead of a silent pytest.
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        bin_dir = ensure_binaries()
    with ControlPlane(bin_dir) as plane:
        yield plane


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"e2e-{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube_api: kubernetes.client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    # No namespace controller runs, so the namespace stays Terminating with its contents; that
    # is harmless (names are unique, the cluster is thrown away) and keeps teardown instant.
    with contextlib.suppress(kubernetes.client.ApiException):
        core.delete_namespace(name)

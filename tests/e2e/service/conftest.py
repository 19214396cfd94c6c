"""Fixtures for end-to-end tests of `chaos-registry serve` behind the real kube-apiserver.

    crd            (session)  the ChaosImageRegistry CRD applied and Established, namespace chaos-system
    webhook        (session)  one `chaos-registry serve` process registered with failurePolicy Fail
    cluster        (function) a `Cluster` helper: namespaces, registries, pods through the apiserver

Each test uses its own account name (`cluster.account`), so registries of different tests never
resolve for each other's namespaces.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from webhook.core.models import LEVELS

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "charts/chaos-registry-webhook/crds/chaosimageregistries.chaosregistry.io.yaml"
WEBHOOK_NAMESPACE = "chaos-system"
GROUP, VERSION, PLURAL = "chaosregistry.io", "v1alpha1", "chaosimageregistries"

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or check}; last value {last!r}")


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(CRD_FILE))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/chaosimageregistries.chaosregistry.io"
    )
    if control_plane.kubectl("get", "namespace", WEBHOOK_NAMESPACE, check=False).returncode != 0:
        control_plane.kubectl("create", "namespace", WEBHOOK_NAMESPACE)


@pytest.fixture(scope="session")
def webhook(
    control_plane: ControlPlane, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    log = tmp_path_factory.mktemp("webhook") / "serve.log"
    process = WebhookProcess(
        control_plane.kubeconfig, log, extra_args=["--log-level", "debug", "--resync-interval", "2"]
    )
    with process:
        wait_until_admitting(control_plane)
        yield process


def wait_until_admitting(control_plane: ControlPlane) -> None:
    """The apiserver loads new webhook configurations asynchronously: dry-run until ours is called."""
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    name = f"probe-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"chaosregistry.io/account": "probe"}}})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "labels": {"chaosUID": "probe"}},
        "spec": {"containers": [{"name": "c", "image": "litmuschaos/go-runner:1"}]},
    }

    def admitted() -> bool:
        try:
            stored = core.create_namespaced_pod(name, pod, dry_run="All")
        except kubernetes.client.ApiException:
            return False
        return "chaosregistry.io/scope" in (stored.metadata.annotations or {})

    # rewriteUnconfiguredScopes is off: the scope annotation is what shows the webhook was called.
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChaosImageRegistry",
        "metadata": {"name": f"{name}"}, "spec": {"scope": {"account": "probe"}},
    })  # fmt: skip
    try:
        wait_for(admitted, timeout=20, what="the apiserver to call the webhook")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        core.delete_namespace(name)
        api.close()


class Cluster:
    """What a test does through the apiserver, exactly as a chaos platform or a user would."""

    def __init__(self, control_plane: ControlPlane, api: kubernetes.client.ApiClient, account: str) -> None:
        self.control_plane = control_plane
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.account = account
        self._registries: list[str] = []
        self._namespaces: list[str] = []

    def namespace(self, *scope: str, labels: dict[str, str] | None = None) -> str:
        """A namespace bound to `account[/scope...]` of this test (no scope: the account only)."""
        keys = LEVELS[1:]
        all_labels = {"chaosregistry.io/account": self.account}
        all_labels.update({f"chaosregistry.io/{k}": v for k, v in zip(keys, scope, strict=False)})
        all_labels.update(labels or {})
        name = f"{self.account}-{secrets.token_hex(3)}"
        self.core.create_namespace({"metadata": {"name": name, "labels": all_labels}})
        self._namespaces.append(name)
        return name

    def registry(self, name: str, spec: dict[str, Any], scope: tuple[str, ...] = ()) -> dict[str, Any]:
        """Create a ChaosImageRegistry at `account[/scope...]`; `spec` is everything but the scope."""
        keys = LEVELS[1:]
        scope_spec = {"account": self.account, **dict(zip(keys, scope, strict=False))}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ChaosImageRegistry",
            "metadata": {"name": f"{self.account}-{name}"},
            "spec": {"scope": scope_spec, **spec},
        }
        created: dict[str, Any] = self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        self._registries.append(body["metadata"]["name"])
        return created

    def get_registry(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_cluster_custom_object(
            GROUP, VERSION, PLURAL, f"{self.account}-{name}"
        )
        return result

    def patch_registry(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, f"{self.account}-{name}", patch)

    def delete_registry(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, f"{self.account}-{name}")
        self._registries.remove(f"{self.account}-{name}")

    def create_pod(self, namespace: str, pod: dict[str, Any] | str, dry_run: bool = False) -> dict[str, Any]:
        """Create a pod (a dict, or a path of examples/pods) and return what the apiserver stored."""
        if isinstance(pod, str):
            pod = yaml.safe_load((REPO / pod).read_text())
        pod = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
        stored = self.core.create_namespaced_pod(namespace, pod, dry_run="All" if dry_run else None)
        result: dict[str, Any] = self.api.sanitize_for_serialization(stored)
        return result

    def cleanup(self) -> None:
        for name in self._registries:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        for name in self._namespaces:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.core.delete_namespace(name)


@pytest.fixture
def cluster(control_plane: ControlPlane, webhook: WebhookProcess) -> Iterator[Cluster]:
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    helper = Cluster(control_plane, api, account=f"t{secrets.token_hex(4)}")
    try:
        yield helper
    finally:
        helper.cleanup()
        api.close()


def images(pod: dict[str, Any]) -> dict[str, str]:
    """Container name -> image, over init, regular and ephemeral containers."""
    spec = pod["spec"]
    return {
        c["name"]: c["image"]
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    }

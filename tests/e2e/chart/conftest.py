"""Fixtures for end-to-end tests of the Helm chart, in a control plane of their own.

The chart's MutatingWebhookConfiguration (failurePolicy Fail, a Service without endpoints since no
pod runs here) would refuse the chaos pods of every other e2e test, so the chart is installed into
a separate ControlPlane that only these tests use.

    chart_plane  (package)  a ControlPlane for the chart tests alone
    helm         (package)  helm bound to that control plane: helm("install", ...)
    release      (package)  the chart installed by `helm install` as RELEASE into NAMESPACE
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import ControlPlane, ensure_binaries

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "chaos-registry-webhook"
RELEASE = "chart-e2e"
NAMESPACE = "chaos-system-chart"
SOURCE_NAMESPACE = "chart-e2e-sources"
FULLNAME = f"{RELEASE}-chaos-registry-webhook"
SERVICE_ACCOUNT = FULLNAME

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="package")
def chart_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        bin_dir = ensure_binaries()
    # Generous start-up: other engineers' test sessions share this 2-core machine.
    with ControlPlane(bin_dir, startup_timeout=120) as plane:
        yield plane


@pytest.fixture(scope="package")
def helm(chart_plane: ControlPlane) -> Helm:
    def run(*args: str, check: bool = True, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        command = [
            str(chart_plane.bin_dir / "helm"),
            f"--kubeconfig={chart_plane.kubeconfig}",
            # Keep helm's caches and config out of the home folder.
            f"--repository-cache={chart_plane.root_dir / 'helm-cache'}",
            *args,
        ]
        env_dir = chart_plane.root_dir / "helm-home"
        env = {
            "PATH": "/usr/bin:/bin",
            # client-go's discovery cache goes to $HOME/.kube/cache: keep it in the throwaway folder.
            "HOME": str(env_dir),
            "HELM_CACHE_HOME": str(env_dir / "cache"),
            "HELM_CONFIG_HOME": str(env_dir / "config"),
            "HELM_DATA_HOME": str(env_dir / "data"),
        }
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


@dataclass
class Release:
    """The installed chart: its rendered objects and what `helm install` printed."""

    name: str
    namespace: str
    objects: list[dict[str, Any]]
    install_output: subprocess.CompletedProcess[str]

    def find(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]


@pytest.fixture(scope="package")
def release(chart_plane: ControlPlane, helm: Helm) -> Release:
    # The release namespace enforces Pod Security `restricted`: the webhook's own pods must pass it.
    chart_plane.kubectl("create", "namespace", NAMESPACE)
    chart_plane.kubectl(
        "label", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    chart_plane.kubectl("create", "namespace", SOURCE_NAMESPACE)
    installed = helm(
        "install", RELEASE, str(CHART),
        "--namespace", NAMESPACE,
        "--set", f"secretSourceNamespaces={{{SOURCE_NAMESPACE}}}",
        "--set", "logLevel=debug",
    )  # fmt: skip
    manifest = helm("get", "manifest", RELEASE, "--namespace", NAMESPACE).stdout
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    return Release(RELEASE, NAMESPACE, objects, installed)

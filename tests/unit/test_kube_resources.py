"""The service's API requests: paths, and no generated API class on the way (each costs start-up
time and memory; webhook/service/kube/resources.py says how much)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.service.kube.resources import core_path, group_path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SOURCES = sorted((ROOT / "webhook" / "service").rglob("*.py")) + sorted(
    (ROOT / "webhook" / "registrycheck").rglob("*.py")
)
NOT_API_CLASSES = {"ApiClient", "ApiException"}


def test_core_paths() -> None:
    assert core_path("secrets", "chaos-system", "pull-1") == "/api/v1/namespaces/chaos-system/secrets/pull-1"
    assert core_path("configmaps", "chaos-system") == "/api/v1/namespaces/chaos-system/configmaps"
    assert core_path("namespaces") == "/api/v1/namespaces"


def test_group_paths() -> None:
    assert (
        group_path("coordination.k8s.io/v1", "leases", "chaos-system", "leader")
        == "/apis/coordination.k8s.io/v1/namespaces/chaos-system/leases/leader"
    )
    assert group_path("chaosregistry.io/v1alpha1", "chaosimageregistries", name="team-a") == (
        "/apis/chaosregistry.io/v1alpha1/chaosimageregistries/team-a"
    )


def test_names_are_one_path_segment() -> None:
    # Names come from the cluster's objects: a "/" or "?" must not reach another path or a query.
    assert core_path("secrets", "ns", "a/../b?x=1") == "/api/v1/namespaces/ns/secrets/a%2F..%2Fb%3Fx%3D1"


@pytest.mark.parametrize("source", SERVICE_SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_service_uses_no_generated_api_class(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "client"
        and node.attr.endswith("Api")
        and node.attr not in NOT_API_CLASSES
    }
    assert not used, f"{source.name} uses {sorted(used)}: send the request through kube.resources instead"


def test_serve_loads_no_generated_api_module() -> None:
    # Everything serve builds: the state, watches, writer, Lease, certificates and image monitor.
    code = (
        "import sys\n"
        "from kubernetes import client\n"
        "from webhook.service.operator import Runtime\n"
        "from webhook.service.options import ServeOptions\n"
        "options = ServeOptions(namespace='chaos-system', identity='test-0', check_images=True)\n"
        "Runtime(options, client.ApiClient(client.Configuration()))\n"
        "print([m for m in sys.modules if m.startswith('kubernetes.client.api.')])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"

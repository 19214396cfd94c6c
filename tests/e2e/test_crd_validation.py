"""The ChaosImageRegistry CRD against a real kube-apiserver
(docs/contract.md#the-chaosimageregistry-resource).

Applies the chart's CRD, waits until it is Established, then shows that the API server accepts
the example of docs/contract.md#the-chaosimageregistry-resource and refuses every invalid
resource at `kubectl apply` with a message that names the field: the OpenAPI patterns and the CEL
rules (including the transition rule that makes
`spec.scope` immutable) are evaluated by the API server itself, not by our code.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import ControlPlane
from tests.helpers import contract_example

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "charts" / "chaos-registry-webhook" / "crds" / "chaosimageregistries.chaosregistry.io.yaml"
CRD_NAME = "chaosimageregistries.chaosregistry.io"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def spec_example(name: str, account: str) -> dict[str, Any]:
    """The example of docs/contract.md#the-chaosimageregistry-resource, under a name and account
    of its own so tests do not collide."""
    example = contract_example()
    example["metadata"] = {"name": name, "labels": {"test": "crd-validation"}}
    example["spec"]["scope"]["account"] = account
    return example


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> ControlPlane:
    """Install the CRD (idempotent: other e2e modules may have done it) and wait until it serves."""
    control_plane.kubectl("apply", "-f", str(CRD_PATH))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    deadline = time.monotonic() + 60
    while True:  # Established can precede the kind's appearance in kubectl's discovery
        probe = control_plane.kubectl("get", "cir", check=False)
        if probe.returncode == 0:
            break
        assert time.monotonic() < deadline, f"kubectl get cir keeps failing: {probe.stderr}"
        time.sleep(0.5)
    return control_plane


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def cleanup(crd: ControlPlane) -> Iterator[list[str]]:
    """Names of ChaosImageRegistries a test created; deleted afterwards."""
    names: list[str] = []
    yield names
    if names:
        crd.kubectl("delete", "cir", *names, "--ignore-not-found", "--wait=false", check=False)


def apply(
    cluster: ControlPlane, obj: dict[str, Any], *, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=check)


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """kubectl apply failed, and its error names every needle (field paths and messages)."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the API server accepted an invalid resource:\n{output}"
    assert "is invalid" in output, output
    for needle in needles:
        assert needle in output, f"{needle!r} missing from the error:\n{output}"


def get(cluster: ControlPlane, name: str) -> dict[str, Any]:
    result = cluster.kubectl("get", "cir", name, "-o", "json")
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


# ---------------------------------------------------------------------------------------------
# the CRD itself


def test_crd_is_established_and_structural(crd: ControlPlane) -> None:
    result = crd.kubectl("get", "crd", CRD_NAME, "-o", "json")
    conditions = {c["type"]: c for c in json.loads(result.stdout)["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert conditions.get("NonStructuralSchema", {}).get("status") != "True"


def test_short_name_and_category(crd: ControlPlane) -> None:
    resources = crd.kubectl("api-resources", "--api-group=chaosregistry.io", "-o", "wide").stdout
    line = next(row for row in resources.splitlines() if row.startswith("chaosimageregistries"))
    assert " cir " in f" {line} "
    assert "false" in line.split()  # NAMESPACED
    assert "ChaosImageRegistry" in line
    assert "chaos" in line.split()[-1].split(",")  # CATEGORIES
    assert crd.kubectl("get", "chaos").returncode == 0


# ---------------------------------------------------------------------------------------------
# accepted


def test_spec_example_is_accepted(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    name = f"acme-payments-{uid}"
    obj = spec_example(name, f"acme-{uid}")
    apply(crd, obj, check=True)
    cleanup.append(name)
    stored = get(crd, name)
    assert stored["spec"] == obj["spec"]


def test_minimal_resource_gets_defaults(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    name = f"minimal-{uid}"
    obj = {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": name},
        "spec": {"scope": {"account": f"acme-{uid}"}},
    }
    apply(crd, obj, check=True)
    cleanup.append(name)
    assert get(crd, name)["spec"] == {"scope": {"account": f"acme-{uid}"}, "allowOverrides": False}


@pytest.mark.parametrize(
    ("server", "account"),
    [
        ("localhost:5000", ""),
        ("registry:5000", "chaos/harness"),
        ("us-docker.pkg.dev/gar-prod-setup/harness-public", "harness"),
        ("[::1]:5000", "a__b"),
    ],
)
def test_other_valid_registries(
    crd: ControlPlane, cleanup: list[str], uid: str, server: str, account: str
) -> None:
    name = f"valid-{uid}"
    obj = spec_example(name, f"acme-{uid}")
    obj["spec"]["registry"].update(server=server, account=account, type="Public")
    del obj["spec"]["registry"]["secretName"]
    obj["spec"]["customImages"]["images"] = {
        "goRunner": "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:latest",
        "chaosRunner": "litmuschaos/chaos-runner:3.11.0",
        "argoexec": f"localhost:5000/argoproj/argoexec:v3.5.5@{DIGEST}",
        "k8s": f"registry.acme.corp/litmuschaos/k8s@{DIGEST}",
    }
    apply(crd, obj, check=True)
    cleanup.append(name)


# ---------------------------------------------------------------------------------------------
# refused


def test_project_without_organization(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["scope"] = {"account": f"acme-{uid}", "project": "payments"}
    assert_refused(apply(crd, obj), "spec.scope.project", "scope.project requires scope.organization")


def test_infrastructure_without_project(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["scope"] = {"account": f"acme-{uid}", "organization": "retail", "infrastructure": "prod"}
    assert_refused(
        apply(crd, obj), "spec.scope.infrastructure", "scope.infrastructure requires scope.project"
    )


def test_missing_account(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    del obj["spec"]["scope"]["account"]
    assert_refused(apply(crd, obj), "spec.scope.account", "Required value")


def test_bad_scope_identifier(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["scope"]["organization"] = "retail/eu"
    assert_refused(apply(crd, obj), "spec.scope.organization")


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("https://registry.acme.corp", "registry.server must not include a scheme"),
        ("registry.acme.corp:5000/mirror/", "registry.server must not end with a slash"),
        ("myregistry", "registry.server must start with a host that contains a dot or a port"),
        ("myregistry/mirror", "registry.server must start with a host that contains a dot or a port"),
        ("registry.acme.corp/Mirror", "registry.server must be a host, an optional numeric port"),
    ],
)
def test_malformed_server(crd: ControlPlane, uid: str, server: str, message: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["registry"]["server"] = server
    assert_refused(apply(crd, obj), "spec.registry.server", message)


@pytest.mark.parametrize("account", ["Harness", "/harness", "harness/", "chaos//harness"])
def test_bad_registry_account(crd: ControlPlane, uid: str, account: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["registry"]["account"] = account
    assert_refused(apply(crd, obj), "spec.registry.account", 'registry.account must be ""')


def test_private_without_secret_name(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    del obj["spec"]["registry"]["secretName"]
    assert_refused(
        apply(crd, obj), "spec.registry.secretName", "registry.type Private requires registry.secretName"
    )


def test_secret_name_without_type_is_accepted(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    """The type may be inherited from a higher scope: only an explicit Private needs the name here."""
    name = f"notype-{uid}"
    obj = spec_example(name, f"acme-{uid}")
    del obj["spec"]["registry"]["type"]
    del obj["spec"]["registry"]["secretName"]
    apply(crd, obj, check=True)
    cleanup.append(name)


def test_bad_registry_type(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["registry"]["type"] = "private"
    assert_refused(apply(crd, obj), "spec.registry.type", "Unsupported value")


def test_unknown_component(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["customImages"]["images"]["ddcrRunner"] = "registry.acme.corp/chaos/chaos-ddcr:1.47.0"
    assert_refused(
        apply(crd, obj),
        "spec.customImages.images",
        "customImages.images keys must be catalog components: ddcr, logWatcher",
    )


@pytest.mark.parametrize(
    "image",
    [
        "https://registry.acme.corp/chaos/chaos-ddcr:1.47.0",
        "registry.acme.corp/Chaos/chaos-ddcr:1.47.0",
        "registry.acme.corp/chaos/chaos-ddcr:",
        "registry.acme.corp/chaos/chaos-ddcr@sha256:abc",
        "chaos ddcr",
    ],
)
def test_invalid_custom_image(crd: ControlPlane, uid: str, image: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["customImages"]["images"]["ddcr"] = image
    assert_refused(
        apply(crd, obj),
        "spec.customImages.images",
        "customImages.images values must be full image references like "
        "registry.acme.corp/chaos/chaos-ddcr:1.47.0",
    )


def test_unknown_field_is_refused(crd: ControlPlane, uid: str) -> None:
    obj = spec_example(f"bad-{uid}", f"acme-{uid}")
    obj["spec"]["registry"]["isPrivate"] = True
    result = apply(crd, obj)
    assert result.returncode != 0
    assert "isPrivate" in result.stderr


# ---------------------------------------------------------------------------------------------
# updates


def test_scope_is_immutable(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    name = f"immutable-{uid}"
    obj = spec_example(name, f"acme-{uid}")
    apply(crd, obj, check=True)
    cleanup.append(name)

    moved = copy.deepcopy(obj)
    moved["spec"]["scope"]["project"] = "checkout"
    assert_refused(apply(crd, moved), "spec.scope", "scope is immutable: create a new ChaosImageRegistry")

    narrowed = copy.deepcopy(obj)
    del narrowed["spec"]["scope"]["infrastructure"]
    assert_refused(apply(crd, narrowed), "scope is immutable")

    # everything else may change
    changed = copy.deepcopy(obj)
    changed["spec"]["registry"]["server"] = "mirror.acme.corp"
    changed["spec"]["allowOverrides"] = True
    apply(crd, changed, check=True)
    assert get(crd, name)["spec"]["scope"] == obj["spec"]["scope"]
    assert get(crd, name)["spec"]["registry"]["server"] == "mirror.acme.corp"


# ---------------------------------------------------------------------------------------------
# status and printer columns


def status_patch(uid: str, blocked: str) -> dict[str, Any]:
    now = "2025-01-01T00:00:00Z"
    return {
        "status": {
            "observedGeneration": 1,
            "level": "Infrastructure",
            "scope": f"acme-{uid}/retail/payments/prod-ddcr",
            "effectiveServer": "registry.acme.corp:5000/mirror",
            "effectiveType": "Private",
            "conditions": [
                {
                    "type": "Effective",
                    "status": "False",
                    "reason": "Blocked",
                    "message": "blocked",
                    "lastTransitionTime": now,
                    "observedGeneration": 1,
                },
                {
                    "type": "Blocked",
                    "status": blocked,
                    "reason": "LockedByHigherScope",
                    "message": f"a higher scope is blocking: please enable override from acme-{uid}",
                    "lastTransitionTime": now,
                    "observedGeneration": 1,
                },
            ],
        }
    }


def test_printer_columns(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    name = f"columns-{uid}"
    apply(crd, spec_example(name, f"acme-{uid}"), check=True)
    cleanup.append(name)
    crd.kubectl(
        "patch",
        "cir",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status_patch(uid, "True")),
    )

    # The session's webhook may be running: its writer owns status and may rewrite the Blocked
    # condition at any moment. The column must show whatever the stored condition says.
    def stored_status() -> dict[str, Any]:
        status: dict[str, Any] = json.loads(crd.kubectl("get", "cir", name, "-o", "json").stdout)["status"]
        return status

    # Server and type are what is in effect for the scope, as the status says (not the spec's own).
    def row_matches() -> bool:
        for _ in range(50):
            cells = crd.kubectl("get", "cir", name, "--no-headers").stdout.split()
            status = stored_status()
            blocked = next(c["status"] for c in status["conditions"] if c["type"] == "Blocked")
            expected = [name, "Infrastructure", f"acme-{uid}/retail/payments/prod-ddcr"]
            assert cells[:3] == expected
            if cells[3:6] == [status["effectiveServer"], status["effectiveType"], blocked]:
                return True
            time.sleep(0.1)
        return False

    header = crd.kubectl("get", "cir", name).stdout.splitlines()[0]
    assert header.split() == ["NAME", "LEVEL", "SCOPE", "SERVER", "TYPE", "BLOCKED", "IMAGES", "AGE"]
    assert row_matches()

    # every column has priority 0: -o wide adds nothing
    wide = crd.kubectl("get", "cir", name, "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME", "LEVEL", "SCOPE", "SERVER", "TYPE", "BLOCKED", "IMAGES", "AGE"]

    # status is a subresource: a spec update through the main resource keeps it
    changed = spec_example(name, f"acme-{uid}")
    changed["spec"]["registry"]["server"] = "mirror.acme.corp"
    apply(crd, changed, check=True)
    assert row_matches()


def test_status_is_validated(crd: ControlPlane, cleanup: list[str], uid: str) -> None:
    name = f"status-{uid}"
    apply(crd, spec_example(name, f"acme-{uid}"), check=True)
    cleanup.append(name)
    bad = status_patch(uid, "Maybe")
    result = crd.kubectl(
        "patch", "cir", name, "--subresource=status", "--type=merge", "-p", json.dumps(bad), check=False
    )
    assert result.returncode != 0
    assert "status.conditions[1].status" in result.stderr

    bad = status_patch(uid, "True")
    bad["status"]["level"] = "Team"
    result = crd.kubectl(
        "patch", "cir", name, "--subresource=status", "--type=merge", "-p", json.dumps(bad), check=False
    )
    assert result.returncode != 0
    assert "status.level" in result.stderr

"""The in-cluster registry check (`serve --check-images`) against the real kube-apiserver and the
real local TLS + htpasswd registry: the ImagesAvailable condition turns False naming the missing
image (with status.unavailableImages, an Event and the per-scope metric), admission still rewrites
the pod but warns about that image, and everything turns back once the image is pushed.

A control plane of its own: the session webhook of tests/e2e/service writes status without the
check and would remove the condition this test waits for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controlplane import ControlPlane
from controlplane.cluster import ensure_binaries
from controlplane.images import TestImages, build_test_images
from controlplane.node import install_node_dependencies
from controlplane.registry import Registry
from controlplane.webhook import WebhookProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts/chaos-registry-webhook/crds/chaosimageregistries.chaosregistry.io.yaml"
NAMESPACE = "chaos-system"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last value {last!r}")


@pytest.fixture(scope="module")
def images() -> TestImages:
    install_node_dependencies()  # docker-registry, skopeo, umoci (Debian), as the node tier does
    return build_test_images()


@pytest.fixture(scope="module")
def registry(images: TestImages) -> Iterator[Registry]:
    with Registry(users={"puller": "pull-s3cret"}) as started:
        started.push_many(images.busybox, ["mirror/chaos-ddcr:1.0.0", "mirror/go-runner:2.0.0"])
        yield started


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane(ensure_binaries(quiet=True)) as own:
        yield own


def _apply(plane: ControlPlane, *documents: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))


@pytest.fixture(scope="module")
def checking_webhook(
    plane: ControlPlane, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    plane.kubectl("apply", "-f", str(CRD_FILE))
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/chaosimageregistries.chaosregistry.io"
    )
    plane.kubectl("create", "namespace", NAMESPACE)
    releases = {
        "hce": {
            "version": "1.0.0",
            "images": [
                "docker.io/harness/chaos-ddcr:{version}",
                "docker.io/harness/chaos-log-watcher:{version}",
            ],
        },
        "litmus": {"version": "2.0.0", "images": ["docker.io/litmuschaos/go-runner:{version}"]},
    }
    _apply(
        plane,
        registry.pull_secret("pull", NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chaos-registry-defaults", "namespace": NAMESPACE},
            "data": {"config.yaml": yaml.safe_dump({"releases": releases})},
        },
        {
            "apiVersion": "chaosregistry.io/v1alpha1",
            "kind": "ChaosImageRegistry",
            "metadata": {"name": "acme"},
            "spec": {
                "scope": {"account": "acme"},
                "allowOverrides": True,
                "registry": {
                    "server": registry.host,
                    "account": "mirror",
                    "type": "Private",
                    "secretName": "pull",
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "acme-chaos", "labels": {"chaosregistry.io/account": "acme"}},
        },
    )
    log = tmp_path_factory.mktemp("image-check") / "serve.log"
    extra = [
        "--check-images",
        "--check-images-interval",
        "2",
        "--check-images-timeout",
        "5",
        "--registry-ca-file",
        str(registry.ca_file),
        "--resync-interval",
        "2",
    ]
    with WebhookProcess(plane.kubeconfig, log, extra_args=extra) as process:
        yield process


def _status(plane: ControlPlane) -> dict[str, Any]:
    result = plane.kubectl("get", "chaosimageregistry", "acme", "-o", "json")
    status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return status


def _images_condition(plane: ControlPlane) -> dict[str, Any] | None:
    for condition in _status(plane).get("conditions") or []:
        if condition["type"] == "ImagesAvailable":
            return dict(condition)
    return None


def _create_pod(plane: ControlPlane) -> tuple[str, dict[str, Any]]:
    """A fault pod created as HCE would (dry run on the server): kubectl's stderr has the warnings."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fault", "namespace": "acme-chaos"},
        "spec": {
            "containers": [
                {"name": "log-watcher", "image": "harness/chaos-log-watcher:1.0.0"},
                {"name": "fault", "image": "harness/chaos-ddcr:1.0.0"},
            ]
        },
    }
    result = plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
    return result.stderr, json.loads(result.stdout)


def test_images_available_turns_false_then_true_as_the_image_is_pushed(
    plane: ControlPlane, registry: Registry, images: TestImages, checking_webhook: WebhookProcess
):
    host = registry.host
    missing = f"{host}/mirror/chaos-log-watcher:1.0.0"

    condition = wait_for(
        lambda: (c := _images_condition(plane)) and c["status"] == "False" and c, what="ImagesAvailable False"
    )
    assert condition["reason"] == "ImagesMissing"
    assert missing in condition["message"] and "1 of 3 images are not available" in condition["message"]
    assert _status(plane)["unavailableImages"] == [
        {"image": missing, "reason": "missing: manifest unknown (HTTP 404)"}
    ]
    assert "pull-s3cret" not in json.dumps(_status(plane)), "no secret content in status"
    # The registry saw the check read with the pull secret's user.
    assert registry.pulls(user="puller", image="mirror/chaos-ddcr:1.0.0")
    events = plane.kubectl("get", "events.events.k8s.io", "-n", "default", "-o", "json").stdout
    reasons = [(e["reason"], e["regarding"]["name"]) for e in json.loads(events)["items"]]
    assert ("ImagesUnavailable", "acme") in reasons
    _, metrics_text = checking_webhook.get("/metrics")
    assert 'chaos_registry_scope_images_unavailable{scope="acme"} 1.0' in metrics_text
    columns = plane.kubectl("get", "cir", "acme").stdout.splitlines()
    assert columns[0].split() == ["NAME", "LEVEL", "SCOPE", "SERVER", "TYPE", "BLOCKED", "IMAGES", "AGE"]
    assert columns[1].split()[:7] == ["acme", "Account", "acme", host, "Private", "False", "False"]

    # Admission never waits on the check: the pod is rewritten, with a warning naming the image.
    warnings, stored = wait_for(
        lambda: (w := _create_pod(plane)) and "was not available" in w[0] and w, what="the admission warning"
    )
    assert [c["image"] for c in stored["spec"]["containers"]] == [missing, f"{host}/mirror/chaos-ddcr:1.0.0"]
    assert f"image '{missing}' was not available in its registry at the last check (missing:" in warnings
    assert "chaos-ddcr:1.0.0' was not available" not in warnings

    registry.push(images.busybox, "mirror/chaos-log-watcher:1.0.0")

    condition = wait_for(
        lambda: (c := _images_condition(plane)) and c["status"] == "True" and c, what="ImagesAvailable True"
    )
    assert condition["reason"] == "AllImagesPresent"
    assert "unavailableImages" not in _status(plane)
    warnings, _ = wait_for(
        lambda: (w := _create_pod(plane)) and "was not available" not in w[0] and w, what="no warning"
    )
    _, metrics_text = checking_webhook.get("/metrics")
    assert 'chaos_registry_scope_images_unavailable{scope="acme"} 0.0' in metrics_text


def _cli(*argv: str) -> tuple[int, str, str]:
    import io

    from webhook.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cluster_commands_read_the_live_configuration(
    plane: ControlPlane, registry: Registry, checking_webhook: WebhookProcess
):
    host = registry.host
    _apply(
        plane,
        {
            "apiVersion": "chaosregistry.io/v1alpha1",
            "kind": "ChaosImageRegistry",
            "metadata": {"name": "beta"},
            "spec": {
                "scope": {"account": "beta"},
                "registry": {"server": host, "account": "mirror", "type": "Private", "secretName": "absent"},
            },
        },
    )
    cluster = ("--cluster", "--kubeconfig", str(plane.kubeconfig))

    code, out, err = _cli("explain", *cluster, "--namespace", "acme-chaos")
    assert (code, err) == (0, "")
    assert out.splitlines()[:3] == [
        "scope: acme (Account)",
        "registry:",
        f"  server:          {host}  from ChaosImageRegistry/acme",
    ], "the namespace's labels and the registry, read from the cluster"

    code, out, err = _cli("images", *cluster, "--scope", "acme", "-o", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"docker.io/harness/chaos-ddcr:1.0.0 {host}/mirror/chaos-ddcr:1.0.0",
        f"docker.io/harness/chaos-log-watcher:1.0.0 {host}/mirror/chaos-log-watcher:1.0.0",
        f"docker.io/litmuschaos/go-runner:2.0.0 {host}/mirror/go-runner:2.0.0",
    ], "the release lists and versions of the cluster's defaults ConfigMap"

    code, out, err = _cli("check", *cluster, "--ca-file", str(registry.ca_file), "-o", "json")
    assert code == 1
    scopes = {s["scope"]: s for s in json.loads(out)["scopes"]}
    assert scopes["acme"]["secret"] == "chaos-system/pull"
    assert {i["outcome"] for i in scopes["beta"]["images"]} == {"secret-missing"}
    assert scopes["beta"]["images"][0]["detail"] == "Secret chaos-system/absent not found"

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runner", "namespace": "acme-chaos", "labels": {"chaosUID": "u1"}},
        "spec": {
            "containers": [
                {
                    "name": "go-runner",
                    "image": "litmuschaos/go-runner:2.0.0",
                    "env": [{"name": "LIB_IMAGE", "value": "litmuschaos/go-runner:2.0.0"}],
                }
            ]
        },
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(pod))
    code, out, err = _cli("explain", *cluster, "--pod", "acme-chaos/runner")
    assert (code, err) == (0, ""), err
    assert out.splitlines()[:3] == [
        "pod: acme-chaos/runner",
        "admitted under scope: acme (ChaosImageRegistry: acme)",
        "decision now: chaos pod: litmus-experiment-helper-or-probe",
    ]
    assert f"  go-runner: litmuschaos/go-runner:2.0.0 -> {host}/mirror/go-runner:2.0.0 [goRunner]" in out
    assert f"  go-runner/env/LIB_IMAGE: litmuschaos/go-runner:2.0.0 -> {host}/mirror/go-runner:2.0.0" in out
    assert out.endswith("up to date: yes\n")

    code, _, err = _cli("explain", *cluster, "--pod", "acme-chaos/nope")
    assert (code, err) == (1, "error: --pod: Pod acme-chaos/nope not found\n")


def test_check_admission_sees_the_chaos_pod_rewritten_through_the_apiserver(
    plane: ControlPlane, registry: Registry, checking_webhook: WebhookProcess
):
    kubeconfig = ("--kubeconfig", str(plane.kubeconfig))
    expect = ("--expect-registry", f"{registry.host}/mirror")

    code, out, err = _cli("check-admission", *kubeconfig, "--namespace", "acme-chaos", *expect)
    assert (code, err) == (0, ""), err
    assert out.startswith(
        f"ok: a chaos pod in namespace acme-chaos was admitted as {registry.host}/mirror/chaos-runner:3.11.0 "
        "(from litmuschaos/chaos-runner:3.11.0) after 1 attempt(s)"
    )

    pods = plane.kubectl("get", "pods", "-n", "acme-chaos", "-o", "name")
    assert "chaos-registry-admission-check" not in pods.stdout, "a dry run: nothing is created"

    # A namespace no registry covers: the pod comes back as it was sent, until the timeout.
    plane.kubectl("create", "namespace", "uncovered")
    code, out, err = _cli(
        "check-admission", *kubeconfig, "--namespace", "uncovered", *expect, "--timeout", "0"
    )
    assert (code, out) == (1, "")
    assert err == (
        "chaos-registry check-admission: error: after 1 attempt(s) in 0 s: the chaos pod came back unchanged "
        f"(litmuschaos/chaos-runner:3.11.0), not rewritten to {registry.host}/mirror/chaos-runner:3.11.0\n"
    )

    # The apiserver's refusal, in its own words, at once.
    code, out, err = _cli("check-admission", *kubeconfig, "--namespace", "absent", *expect)
    assert (code, out) == (1, "")
    assert err == (
        "chaos-registry check-admission: error: the API server refused the chaos pod: "
        'HTTP 404: namespaces "absent" not found\n'
    )

"""Proof that the local control plane is a real Kubernetes API: admission webhooks, CEL, RBAC.

Also covers its lifecycle: a second cluster starts cleanly after the first, nothing keeps running
afterwards, and start-up failures raise ControlPlaneError without leaving processes behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from controlplane import ControlPlane, ControlPlaneError, ensure_binaries, processes_under
from tests.helpers import (
    WebhookServer,
    json_patch_response,
    mutating_webhook_configuration,
    pod_manifest,
    refused_port,
    wait_until,
    webhook_entry,
)

MIRROR = "mirror.registry.test/chaos"
STARTUP_BUDGET_SECONDS = 15.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def _core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture
def webhook_configs(kube_api) -> Iterator[list[str]]:
    """Names appended here are MutatingWebhookConfigurations deleted after the test."""
    names: list[str] = []
    yield names
    admission = kubernetes.client.AdmissionregistrationV1Api(kube_api)
    for name in names:
        try:
            admission.delete_mutating_webhook_configuration(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _register(kube_api, webhook_configs: list[str], name: str, webhooks: list[dict[str, Any]]) -> None:
    kubernetes.client.AdmissionregistrationV1Api(kube_api).create_mutating_webhook_configuration(
        mutating_webhook_configuration(name, webhooks)
    )
    webhook_configs.append(name)


def _mirror_images(request: dict[str, Any]) -> dict[str, Any]:
    """Webhook logic for the tests: point every container image at MIRROR, label the pod."""
    pod = request["object"]
    ops: list[dict[str, Any]] = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod["spec"].get(field) or []):
            if not container["image"].startswith(MIRROR):
                ops.append(
                    {
                        "op": "replace",
                        "path": f"/spec/{field}/{index}/image",
                        "value": f"{MIRROR}/{container['image']}",
                    }
                )
    if request["operation"] == "CREATE":
        if not pod["metadata"].get("labels"):
            ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
        ops.append({"op": "add", "path": "/metadata/labels/e2e.mirrored", "value": "yes"})
    return json_patch_response(ops)


def _dry_run_pod(kube_api, namespace: str, name: str = "probe") -> Any:
    """Create a pod with dryRun=All: runs admission (webhooks included) without storing it."""
    return _core(kube_api).create_namespaced_pod(namespace, pod_manifest(name), dry_run="All")


# -- the API is real ----------------------------------------------------------------------------------


def test_pod_is_created_and_stays_pending(control_plane, kube_api, namespace):
    core = _core(kube_api)
    core.create_namespaced_pod(namespace, pod_manifest("sleeper"))

    pod = core.read_namespaced_pod("sleeper", namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None  # no scheduler runs
    listed = control_plane.kubectl("get", "pods", "-n", namespace, "-o", "json")
    assert [item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]] == ["sleeper"]


def test_rbac_is_enforced(control_plane, namespace):
    # The admin certificate is in system:masters; anyone else gets only what RBAC grants.
    admin = control_plane.kubectl("auth", "can-i", "create", "pods", "-n", namespace)
    assert admin.stdout.strip() == "yes"
    stranger = control_plane.kubectl(
        "auth", "can-i", "create", "pods", "-n", namespace, "--as=stranger", check=False
    )
    assert stranger.stdout.strip() == "no"


def test_server_reports_pinned_version(control_plane):
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"


# -- mutating admission webhooks ------------------------------------------------------------------------


def test_mutating_webhook_is_called_and_its_json_patch_applied(kube_api, namespace, webhook_configs):
    with WebhookServer(_mirror_images) as hook:
        _register(
            kube_api,
            webhook_configs,
            f"{namespace}-mirror",
            [webhook_entry("mirror.e2e.test", hook.url("/mutate"), hook.ca_bundle, namespace=namespace)],
        )
        # The apiserver loads new webhook configurations asynchronously.
        wait_until(
            lambda: _dry_run_pod(kube_api, namespace).spec.containers[0].image.startswith(MIRROR),
            what="the webhook configuration to take effect",
        )

        created = _core(kube_api).create_namespaced_pod(namespace, pod_manifest("chaos-runner"))

        assert created.spec.containers[0].image == f"{MIRROR}/busybox:1.36"
        assert created.metadata.labels == {"e2e.mirrored": "yes"}
        stored = _core(kube_api).read_namespaced_pod("chaos-runner", namespace)
        assert stored.spec.containers[0].image == f"{MIRROR}/busybox:1.36"
        real_calls = [req for path, req in hook.reviews if not req["dryRun"]]
        assert len(real_calls) == 1
        path = hook.reviews[-1][0]
        assert path == "/mutate"
        assert real_calls[0]["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
        assert real_calls[0]["operation"] == "CREATE"
        assert real_calls[0]["namespace"] == namespace
        assert real_calls[0]["userInfo"]["username"] == "admin"


def test_webhook_mutates_ephemeral_containers(kube_api, namespace, webhook_configs):
    core = _core(kube_api)
    core.create_namespaced_pod(namespace, pod_manifest("target"))
    with WebhookServer(_mirror_images) as hook:
        entry = webhook_entry(
            "ephemeral.e2e.test",
            hook.url("/mutate"),
            hook.ca_bundle,
            namespace=namespace,
            resources=["pods/ephemeralcontainers"],
            operations=["UPDATE"],
        )
        _register(kube_api, webhook_configs, f"{namespace}-ephemeral", [entry])

        def add_debug_container(index: int) -> Any:
            pod = core.read_namespaced_pod("target", namespace)
            containers = [c.to_dict() for c in pod.spec.ephemeral_containers or []]
            containers.append({"name": f"debug-{index}", "image": "busybox:1.36", "command": ["sh"]})
            # The body of the ephemeralcontainers subresource is the whole Pod.
            pod.spec.ephemeral_containers = containers
            return core.replace_namespaced_pod_ephemeralcontainers("target", namespace, pod)

        attempts = iter(range(100))
        # Each try adds a container; retry until one was mutated (the config loads async).
        patched = wait_until(
            lambda: any(
                c.image.startswith(MIRROR)
                for c in add_debug_container(next(attempts)).spec.ephemeral_containers
            ),
            what="the ephemeralcontainers webhook to take effect",
        )
        assert patched
        subresources = {req["subResource"] for _, req in hook.reviews}
        assert subresources == {"ephemeralcontainers"}


def test_failure_policy_fail_rejects_pods_when_the_webhook_is_down(kube_api, namespace, webhook_configs):
    with refused_port() as port:
        ca_bundle = WebhookServer().ca_bundle  # a valid bundle; nothing ever answers on the port
        _register(
            kube_api,
            webhook_configs,
            f"{namespace}-down",
            [
                webhook_entry(
                    "down.e2e.test", f"https://127.0.0.1:{port}/mutate", ca_bundle, namespace=namespace
                )
            ],
        )

        def rejected() -> ApiException | None:
            try:
                _dry_run_pod(kube_api, namespace)
            except ApiException as exc:
                return exc
            return None

        wait_until(rejected, what="the webhook configuration to take effect")
        with pytest.raises(ApiException) as caught:
            _core(kube_api).create_namespaced_pod(namespace, pod_manifest("refused"))

    message = json.loads(caught.value.body)["message"]
    assert caught.value.status == 500
    assert 'failed calling webhook "down.e2e.test"' in message
    assert "connection refused" in message
    assert _core(kube_api).list_namespaced_pod(namespace).items == []


def test_failure_policy_ignore_admits_pods_when_the_webhook_is_down(kube_api, namespace, webhook_configs):
    with WebhookServer(_mirror_images) as hook, refused_port() as port:
        # One configuration, two webhooks: the live one proves the configuration is in effect,
        # the dead one (Ignore) must not block the pod.
        _register(
            kube_api,
            webhook_configs,
            f"{namespace}-ignore",
            [
                webhook_entry("live.e2e.test", hook.url("/mutate"), hook.ca_bundle, namespace=namespace),
                webhook_entry(
                    "down.e2e.test",
                    f"https://127.0.0.1:{port}/mutate",
                    hook.ca_bundle,
                    namespace=namespace,
                    failure_policy="Ignore",
                ),
            ],
        )
        wait_until(
            lambda: (_dry_run_pod(kube_api, namespace).metadata.labels or {}).get("e2e.mirrored") == "yes",
            what="the webhook configuration to take effect",
        )

        created = _core(kube_api).create_namespaced_pod(namespace, pod_manifest("admitted"))

    assert created.metadata.labels == {"e2e.mirrored": "yes"}
    assert _core(kube_api).read_namespaced_pod("admitted", namespace).status.phase == "Pending"


# -- CRDs with CEL validation ---------------------------------------------------------------------------


def test_crd_cel_validation_rejects_bad_objects(control_plane, kube_api, namespace):
    group = f"e2e-{secrets.token_hex(3)}.chaos-registry.test"
    crd_name = f"widgets.{group}"
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=textwrap.dedent(
            f"""\
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: {crd_name}
            spec:
              group: {group}
              scope: Namespaced
              names: {{plural: widgets, singular: widget, kind: Widget}}
              versions:
                - name: v1
                  served: true
                  storage: true
                  schema:
                    openAPIV3Schema:
                      type: object
                      properties:
                        spec:
                          type: object
                          required: [replicas, maxReplicas]
                          properties:
                            replicas: {{type: integer}}
                            maxReplicas: {{type: integer}}
                          x-kubernetes-validations:
                            - rule: self.replicas <= self.maxReplicas
                              message: replicas must not exceed maxReplicas
            """
        ),
    )
    try:
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=30s")
        objects = kubernetes.client.CustomObjectsApi(kube_api)

        def widget(name: str, replicas: int, max_replicas: int) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "maxReplicas": max_replicas},
            }

        # Established can precede the REST handler by a moment.
        wait_until(
            lambda: objects.create_namespaced_custom_object(
                group, "v1", namespace, "widgets", widget("good", 1, 3)
            ),
            what="the Widget resource to be served",
        )
        with pytest.raises(ApiException) as caught:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets", widget("bad", 5, 3))

        assert caught.value.status == 422
        assert "replicas must not exceed maxReplicas" in json.loads(caught.value.body)["message"]
        names = [
            item["metadata"]["name"]
            for item in objects.list_namespaced_custom_object(group, "v1", namespace, "widgets")["items"]
        ]
        assert names == ["good"]
    finally:
        control_plane.kubectl("delete", "crd", crd_name, "--wait=false", "--ignore-not-found", check=False)


# -- lifecycle --------------------------------------------------------------------------------------------


def test_a_second_control_plane_starts_after_the_first_and_nothing_is_left(control_plane):
    # Both run while the session's control plane is up too: three clusters, no port clash.
    first = ControlPlane(control_plane.bin_dir)
    with first:
        first_root, first_port = first.root_dir, first.port
        assert first.kubectl("get", "namespace", "default").returncode == 0
    assert not first_root.exists()
    assert processes_under(first_root) == []

    with ControlPlane(control_plane.bin_dir) as second:
        second_root = second.root_dir
        assert second_root != first_root
        assert len({second.port, first_port, control_plane.port}) == 3
        second.kubectl("create", "namespace", "again")
        assert second.kubectl("get", "namespace", "again", "-o", "name").stdout.strip() == "namespace/again"
        startup = second.startup_seconds
    assert not second_root.exists()
    assert processes_under(second_root) == []
    assert startup is not None and startup < STARTUP_BUDGET_SECONDS, f"start-up took {startup:.1f}s"


def test_processes_die_with_the_python_process_that_started_them(control_plane, tmp_path):
    root = tmp_path / "cluster"
    script = textwrap.dedent(
        f"""\
        import os, signal, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from controlplane import ControlPlane
        plane = ControlPlane(Path({str(control_plane.bin_dir)!r}), root_dir=Path({str(root)!r})).start()
        print("up", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code gets to run
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "up", result.stderr
    assert result.returncode == -signal.SIGKILL
    wait_until(lambda: processes_under(root) == [], timeout=10, what="orphaned etcd/apiserver to die")


def test_a_process_dying_at_start_up_raises_with_its_log_and_leaves_nothing(control_plane, tmp_path):
    root = tmp_path / "cluster"
    plane = ControlPlane(control_plane.bin_dir, root_dir=root, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as caught:
        plane.start()

    message = str(caught.value)
    assert message.splitlines()[0].startswith("kube-apiserver exited with code 1 while starting")
    assert "unknown flag: --no-such-flag" in message  # from the apiserver's own log
    assert processes_under(root) == []
    assert not root.exists()


def test_a_port_in_use_raises(control_plane):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ControlPlaneError, match=rf"port {port} on 127.0.0.1 is in use"):
            ControlPlane(control_plane.bin_dir, port=port).start()


def test_missing_go_is_reported_when_binaries_must_be_built(tmp_path, monkeypatch):
    # Only bash and dirname on PATH: build.sh gets as far as looking for Go.
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "dirname"):
        found = subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip()
        os.symlink(found, tools / tool)
    monkeypatch.setenv("PATH", str(tools))

    started = time.monotonic()
    with pytest.raises(ControlPlaneError, match="no Go toolchain on PATH: install Go"):
        ensure_binaries(cache_dir=tmp_path / "empty-cache", quiet=True)
    assert time.monotonic() - started < 10

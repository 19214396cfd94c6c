"""Tenancy and secrets: a tenant cannot reach another scope's registry or pull secret, locks hold, and
Secret contents never leave the Secrets.

The tenant is a real user: a client certificate signed by the control plane's client CA, with RBAC
allowing only `create`/`get` of pods in their namespace (plus `update`/`patch` of
pods/ephemeralcontainers there, to try the ephemeral-container route). Whatever they put on a pod
(scope labels, the chaosregistry.io/scope and original-images annotations, images and pull-secret
names of another scope, an ephemeral container), the pod follows the registry of their namespace's
scope and gets only that scope's pull secret. Secret copies go only to namespaces bound to a
Private scope that names the Secret. A recognisable random value in every source Secret never
appears in the serve log (at debug level), in Events, in any ChaosImageRegistry status, in
/metrics, or in the warnings of admission responses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import kubernetes
import orjson
import pytest

from controlplane import ControlPlane
from tests.e2e.service.conftest import GROUP, PLURAL, VERSION, WEBHOOK_NAMESPACE, Cluster, wait_for
from tests.reliability import figures
from tests.reliability.support import (
    SCOPE_ANNOTATION,
    ManagedWebhook,
    all_images,
    fault_pod,
    new_api,
    post_reviews,
    rewritten_to,
    running_webhook,
    wait_admitted,
)

SECTION = "tenancy and secrets"
MANAGED_BY = "app.kubernetes.io/managed-by"


class Tenancy:
    """The scopes of the test, their source Secrets (each with a marker value) and namespaces."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.markers: list[str] = []
        self.secret_names: list[str] = []
        self.locked_account = f"{cluster.account}l"

    def source_secret(self, name: str) -> str:
        """A dockerconfigjson Secret in the webhook's namespace whose password is a fresh marker."""
        marker = f"MARKER{secrets.token_hex(16)}"
        auth = base64.b64encode(f"robot:{marker}".encode()).decode()
        config = {"auths": {"reg": {"username": "robot", "password": marker, "auth": auth}}}
        value = base64.b64encode(json.dumps(config).encode()).decode()
        self.markers.extend((marker, auth, value))
        self.cluster.core.create_namespaced_secret(
            WEBHOOK_NAMESPACE,
            {
                "metadata": {"name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": value},
            },
        )
        self.secret_names.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.secret_names:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.cluster.core.delete_namespaced_secret(name, WEBHOOK_NAMESPACE)


def _registry(server: str, secret: str | None = None, **extra: Any) -> dict[str, Any]:
    registry: dict[str, Any] = {"server": server, "account": "chaos"}
    if secret:
        registry.update(type="Private", secretName=secret)
    return {"registry": registry, **extra}


def _grant_pods(cluster: Cluster, namespace: str, user: str) -> None:
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pods-only"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]},
                {
                    "apiGroups": [""],
                    "resources": ["pods/ephemeralcontainers"],
                    "verbs": ["get", "update", "patch"],
                },
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pods-only"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods-only"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def _kubectl(
    control_plane: ControlPlane, kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(control_plane.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _secret_names(cluster: Cluster, namespace: str) -> set[str]:
    return {s.metadata.name for s in cluster.core.list_namespaced_secret(namespace).items}


def _spoofing_pods(
    victim_scope: dict[str, str], victim_prefix: str, victim_secret: str
) -> list[dict[str, Any]]:
    """Pods that claim the victim's scope every way a pod author can."""
    labels = {f"chaosregistry.io/{key}": value for key, value in victim_scope.items()}
    by_labels = fault_pod("by-labels")
    by_labels["metadata"]["labels"].update(labels)
    by_annotations = fault_pod("by-annotations")
    by_annotations["metadata"]["annotations"] = {
        SCOPE_ANNOTATION: json.dumps({"scope": "/".join(victim_scope.values()), "registries": ["victim"]}),
        # "these images are already right": the victim's mirror, recorded as the originals
        "chaosregistry.io/original-images": json.dumps(
            {
                "log-watcher": f"{victim_prefix}chaos-log-watcher:1.47.0",
                "fault": f"{victim_prefix}chaos-ddcr-faults:1.47.0",
            }
        ),
    }
    for container in by_annotations["spec"]["containers"]:
        container["image"] = victim_prefix + container["image"].rsplit("/", 1)[-1]
    by_secret = fault_pod("by-pull-secret")
    by_secret["spec"]["imagePullSecrets"] = [{"name": victim_secret}]
    by_secret["spec"]["containers"][0]["image"] = f"{victim_prefix}chaos-log-watcher:1.47.0"
    return [by_labels, by_annotations, by_secret]


def test_tenant_cannot_reach_another_scope(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path
) -> None:
    account = cluster.account
    tenancy = Tenancy(cluster)
    team_secret = tenancy.source_secret(f"{account}-team-pull")
    victim_secret = tenancy.source_secret(f"{account}-victim-pull")
    locked_secret = tenancy.source_secret(f"{account}-locked-pull")
    sneaky_secret = tenancy.source_secret(f"{account}-sneaky-pull")
    team_prefix, victim_prefix = "team.mirror.example/chaos/", "victim.mirror.example/chaos/"
    locked_prefix = "locked.mirror.example/chaos/"
    cluster.registry("root", {**_registry("tenant.mirror.example"), "allowOverrides": True})
    cluster.registry("team", _registry("team.mirror.example", team_secret), scope=("org", "team"))
    cluster.registry("victim", _registry("victim.mirror.example", victim_secret), scope=("org", "victim"))
    team_ns = cluster.namespace("org", "team")
    victim_ns = cluster.namespace("org", "victim")
    public_ns = cluster.namespace("org", "other")  # account-level: Public, no pull secret
    # A locked account: its project-level resource (another registry, custom images, its own secret)
    # must change nothing.
    locked = Cluster(control_plane, cluster.api, tenancy.locked_account)
    locked.registry(
        "root",
        {
            **_registry("locked.mirror.example", locked_secret),
            "allowOverrides": False,
            # custom images on, with one for ddcr only: the other components earn a warning
            "customImages": {
                "enabled": True,
                "images": {"ddcr": "locked.mirror.example/chaos/chaos-ddcr:1.47.0"},
            },
        },
    )
    locked.registry(
        "sneaky",
        {
            **_registry("sneaky.mirror.example", sneaky_secret),
            "allowOverrides": True,
            "customImages": {
                "enabled": True,
                "images": {"ddcrFault": "sneaky.mirror.example/x/chaos-ddcr-faults:6.6.6"},
            },
        },
        scope=("org", "proj"),
    )
    locked_ns = locked.namespace("org", "proj")
    user = f"tenant-{secrets.token_hex(3)}"
    _grant_pods(cluster, team_ns, user)
    kubeconfig = control_plane.user_kubeconfig(user)
    tenant_api = new_api(control_plane, kubeconfig)
    tenant = kubernetes.client.CoreV1Api(tenant_api)
    warnings: list[str] = []
    checks = 0
    try:
        with running_webhook(control_plane, log_dir, writer=True, log_level="debug") as webhook:
            wait_admitted(
                cluster, team_ns, rewritten_to(team_prefix), what="the webhook in the team namespace"
            )
            wait_admitted(
                locked, locked_ns, rewritten_to(locked_prefix), what="the webhook in the locked namespace"
            )

            # 1. Scope claimed by labels, by annotations, by the victim's images and secret name.
            for pod in _spoofing_pods(
                {"account": account, "organization": "org", "project": "victim"}, victim_prefix, victim_secret
            ):
                stored = tenant_api.sanitize_for_serialization(tenant.create_namespaced_pod(team_ns, pod))
                name = pod["metadata"]["name"]
                assert rewritten_to(team_prefix)(stored), f"{name}: {all_images(stored)}"
                assert team_secret in [s["name"] for s in stored["spec"]["imagePullSecrets"]], name
                scope = json.loads(stored["metadata"]["annotations"][SCOPE_ANNOTATION])
                assert scope["scope"] == f"{account}/org/team", f"{name}: {scope}"
                assert f"{account}-victim" not in scope["registries"]
                checks += 1

            # 2. An ephemeral container with the victim's image, added through the subresource.
            tenant.create_namespaced_pod(team_ns, fault_pod("debug-me"))
            debug = {"name": "debug", "image": f"{victim_prefix}chaos-ddcr:1.47.0", "stdin": True}
            patched = tenant.patch_namespaced_pod_ephemeralcontainers(
                "debug-me", team_ns, {"spec": {"ephemeralContainers": [debug]}}
            )
            stored = tenant_api.sanitize_for_serialization(patched)
            assert stored["spec"]["ephemeralContainers"][0]["image"] == f"{team_prefix}chaos-ddcr:1.47.0", (
                stored["spec"]
            )
            checks += 1

            # 3. RBAC holds: no pods in the victim's namespace, no registries, no relabelling.
            for forbidden in (
                lambda: tenant.create_namespaced_pod(victim_ns, fault_pod("intruder")),
                lambda: kubernetes.client.CustomObjectsApi(tenant_api).create_cluster_custom_object(
                    GROUP,
                    VERSION,
                    PLURAL,
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "ChaosImageRegistry",
                        "metadata": {"name": f"{user}-mine"},
                        "spec": {"scope": {"account": account, "organization": "org", "project": "team"}},
                    },
                ),
                lambda: tenant.patch_namespace(
                    team_ns, {"metadata": {"labels": {"chaosregistry.io/project": "victim"}}}
                ),
                lambda: tenant.read_namespaced_secret(team_secret, team_ns),
            ):
                with pytest.raises(kubernetes.client.ApiException) as refused:
                    forbidden()
                assert refused.value.status == 403, refused.value
                checks += 1

            # 4. The lock: the project-level resource below it changes nothing.
            stored = locked.create_pod(locked_ns, fault_pod("locked"))
            assert rewritten_to(locked_prefix)(stored), all_images(stored)
            assert [s["name"] for s in stored["spec"]["imagePullSecrets"]] == [locked_secret]
            checks += 1

            # 5. Secret copies: only into namespaces bound to the scope that names the Secret.
            expected = {
                team_ns: {team_secret},
                victim_ns: {victim_secret},
                locked_ns: {locked_secret},
                public_ns: set(),
            }
            ours = set(tenancy.secret_names)

            def copies() -> dict[str, set[str]] | None:
                found = {ns: _secret_names(cluster, ns) & ours for ns in expected}
                return found if found == expected else None

            wait_for(copies, timeout=60, interval=0.3, what=f"Secret copies exactly {expected}")
            copy = cluster.core.read_namespaced_secret(team_secret, team_ns)
            assert copy.metadata.labels[MANAGED_BY] == "chaos-registry-webhook"
            checks += 1

            # 6. Warnings of admission responses, for pods of every namespace (through the tenant's
            # kubectl, which prints them, and straight to the webhook for the others).
            result = _kubectl(
                control_plane, kubeconfig, "create", "-n", team_ns, "-f", "-", "-o", "json",
                stdin=json.dumps(_warned_pod("warned")),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            warnings.extend(line for line in result.stderr.splitlines() if "Warning" in line)
            warnings.extend(_direct_warnings(webhook, [team_ns, victim_ns, locked_ns, public_ns]))
            assert any("UPPER/Case" in w for w in warnings) and any("has none" in w for w in warnings), (
                warnings
            )
            blocked = _wait_blocked(locked)
            checks += 1

            # 7. Nowhere a marker: the serve log, Events, statuses, /metrics, warnings, ConfigMaps.
            places = [*_places_to_look(cluster, webhook), ("admission warnings", "\n".join(warnings))]
            leaks = [
                (where, marker) for where, text in places for marker in tenancy.markers if marker in text
            ]
            assert not leaks, f"secret content found in: {sorted({where for where, _ in leaks})}"
            assert webhook.log_text().count("admission uid=") >= 10, (
                "the serve log has no debug lines to search"
            )
            assert "Blocked" in blocked
            checks += 1
    finally:
        tenant_api.close()
        locked.cleanup()
        tenancy.cleanup()
    figures.record(SECTION, "attacks and checks passed", checks)
    figures.record(SECTION, "inputs_tried", checks)
    figures.record(SECTION, "places searched for secret content", len(places))
    figures.record(SECTION, "secret markers searched", len(tenancy.markers))
    figures.record(SECTION, "pods_created", 6)
    figures.record(SECTION, "pods_wrong", 0)


def _warned_pod(name: str) -> dict[str, Any]:
    """A chaos pod that earns warnings: an image that cannot be parsed, a component without a custom image."""
    pod = fault_pod(name)
    pod["spec"]["containers"].append({"name": "odd", "image": "UPPER/Case:1"})
    pod["spec"]["containers"].append({"name": "runner", "image": "harness/chaos-ddcr:1.47.0"})
    return pod


def _direct_warnings(webhook: ManagedWebhook, namespaces: list[str]) -> list[str]:
    """Warnings of the webhook's answers to reviews of chaos pods in `namespaces`."""
    bodies = []
    for namespace in namespaces:
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": namespace,
                "operation": "CREATE",
                "namespace": namespace,
                "object": _warned_pod("w"),
            },
        }
        bodies.append(orjson.dumps(review))
    found: list[str] = []

    def collect(_index: int, answer: Any) -> None:
        assert answer.status == 200, answer
        found.extend(orjson.loads(answer.body)["response"].get("warnings", []))

    post_reviews(webhook.admission_url, webhook.ca_bundle(), bodies, collect)
    return found


def _wait_blocked(locked: Cluster) -> str:
    """The status the write side gives the locked-out resource (it names the lock, never a secret)."""

    def status() -> str | None:
        current = locked.get_registry("sneaky").get("status") or {}
        conditions = {c["type"]: c for c in current.get("conditions") or []}
        blocked = conditions.get("Blocked")
        return json.dumps(current) if blocked and blocked["status"] == "True" else None

    return wait_for(status, timeout=60, interval=0.3, what="the Blocked condition of the locked-out resource")


def _places_to_look(cluster: Cluster, webhook: ManagedWebhook) -> list[tuple[str, str]]:
    api = cluster.api
    core = cluster.core
    events_v1 = kubernetes.client.EventsV1Api(api)
    registries = kubernetes.client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    statuses = [item.get("status") for item in registries["items"]]
    configmaps = core.list_namespaced_config_map(WEBHOOK_NAMESPACE)
    return [
        ("serve log", webhook.log_text()),
        ("core/v1 Events", json.dumps(api.sanitize_for_serialization(core.list_event_for_all_namespaces()))),
        (
            "events.k8s.io Events",
            json.dumps(api.sanitize_for_serialization(events_v1.list_event_for_all_namespaces())),
        ),
        ("ChaosImageRegistry statuses", json.dumps(statuses)),
        ("/metrics", webhook.get("/metrics")[1]),
        (f"ConfigMaps in {WEBHOOK_NAMESPACE}", json.dumps(api.sanitize_for_serialization(configmaps))),
    ]

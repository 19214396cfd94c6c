"""The Helm chart against a real kube-apiserver: install, RBAC, Pod Security, and serve as the chart's
ServiceAccount.

* `helm install` creates every object (the apiserver validates each one) and the CRD;
* RBAC, asked with `kubectl auth can-i --as=system:serviceaccount:...`: the webhook can do what it
  needs, and cannot read Secrets outside its source namespaces, write outside its resources, or
  create pods;
* the Deployment's pod template passes Pod Security `restricted` (the release namespace enforces
  it; a Pod made from the template is created there with --dry-run=server);
* the chart's webhook configuration is live: chaos pods in bound namespaces go to its Service; a
  `helm upgrade` keeps the caBundle the webhook wrote into it;
* certManager mode and the ServiceMonitor are accepted (with minimal CRDs of cert-manager and the
  Prometheus Operator written for this test);
* `chaos-registry serve`, logged in with a token of the chart's ServiceAccount and started with
  the Deployment's own arguments (no --webhook-url: it fills the caBundle of the chart's
  configuration, as in a cluster), becomes ready, mutates chaos pods, writes status, the Lease and
  the Secret copy, and is never refused by RBAC (any 403 in its log fails the test);
* the `helm test` hook's objects and its pod's command (`chaos-registry check-admission`), run as
  its ServiceAccount against that serve: the chaos pod comes back rewritten (tests/node runs the
  real `helm test` on a node).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess

from .conftest import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    REPO,
    SERVICE_ACCOUNT,
    SOURCE_NAMESPACE,
    Helm,
    Release,
)

T = TypeVar("T")
SA_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
ACCOUNT = "chart-e2e"


def can_i(plane: ControlPlane, verb: str, resource: str, namespace: str | None = None) -> bool:
    """`resource` is kubectl's TYPE[/NAME], optionally with a `:subresource` suffix."""
    resource, _, subresource = resource.partition(":")
    args = ["auth", "can-i", verb, resource, f"--as={SA_USER}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    result = plane.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}"
    return answer == "yes"


# --- install ------------------------------------------------------------------------------------------


def test_every_object_is_created(chart_plane: ControlPlane, release: Release) -> None:
    kinds = sorted({obj["kind"] for obj in release.objects})
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "MutatingWebhookConfiguration",
        "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
    ]  # fmt: skip
    for obj in release.objects:
        namespace = obj["metadata"].get("namespace")
        args = ["get", obj["kind"].lower(), obj["metadata"]["name"], "-o", "name"]
        args += ["-n", namespace] if namespace else []
        assert chart_plane.kubectl(*args).stdout.strip(), obj["metadata"]
    chart_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/chaosimageregistries.chaosregistry.io"
    )
    # helm install warns if the pod template would violate the namespace's Pod Security level.
    assert "violate PodSecurity" not in release.install_output.stderr


def test_install_notes_tell_the_next_steps(release: Release) -> None:
    assert f"rollout status deployment/{FULLNAME}" in release.install_output.stdout
    assert "chaosregistry.io/account=<account>" in release.install_output.stdout


# --- RBAC ---------------------------------------------------------------------------------------------

ALLOWED = [
    ("list", "chaosimageregistries.chaosregistry.io", None),
    ("watch", "chaosimageregistries.chaosregistry.io", None),
    ("patch", "chaosimageregistries.chaosregistry.io:status", None),
    ("list", "namespaces", None),
    ("watch", "namespaces", None),
    ("create", "events", "payments-chaos"),
    ("create", "events", "default"),
    ("get", f"mutatingwebhookconfigurations/{FULLNAME}", None),
    ("patch", f"mutatingwebhookconfigurations/{FULLNAME}", None),
    # Secret copies, written without reading.
    ("create", "secrets", "payments-chaos"),
    ("patch", "secrets", "payments-chaos"),
    ("delete", "secrets", "payments-chaos"),
    # The release namespace.
    ("watch", "configmaps", NAMESPACE),
    ("get", "configmaps/chaos-registry-defaults", NAMESPACE),
    ("create", "configmaps", NAMESPACE),
    ("update", f"configmaps/{FULLNAME}-copies", NAMESPACE),
    ("create", "events.events.k8s.io", "default"),
    ("list", "secrets", NAMESPACE),
    ("watch", "secrets", NAMESPACE),
    ("get", f"secrets/{FULLNAME}-tls", NAMESPACE),
    ("get", f"leases.coordination.k8s.io/{FULLNAME}-leader", NAMESPACE),
    ("create", "leases.coordination.k8s.io", NAMESPACE),
    ("update", f"leases.coordination.k8s.io/{FULLNAME}-leader", NAMESPACE),
    # The extra source namespace: read-only.
    ("get", "secrets", SOURCE_NAMESPACE),
    ("list", "secrets", SOURCE_NAMESPACE),
    ("watch", "secrets", SOURCE_NAMESPACE),
]

DENIED = [
    # Other namespaces' Secrets are never readable.
    ("get", "secrets", "payments-chaos"),
    ("list", "secrets", "payments-chaos"),
    ("watch", "secrets", "kube-system"),
    ("list", "secrets", None),
    ("get", "secrets", "default"),
    ("update", "configmaps", SOURCE_NAMESPACE),
    # No pods, no workloads, no RBAC, no namespaces.
    ("create", "pods", NAMESPACE),
    ("create", "pods", "payments-chaos"),
    ("create", "deployments.apps", NAMESPACE),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", NAMESPACE),
    ("delete", "namespaces", None),
    ("patch", "namespaces", None),
    ("impersonate", "serviceaccounts", NAMESPACE),
    # Only its own webhook configuration, and no new ones.
    ("create", "mutatingwebhookconfigurations", None),
    ("patch", "mutatingwebhookconfigurations/someone-else", None),
    ("delete", f"mutatingwebhookconfigurations/{FULLNAME}", None),
    ("update", f"mutatingwebhookconfigurations/{FULLNAME}", None),
    ("patch", "validatingwebhookconfigurations", None),
    # The configuration itself is the users': status only.
    ("create", "chaosimageregistries.chaosregistry.io", None),
    ("update", "chaosimageregistries.chaosregistry.io", None),
    ("patch", "chaosimageregistries.chaosregistry.io", None),
    ("delete", "chaosimageregistries.chaosregistry.io", None),
    # Nothing else in other namespaces.
    ("create", "configmaps", "payments-chaos"),
    ("create", "leases.coordination.k8s.io", "kube-system"),
    ("delete", "configmaps", NAMESPACE),
    ("delete", "leases.coordination.k8s.io", NAMESPACE),
    # Its own defaults are the Helm release's, not the webhook's to change.
    ("update", "configmaps/chaos-registry-defaults", NAMESPACE),
    ("patch", "configmaps/chaos-registry-defaults", NAMESPACE),
    ("create", "configmaps", SOURCE_NAMESPACE),
]


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED)
def test_service_account_can(
    chart_plane: ControlPlane, release: Release, verb: str, resource: str, namespace: str | None
) -> None:
    assert can_i(chart_plane, verb, resource, namespace), f"{SA_USER} cannot {verb} {resource} in {namespace}"


@pytest.mark.parametrize(("verb", "resource", "namespace"), DENIED)
def test_service_account_cannot(
    chart_plane: ControlPlane, release: Release, verb: str, resource: str, namespace: str | None
) -> None:
    assert not can_i(chart_plane, verb, resource, namespace), (
        f"{SA_USER} can {verb} {resource} in {namespace}"
    )


# --- Pod Security -------------------------------------------------------------------------------------


def pod_from_deployment(plane: ControlPlane, name: str) -> dict[str, Any]:
    deployment = json.loads(
        plane.kubectl("get", "deployment", FULLNAME, "-n", NAMESPACE, "-o", "json").stdout
    )
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def test_pod_template_passes_restricted_pod_security(chart_plane: ControlPlane, release: Release) -> None:
    labels = json.loads(chart_plane.kubectl("get", "namespace", NAMESPACE, "-o", "json").stdout)["metadata"][
        "labels"
    ]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = pod_from_deployment(chart_plane, "webhook-template")
    result = chart_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr, result.stderr


def test_pod_security_is_enforced_in_the_release_namespace(
    chart_plane: ControlPlane, release: Release
) -> None:
    """Control: the same pod without the restricted settings is refused, so the check above is real."""
    pod = pod_from_deployment(chart_plane, "webhook-loose")
    pod["spec"].pop("securityContext")
    for container in pod["spec"]["containers"]:
        container.pop("securityContext")
    result = chart_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted' in result.stderr


# --- the webhook configuration ------------------------------------------------------------------------


def chaos_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"chaosUID": "e2e"}},
        "spec": {"containers": [{"name": "runner", "image": "litmuschaos/go-runner:3.11.0"}]},
    }


def bound_namespace(plane: ControlPlane, labels: dict[str, str] | None = None) -> str:
    name = f"chart-bound-{secrets.token_hex(3)}"
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    plane.kubectl("create", "-f", "-", input=json.dumps(manifest))
    return name


def test_chart_webhook_configuration_calls_its_service(chart_plane: ControlPlane, release: Release) -> None:
    """No webhook pod runs here: with failurePolicy Fail, a chaos pod in a bound namespace is refused
    because the apiserver calls the chart's Service; unbound namespaces are not selected at all."""
    config = json.loads(
        chart_plane.kubectl("get", "mutatingwebhookconfiguration", FULLNAME, "-o", "json").stdout
    )
    if "url" in config["webhooks"][0]["clientConfig"]:
        # The serve test (run first in another order) points it at a local process: put the chart's back.
        rendered = release.find("MutatingWebhookConfiguration")[0]
        chart_plane.kubectl("replace", "-f", "-", input=json.dumps(rendered))
    bound = bound_namespace(chart_plane, {"chaosregistry.io/account": ACCOUNT})
    unbound = bound_namespace(chart_plane)

    def create(namespace: str) -> Any:
        return chart_plane.kubectl(
            "create",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(chaos_pod("p")),
            check=False,
        )

    deadline = time.monotonic() + 30
    refused = create(bound)
    while refused.returncode == 0 and time.monotonic() < deadline:  # configurations load asynchronously
        time.sleep(0.5)
        refused = create(bound)
    assert refused.returncode != 0
    assert "pods.chaosregistry.io" in refused.stderr and FULLNAME in refused.stderr, refused.stderr
    assert create(unbound).returncode == 0


def test_helm_upgrade_keeps_the_ca_bundle_the_webhook_wrote(
    chart_plane: ControlPlane, helm: Helm, release: Release
) -> None:
    """selfManaged: the webhook writes caBundle into the chart's configuration; an upgrade that
    changes the configuration must not wipe it (Helm's three-way merge leaves fields it never set)."""
    ca_bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    patch = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_bundle}]
    chart_plane.kubectl(
        "patch", "mutatingwebhookconfiguration", FULLNAME, "--type=json", "-p", json.dumps(patch)
    )
    helm(
        "upgrade", release.name, str(CHART), "--namespace", release.namespace, "--reuse-values",
        "--set", "webhook.timeoutSeconds=7",
    )  # fmt: skip
    config = json.loads(
        chart_plane.kubectl("get", "mutatingwebhookconfiguration", FULLNAME, "-o", "json").stdout
    )
    assert config["webhooks"][0]["timeoutSeconds"] == 7
    assert config["webhooks"][0]["clientConfig"].get("caBundle") == ca_bundle


# --- certManager mode and the ServiceMonitor ----------------------------------------------------------


def minimal_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD that accepts any spec: enough to check the chart's objects' names, kinds and namespaces."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }


def test_cert_manager_mode_and_service_monitor_install(
    chart_plane: ControlPlane, helm: Helm, release: Release, tmp_path: Path
) -> None:
    crds = [
        minimal_crd("cert-manager.io", "Issuer", "issuers"),
        minimal_crd("cert-manager.io", "Certificate", "certificates"),
        minimal_crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ]
    chart_plane.kubectl(
        "apply", "--server-side", "-f", "-", input="\n---\n".join(json.dumps(c) for c in crds)
    )
    for crd in crds:
        chart_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )
    name, namespace = "chart-e2e-cm", "chaos-system-cm"
    try:
        helm(
            "install", name, str(CHART), "--namespace", namespace, "--create-namespace",
            "--set", "certificates.mode=certManager", "--set", "serviceMonitor.enabled=true",
            # Ignore: its Service has no endpoints either, and the serve test below must not be refused.
            "--set", "webhook.failurePolicy=Ignore",
        )  # fmt: skip
        fullname = f"{name}-chaos-registry-webhook"
        for kind in ("issuer", "certificate", "servicemonitor", "deployment"):
            assert chart_plane.kubectl("get", kind, "-n", namespace, "-o", "name").stdout.strip()
        config = json.loads(
            chart_plane.kubectl("get", "mutatingwebhookconfiguration", fullname, "-o", "json").stdout
        )
        assert (
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            == f"{namespace}/{fullname}-serving"
        )
        certificate = json.loads(
            chart_plane.kubectl("get", "certificate", "-n", namespace, "-o", "json").stdout
        )
        secret_name = certificate["items"][0]["spec"]["secretName"]
        deployment = json.loads(
            chart_plane.kubectl("get", "deployment", fullname, "-n", namespace, "-o", "json").stdout
        )
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "tls", "secret": {"secretName": secret_name, "defaultMode": 0o440}} in volumes
    finally:
        helm("uninstall", name, "--namespace", namespace, check=False)


# --- serve as the chart's ServiceAccount --------------------------------------------------------------


def service_account_kubeconfig(plane: ControlPlane, path: Path, account: str = SERVICE_ACCOUNT) -> Path:
    token = plane.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)}}
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": account, "namespace": NAMESPACE}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def deployment_args(plane: ControlPlane) -> list[str]:
    """The chart's serve arguments, minus what a local process must choose itself (ports, identity)."""
    deployment = json.loads(
        plane.kubectl("get", "deployment", FULLNAME, "-n", NAMESPACE, "-o", "json").stdout
    )
    env = {"POD_NAMESPACE": NAMESPACE, "POD_NAME": "chart-e2e-0"}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    local = ("--port=", "--health-port=", "--namespace=", "--log-format=")
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args if not a.startswith(local)]


FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)


@dataclass
class Served:
    process: WebhookProcess
    bound: str  # a namespace bound to ACCOUNT, whose registry is Private with a secret in SOURCE_NAMESPACE


class InClusterServe(WebhookProcess):
    """serve as the chart runs it: no --webhook-url, so it only patches the caBundle of the chart's
    configuration (the in-cluster path); the test points that configuration at this process."""

    def command(self) -> list[str]:
        command = super().command()
        index = command.index("--webhook-url")
        return command[:index] + command[index + 2 :]


@pytest.fixture(scope="module")
def served(
    chart_plane: ControlPlane, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """serve as the chart's ServiceAccount with the Deployment's arguments, and a Private registry."""
    folder = tmp_path_factory.mktemp("chart-serve")
    kubeconfig = service_account_kubeconfig(chart_plane, folder / "sa.kubeconfig")
    process = InClusterServe(
        kubeconfig,
        folder / "serve.log",
        namespace=NAMESPACE,
        config_name=FULLNAME,
        extra_args=[*deployment_args(chart_plane), "--log-format=text", "--resync-interval=1"],
    )
    # What the Service would do in a cluster: send the apiserver to this process (caBundle: its own).
    client_config = [
        {"op": "replace", "path": "/webhooks/0/clientConfig", "value": {"url": f"{process.url}/mutate-pods"}}
    ]
    chart_plane.kubectl(
        "patch", "mutatingwebhookconfiguration", FULLNAME, "--type=json", "-p", json.dumps(client_config)
    )
    chart_plane.kubectl(
        "create", "secret", "docker-registry", "acme-pull", "-n", SOURCE_NAMESPACE,
        "--docker-server=registry.acme.corp", "--docker-username=u", "--docker-password=p",
    )  # fmt: skip
    registry = {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": ACCOUNT},
        "spec": {
            "scope": {"account": ACCOUNT},
            "registry": {
                "server": "registry.acme.corp",
                "account": "mirror",
                "type": "Private",
                "secretName": "acme-pull",
                "secretNamespace": SOURCE_NAMESPACE,
            },
        },
    }
    chart_plane.kubectl("apply", "-f", "-", input=json.dumps(registry))
    bound = bound_namespace(chart_plane, {"chaosregistry.io/account": ACCOUNT})
    with process:
        yield Served(process, bound)


def wait_for(check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T | None:
    deadline = time.monotonic() + timeout
    result = check()
    while result is None and time.monotonic() < deadline:
        time.sleep(interval)
        result = check()
    return result


def test_serve_admits_as_the_chart_service_account(chart_plane: ControlPlane, served: Served) -> None:
    def admitted() -> dict[str, Any] | None:
        result = chart_plane.kubectl(
            "create", "--dry-run=server", "-n", served.bound, "-o", "json", "-f", "-",
            input=json.dumps(chaos_pod("runner")), check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        pod: dict[str, Any] = json.loads(result.stdout)
        return pod if pod["spec"]["containers"][0]["image"].startswith("registry.acme.corp/") else None

    pod = wait_for(admitted, timeout=60)
    assert pod is not None, f"chaos pod never mutated; serve log:\n{served.process.log_tail(40)}"
    assert pod["spec"]["containers"][0]["image"] == "registry.acme.corp/mirror/go-runner:3.11.0"
    assert {"name": "acme-pull"} in pod["spec"]["imagePullSecrets"]


def test_serve_write_side_works_under_the_chart_rbac(chart_plane: ControlPlane, served: Served) -> None:
    """Lease, status and the Secret copy, with nothing refused: the log names any forbidden call."""

    def copied() -> str | None:
        result = chart_plane.kubectl(
            "get", "secret", "acme-pull", "-n", served.bound, "-o", "name", check=False
        )
        return result.stdout.strip() or None

    def status_written() -> list[Any] | None:
        registry = json.loads(chart_plane.kubectl("get", "chaosimageregistry", ACCOUNT, "-o", "json").stdout)
        return (registry.get("status") or {}).get("conditions") or None

    copy = wait_for(copied, timeout=30)
    conditions = wait_for(status_written, timeout=30)
    lease = chart_plane.kubectl("get", "lease", f"{FULLNAME}-leader", "-n", NAMESPACE, check=False)
    log = served.process.log_file.read_text(errors="replace")
    forbidden = [line for line in log.splitlines() if FORBIDDEN.search(line)]
    assert not forbidden, "serve was refused by RBAC:\n" + "\n".join(forbidden[:10])
    assert lease.returncode == 0, lease.stderr
    assert conditions, f"no status written; serve log:\n{served.process.log_tail(40)}"
    assert copy, f"no Secret copy in {served.bound}; serve log:\n{served.process.log_tail(40)}"
    assert served.process.process is not None and served.process.process.poll() is None


# --- the `helm test` hook, without a node ------------------------------------------------------------


def check_admission(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "webhook", "check-admission", f"--kubeconfig={kubeconfig}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=REPO)


def test_helm_test_check_passes_as_its_service_account_and_fails_when_nothing_rewrites(
    chart_plane: ControlPlane, helm: Helm, served: Served, tmp_path: Path
) -> None:
    """The objects `helm test` creates (rendered from the chart, the pod left out: nothing runs pods
    here) and the pod's own command, run as its ServiceAccount against serve: the chaos pod comes
    back rewritten. tests/node runs the real `helm test`."""
    rendered = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--set", f"secretSourceNamespaces={{{SOURCE_NAMESPACE}}}",
        "--show-only", "templates/tests/admission-check.yaml",
    ).stdout  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    pod = next(obj for obj in objects if obj["kind"] == "Pod")
    others = [obj for obj in objects if obj["kind"] != "Pod"]
    chart_plane.kubectl("create", "-f", "-", input="\n---\n".join(json.dumps(obj) for obj in others))
    # The test pod passes Pod Security restricted in the release namespace.
    dry_run = chart_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert dry_run.returncode == 0 and "violate" not in dry_run.stderr, dry_run.stderr
    account = pod["spec"]["serviceAccountName"]
    kubeconfig = service_account_kubeconfig(chart_plane, tmp_path / "test.kubeconfig", account)
    args = pod["spec"]["containers"][0]["args"]
    assert args[0] == "check-admission"
    passed = check_admission(kubeconfig, *args[1:])
    assert passed.returncode == 0, f"{passed.stderr}\nserve log:\n{served.process.log_tail(30)}"
    admitted_as = "was admitted as registry.helm-test.invalid/chaos/chaos-runner:3.11.0"
    expected = f"ok: a chaos pod in namespace {FULLNAME}-test {admitted_as}"
    assert passed.stdout.startswith(expected), passed.stdout
    # Its one right: creating pods in the test namespace.
    test_user = f"system:serviceaccount:{NAMESPACE}:{account}"
    test_namespace = next(obj for obj in objects if obj["kind"] == "Namespace")["metadata"]["name"]
    for verb, resource, namespace, allowed in [
        ("create", "pods", test_namespace, "yes"),
        ("get", "pods", test_namespace, "no"),
        ("delete", "pods", test_namespace, "no"),
        ("create", "pods", NAMESPACE, "no"),
        ("create", "pods", served.bound, "no"),
        ("list", "secrets", test_namespace, "no"),
    ]:
        answer = chart_plane.kubectl(
            "auth", "can-i", verb, resource, f"--as={test_user}", "-n", namespace, check=False
        ).stdout.strip()
        assert answer == allowed, f"{test_user} {verb} {resource} in {namespace}: {answer}"
    # Control: where no ChaosImageRegistry covers the namespace, the same check fails, saying why.
    uncovered = bound_namespace(chart_plane, {"chaosregistry.io/account": "no-registry-here"})
    failed = check_admission(
        chart_plane.kubeconfig,
        f"--namespace={uncovered}",
        *[a for a in args if a.startswith("--expect-registry=")],
        "--timeout=3",
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("chaos-registry check-admission: error: after "), failed.stderr
    assert "the chaos pod came back unchanged (litmuschaos/chaos-runner:3.11.0)" in failed.stderr
    assert len(failed.stderr.splitlines()) == 1

"""The webhook on the real node, as the node tests and `make bench-node` run it.

One Private ChaosImageRegistry of an account at the node's registry (its pull Secret in the
webhook's namespace), `chaos-registry serve` as a local process that registers its own
MutatingWebhookConfiguration, and namespaces bound to the account (pods there are rewritten) or
not (the apiserver never calls the webhook for them: its namespaceSelector wants the account label).

>>> with NodeCluster() as cluster, node_webhook(cluster, log_file, account="node", user="puller"):
...     namespace = create_namespace(cluster, "chaos", {ACCOUNT_LABEL: "node"})
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from controlplane.node import NodeCluster, NodeError
from controlplane.webhook import WebhookProcess

__all__ = [
    "ACCOUNT_LABEL",
    "CRD_FILE",
    "PULL_SECRET",
    "WEBHOOK_NAMESPACE",
    "apply",
    "create_namespace",
    "install_registry",
    "node_webhook",
    "registry_manifest",
    "wait_until",
    "wait_until_admitting",
]

REPO = Path(__file__).resolve().parent.parent
CRD_FILE = REPO / "charts/chaos-registry-webhook/crds/chaosimageregistries.chaosregistry.io.yaml"
WEBHOOK_NAMESPACE = "chaos-system"
PULL_SECRET = "chaos-pull"
#: The label binding a namespace to an account; the webhook's namespaceSelector requires it.
ACCOUNT_LABEL = "chaosregistry.io/account"

_T = TypeVar("_T")


def wait_until(check: Callable[[], _T], timeout: float = 30.0, what: str = "") -> _T:
    """Call `check` until it returns something true and return that; NodeError after `timeout`."""
    deadline = time.monotonic() + timeout
    last = check()
    while not last:
        if time.monotonic() > deadline:
            raise NodeError(
                f"timed out after {timeout:.0f}s waiting for {what or check}; last value {last!r}"
            )
        time.sleep(0.2)
        last = check()
    return last


def apply(cluster: NodeCluster, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    items = [manifest] if isinstance(manifest, Mapping) else list(manifest)
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(item) for item in items))


def install_registry(cluster: NodeCluster, *, account: str, user: str) -> None:
    """The CRD, the webhook's namespace, the pull Secret of `user` there, and one Private
    ChaosImageRegistry of `account` at the node's registry naming that Secret."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/chaosimageregistries.chaosregistry.io"
    )
    cluster.kubectl("create", "namespace", WEBHOOK_NAMESPACE)
    apply(cluster, cluster.registry.pull_secret(PULL_SECRET, WEBHOOK_NAMESPACE, user=user))
    apply(cluster, registry_manifest(cluster, account=account, allow_overrides=True))


def registry_manifest(
    cluster: NodeCluster,
    *,
    account: str,
    secret_namespace: str = WEBHOOK_NAMESPACE,
    secret_name: str = PULL_SECRET,
    allow_overrides: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Private ChaosImageRegistry of `account` at the node's registry, naming a pull Secret."""
    metadata: dict[str, Any] = {"name": account, **({"labels": dict(labels)} if labels else {})}
    spec: dict[str, Any] = {
        "scope": {"account": account},
        "registry": {"server": cluster.registry.host, "account": cluster.account, "type": "Private",
                     "secretName": secret_name, "secretNamespace": secret_namespace},
    }  # fmt: skip
    if allow_overrides:
        spec["allowOverrides"] = True
    return {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": metadata,
        "spec": spec,
    }


@contextlib.contextmanager
def node_webhook(
    cluster: NodeCluster, log_file: Path, *, account: str, user: str, extra_args: Sequence[str] = ()
) -> Iterator[WebhookProcess]:
    """`install_registry`, then serve; yields once the apiserver calls it, stops it on exit."""
    install_registry(cluster, account=account, user=user)
    with WebhookProcess(cluster.kubeconfig, log_file, extra_args=extra_args) as process:
        wait_until_admitting(cluster, account)
        yield process


def wait_until_admitting(cluster: NodeCluster, account: str, timeout: float = 30.0) -> None:
    """The apiserver loads new webhook configurations asynchronously: dry-run until ours rewrites."""
    name = f"probe-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"{ACCOUNT_LABEL}={account}")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": name, "labels": {"chaosUID": "p"}},
        "spec": {"containers": [{"name": "c", "image": "litmuschaos/go-runner:3.11.0"}]},
    }

    def rewritten() -> bool:
        result = cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod), check=False
        )
        return result.returncode == 0 and cluster.registry.host in result.stdout

    try:
        wait_until(rewritten, timeout=timeout, what="the apiserver to call the webhook")
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def create_namespace(cluster: NodeCluster, prefix: str, labels: Mapping[str, str]) -> str:
    """A fresh namespace `<prefix>-<random>` with `labels`, once pods can be created in it."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    if labels:
        cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    # ServiceAccount admission rejects pods until the controller manager made `default`.
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"the default ServiceAccount of {name}",
    )
    return name

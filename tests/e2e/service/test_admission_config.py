"""Configuration as admitted pods see it: locks and overrides over the four levels, and changes
(ChaosImageRegistry, namespace labels, the defaults ConfigMap) applied while the webhook runs.

Propagation is measured from the API call returning to the first dry-run pod admitted with the new
configuration, and must stay under 2 s (docs/contract.md#the-service: a change applies to the next pod).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import kubernetes
import yaml

from controlplane.webhook import WebhookProcess
from tests.e2e.service.admission_support import (
    env_values,
    image_of,
    load_pod,
    measure_propagation,
    metric_samples,
    pull_secrets,
    scope_annotation,
    unique_pod,
    wait_admitted,
)
from tests.e2e.service.conftest import WEBHOOK_NAMESPACE, Cluster, images

PROPAGATION_LIMIT = 2.0
DEFAULTS_CONFIGMAP = "chaos-registry-defaults"
EXPERIMENT = "examples/pods/litmus-experiment.yaml"
GO_RUNNER = "pod-network-loss-x7k2pd"  # the experiment pod's container
SCOPES: dict[str, tuple[str, ...]] = {
    "account": (),
    "organization": ("retail",),
    "project": ("retail", "payments"),
    "infrastructure": ("retail", "payments", "prod"),
}


def _experiment(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """An experiment pod created for real; returns what the apiserver stored."""
    return cluster.create_pod(namespace, unique_pod(load_pod(EXPERIMENT)))


def test_locks_and_overrides_across_the_four_levels(cluster: Cluster) -> None:
    acct = cluster.account
    ns = {level: cluster.namespace(*scope) for level, scope in SCOPES.items()}
    names = {
        level: f"{acct}-{short}"
        for level, short in zip(SCOPES, ("account", "org", "project", "infra"), strict=True)
    }
    # 0. The lower resources first, and live in the webhook before any lock exists (so that a pod
    #    unchanged by them later is the lock's doing, not a watch that has not delivered them yet).
    cluster.registry(
        "project",
        {"registry": {"server": "proj.registry.io"}, "allowOverrides": True},
        scope=SCOPES["project"],
    )
    cluster.registry(
        "infra",
        {
            "customImages": {
                "enabled": True,
                "images": {
                    "goRunner": "infra.registry.io/custom/go-runner:9.9.9",
                    "ddcrFault": "infra.registry.io/custom/ddcr-fault:2.0",
                    "ddcrLib": "infra.registry.io/custom/ddcr-lib:2.0",
                },
            }
        },
        scope=SCOPES["infrastructure"],
    )
    unlocked = wait_admitted(
        cluster,
        ns["infrastructure"],
        EXPERIMENT,
        image_of(GO_RUNNER, "infra.registry.io/custom/"),
        what="the project and infrastructure resources",
    )
    assert env_values(unlocked)[GO_RUNNER]["TC_IMAGE"] == "proj.registry.io/harness/iproute2"

    # 1. The account (overrides allowed) and the organization (locked) arrive: project and
    #    infrastructure resources no longer change anything below the organization.
    cluster.registry(
        "account",
        {
            "registry": {
                "server": "acct.registry.io",
                "account": "harness",
                "type": "Private",
                "secretName": "acct-pull",
            },
            "allowOverrides": True,
        },
    )
    cluster.registry(
        "org", {"registry": {"account": "org-team"}, "allowOverrides": False}, scope=SCOPES["organization"]
    )
    wait_admitted(
        cluster,
        ns["infrastructure"],
        EXPERIMENT,
        image_of(GO_RUNNER, "acct.registry.io/org-team/"),
        what="org lock",
    )
    org_image = "acct.registry.io/org-team/go-runner:3.11.0"
    expected = {"account": "acct.registry.io/harness/go-runner:3.11.0", "organization": org_image}
    expected |= {"project": org_image, "infrastructure": org_image}
    for level, namespace in ns.items():
        stored = _experiment(cluster, namespace)
        assert images(stored) == {GO_RUNNER: expected[level]}, level
        assert env_values(stored)[GO_RUNNER]["LIB_IMAGE"] == expected[level], level
        assert pull_secrets(stored) == ["acct-pull"], level  # Private is inherited from the account
        applied = [names["account"]] if level == "account" else [names["account"], names["organization"]]
        assert scope_annotation(stored) == {"scope": "/".join((acct, *SCOPES[level])), "registries": applied}

    # 2. The organization allows overrides: the project's server and the infrastructure's custom
    #    images apply, each merged field by field over what it inherits.
    cluster.patch_registry("org", {"spec": {"allowOverrides": True}})
    wait_admitted(
        cluster,
        ns["infrastructure"],
        EXPERIMENT,
        image_of(GO_RUNNER, "infra.registry.io/custom/"),
        what="override",
    )
    stored = _experiment(cluster, ns["project"])
    assert images(stored) == {GO_RUNNER: "proj.registry.io/org-team/go-runner:3.11.0"}
    assert pull_secrets(stored) == ["acct-pull"]
    stored = _experiment(cluster, ns["infrastructure"])
    assert images(stored) == {GO_RUNNER: "infra.registry.io/custom/go-runner:9.9.9"}
    assert env_values(stored)[GO_RUNNER] == {
        "LIB_IMAGE": "infra.registry.io/custom/go-runner:9.9.9",  # goRunner's custom image, verbatim
        "TC_IMAGE": "proj.registry.io/org-team/iproute2",  # no component: the inherited registry
        "TOTAL_CHAOS_DURATION": "60",
    }
    assert scope_annotation(stored) == {
        "scope": f"{acct}/retail/payments/prod",
        "registries": [names["account"], names["organization"], names["project"], names["infrastructure"]],
    }
    # HCE pods under the same infrastructure: the fault image is ddcrFault, LIB_IMAGE is ddcrLib,
    # and the log watcher (no custom image) goes to the inherited registry.
    fault = cluster.create_pod(ns["infrastructure"], "examples/pods/hce-fault.yaml")
    assert images(fault) == {
        "log-watcher": "proj.registry.io/org-team/chaos-log-watcher:1.47.0",
        "fault": "infra.registry.io/custom/ddcr-fault:2.0",
    }
    assert env_values(fault)["fault"] == {"LIB_IMAGE": "infra.registry.io/custom/ddcr-lib:2.0"}
    helper = cluster.create_pod(ns["infrastructure"], "examples/pods/hce-helper.yaml")
    assert images(helper) == {"helper": "infra.registry.io/custom/ddcr-lib:2.0"}
    # kubectl shows the warning about the component without a custom image.
    result = cluster.control_plane.kubectl(
        "create", "-n", ns["infrastructure"], "--dry-run=server", "-o", "name", "-f", "-",
        input=(cluster_pod_yaml("examples/pods/hce-fault.yaml")),
    )  # fmt: skip
    assert "chaos-registry: custom images are enabled but component logWatcher has none" in result.stderr

    # 3. The account locks: nothing below it applies any more, in any namespace.
    cluster.patch_registry("account", {"spec": {"allowOverrides": False}})
    wait_admitted(
        cluster,
        ns["infrastructure"],
        EXPERIMENT,
        image_of(GO_RUNNER, "acct.registry.io/harness/"),
        what="account lock",
    )
    for level, namespace in ns.items():
        stored = _experiment(cluster, namespace)
        assert images(stored) == {GO_RUNNER: "acct.registry.io/harness/go-runner:3.11.0"}, level
        assert scope_annotation(stored) == {
            "scope": "/".join((acct, *SCOPES[level])),
            "registries": [names["account"]],
        }


def cluster_pod_yaml(path: str) -> str:
    pod = unique_pod(load_pod(path))
    pod["metadata"].pop("namespace", None)
    return yaml.safe_dump(pod)


def _report(what: str, seconds: float) -> None:
    print(f"propagation {what}: {seconds * 1000:.0f} ms")  # collected with -s for the report
    assert seconds < PROPAGATION_LIMIT, f"{what}: the change took {seconds:.3f}s to reach the next pod"


def test_registry_change_applies_to_the_next_pod(cluster: Cluster) -> None:
    cluster.registry("root", {"registry": {"server": "old.acme.corp", "account": "chaos"}})
    namespace = cluster.namespace()
    pod = load_pod(EXPERIMENT)
    wait_admitted(cluster, namespace, pod, image_of(GO_RUNNER, "old.acme.corp/"), what="the first registry")

    cluster.patch_registry("root", {"spec": {"registry": {"server": "new.acme.corp"}}})
    _report(
        "ChaosImageRegistry update",
        measure_propagation(cluster, namespace, pod, image_of(GO_RUNNER, "new.acme.corp/")),
    )

    cluster.delete_registry("root")
    untouched = image_of(GO_RUNNER, "litmuschaos.docker.scarf.sh/")
    _report("ChaosImageRegistry delete", measure_propagation(cluster, namespace, pod, untouched))

    cluster.registry("root", {"registry": {"server": "again.acme.corp", "account": "chaos"}})
    _report(
        "ChaosImageRegistry create",
        measure_propagation(cluster, namespace, pod, image_of(GO_RUNNER, "again.acme.corp/")),
    )


def test_namespace_label_change_applies_to_the_next_pod(cluster: Cluster) -> None:
    cluster.registry("p1", {"registry": {"server": "p1.acme.corp"}}, scope=("retail", "p1"))
    cluster.registry("p2", {"registry": {"server": "p2.acme.corp"}}, scope=("retail", "p2"))
    namespace = cluster.namespace("retail", "p1")
    other = cluster.namespace("retail", "p2")
    pod = load_pod(EXPERIMENT)
    wait_admitted(cluster, other, pod, image_of(GO_RUNNER, "p2.acme.corp/"), what="p2's registry")
    wait_admitted(cluster, namespace, pod, image_of(GO_RUNNER, "p1.acme.corp/"), what="p1's registry")

    cluster.core.patch_namespace(namespace, {"metadata": {"labels": {"chaosregistry.io/project": "p2"}}})
    _report(
        "namespace label", measure_propagation(cluster, namespace, pod, image_of(GO_RUNNER, "p2.acme.corp/"))
    )
    stored = _experiment(cluster, namespace)
    assert scope_annotation(stored) == {
        "scope": f"{cluster.account}/retail/p2",
        "registries": [f"{cluster.account}-p2"],
    }


@contextlib.contextmanager
def defaults_configmap(core: kubernetes.client.CoreV1Api) -> Iterator[None]:
    """Whatever the test does to the shared defaults ConfigMap is undone on exit."""
    try:
        saved = core.read_namespaced_config_map(DEFAULTS_CONFIGMAP, WEBHOOK_NAMESPACE)
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise
        saved = None
    try:
        yield
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespaced_config_map(DEFAULTS_CONFIGMAP, WEBHOOK_NAMESPACE)
        if saved is not None:
            core.create_namespaced_config_map(
                WEBHOOK_NAMESPACE,
                {
                    "metadata": {"name": DEFAULTS_CONFIGMAP, "labels": saved.metadata.labels},
                    "data": saved.data,
                },
            )


def _set_defaults(core: kubernetes.client.CoreV1Api, config: dict[str, Any]) -> None:
    body = {"metadata": {"name": DEFAULTS_CONFIGMAP}, "data": {"config.yaml": yaml.safe_dump(config)}}
    try:
        core.replace_namespaced_config_map(DEFAULTS_CONFIGMAP, WEBHOOK_NAMESPACE, body)
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_config_map(WEBHOOK_NAMESPACE, body)


def test_defaults_configmap_change_applies_to_the_next_pod(cluster: Cluster, webhook: WebhookProcess) -> None:
    # An account without any ChaosImageRegistry: out of the box its chaos pods are left alone.
    unconfigured = cluster.namespace()
    # A configured account, for a pod only a catalog extension makes a chaos pod.
    configured = cluster.namespace(labels={"chaosregistry.io/account": f"{cluster.account}c"})
    other_account = {"account": f"{cluster.account}c"}
    cluster.custom.create_cluster_custom_object(
        "chaosregistry.io",
        "v1alpha1",
        "chaosimageregistries",
        {
            "apiVersion": "chaosregistry.io/v1alpha1",
            "kind": "ChaosImageRegistry",
            "metadata": {"name": f"{cluster.account}c"},
            "spec": {"scope": other_account, "registry": {"server": "acme.corp", "account": "chaos"}},
        },
    )
    agent = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "agent"},  # no chaos label at all
        "spec": {"containers": [{"name": "agent", "image": "acme/chaos-agent:1.0"}]},
    }
    pod = load_pod(EXPERIMENT)
    try:
        with defaults_configmap(cluster.core):
            _set_defaults(cluster.core, {})  # a ConfigMap with nothing in it: the built-ins
            wait_admitted(
                cluster, configured, EXPERIMENT, image_of(GO_RUNNER, "acme.corp/chaos/"), what="the registry"
            )
            assert images(cluster.create_pod(unconfigured, pod, dry_run=True))[GO_RUNNER].startswith(
                "litmuschaos."
            )
            assert images(cluster.create_pod(configured, agent, dry_run=True)) == {
                "agent": "acme/chaos-agent:1.0"
            }

            _set_defaults(
                cluster.core,
                {
                    "rewriteUnconfiguredScopes": True,
                    "registry": {"server": "defaults.acme.corp", "account": "mirror"},
                },
            )
            elapsed = measure_propagation(
                cluster, unconfigured, pod, image_of(GO_RUNNER, "defaults.acme.corp/mirror/")
            )
            _report("defaults ConfigMap (rewriteUnconfiguredScopes)", elapsed)
            stored = _experiment(cluster, unconfigured)
            assert images(stored) == {GO_RUNNER: "defaults.acme.corp/mirror/go-runner:3.11.0"}
            assert scope_annotation(stored) == {"scope": cluster.account, "registries": []}

            extension = {
                "catalog": [{"repository": "chaos-agent", "component": "chaosAgent"}],
                "chaosPods": [{"name": "acme-agent", "components": ["chaosAgent"]}],
            }
            _set_defaults(cluster.core, extension)
            elapsed = measure_propagation(cluster, configured, agent, image_of("agent", "acme.corp/chaos/"))
            _report("defaults ConfigMap (catalog extension)", elapsed)
            before = metric_samples(webhook, "chaos_registry_image_rewrites").get(
                (("component", "chaosAgent"),), 0.0
            )
            stored = cluster.create_pod(configured, unique_pod(agent))
            assert images(stored) == {"agent": "acme.corp/chaos/chaos-agent:1.0"}
            after = metric_samples(webhook, "chaos_registry_image_rewrites")[(("component", "chaosAgent"),)]
            assert after == before + 1
            # The unconfigured scope is back to built-ins for the other fields (one ConfigMap at a time).
            assert images(cluster.create_pod(unconfigured, pod, dry_run=True))[GO_RUNNER].startswith(
                "litmuschaos."
            )

            cluster.core.delete_namespaced_config_map(DEFAULTS_CONFIGMAP, WEBHOOK_NAMESPACE)
            elapsed = measure_propagation(cluster, configured, agent, image_of("agent", "acme/"))
            _report("defaults ConfigMap delete", elapsed)
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            cluster.custom.delete_cluster_custom_object(
                "chaosregistry.io", "v1alpha1", "chaosimageregistries", f"{cluster.account}c"
            )

"""Tests for webhook.core.classifier and the admission decision of webhook.core.snapshot
(docs/contract.md#scopes-and-chaos-pods).

Which pods are chaos pods (every pod kind of DOMAIN.md, from examples/pods), which are helper pods,
which scope a namespace binds them to (never the pod's own labels), and the opt-out label.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import EntryFactory, PodLoader
from webhook.core.classifier import NamespaceLabels, PodClassifier, opted_out, scope_from_labels
from webhook.core.loader import LoadedConfig
from webhook.core.models import SCOPE_LABELS, DefaultsConfig, Scope, load_defaults
from webhook.core.snapshot import CompiledConfig, Snapshot

A, ORG, P, INF = SCOPE_LABELS


@pytest.mark.parametrize(
    ("labels", "scope", "warning"),
    [
        ({A: "acme", ORG: "retail", P: "payments", INF: "prod"}, "acme/retail/payments/prod", None),
        ({A: "acme", ORG: "retail", P: "payments"}, "acme/retail/payments", None),
        ({A: "acme", ORG: "retail"}, "acme/retail", None),
        ({A: "acme"}, "acme", None),
        ({}, "default", None),  # no account label: the webhook's default account
        ({"team": "web"}, "default", None),
        ({A: ""}, "default", None),
        ({ORG: "retail"}, "default/retail", None),
        # broken chains keep the longest valid prefix, and say so
        (
            {A: "acme", P: "payments"},
            "acme",
            "namespace label chaosregistry.io/organization is missing, "
            "so chaosregistry.io/project is ignored: using scope acme",
        ),
        (
            {A: "acme", P: "payments", INF: "prod"},
            "acme",
            "namespace label chaosregistry.io/organization is missing, so chaosregistry.io/project, "
            "chaosregistry.io/infrastructure is ignored: using scope acme",
        ),
        (
            {A: "acme", ORG: "retail", INF: "prod"},
            "acme/retail",
            "namespace label chaosregistry.io/project is missing, "
            "so chaosregistry.io/infrastructure is ignored: using scope acme/retail",
        ),
        (
            {A: "acme", ORG: "retail", P: "", INF: "prod"},
            "acme/retail",
            "namespace label chaosregistry.io/project is missing",
        ),
        (
            {P: "payments"},
            "default",
            "namespace label chaosregistry.io/organization is missing, "
            "so chaosregistry.io/project is ignored",
        ),
    ],
)
def test_scope_from_namespace_labels(labels: dict[str, str], scope: str, warning: str | None) -> None:
    binding = scope_from_labels(labels, "default")
    assert binding.scope == Scope.parse(scope)
    if warning is None:
        assert binding.warning is None
    else:
        assert binding.warning is not None
        assert binding.warning.startswith(warning)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, False),
        ({}, False),
        ({"chaosregistry.io/inject": "false"}, True),
        ({"chaosregistry.io/inject": "true"}, False),
        ({"chaosregistry.io/inject": "False"}, False),  # label values are exact
        ({"inject": "false"}, False),
    ],
)
def test_opted_out(labels: dict[str, str] | None, expected: bool) -> None:
    assert opted_out(labels) is expected


EXAMPLE_RULES = [
    ("hce-ddcr-runner", "hce-ddcr-runner", False),
    ("hce-fault", "hce-fault-or-helper", False),
    ("hce-helper", "hce-fault-or-helper", True),
    ("litmus-runner", "litmus-runner", False),
    ("litmus-experiment", "litmus-experiment-helper-or-probe", False),
    ("litmus-helper", "litmus-experiment-helper-or-probe", True),
    ("litmus-probe", "litmus-experiment-helper-or-probe", False),
    ("argo-step", "argo-chaos-step", False),
    ("not-chaos", None, False),
]


@pytest.mark.parametrize(("pod_name", "rule", "helper"), EXAMPLE_RULES)
def test_example_pods_are_classified(
    defaults: DefaultsConfig, example_pod: PodLoader, pod_name: str, rule: str | None, helper: bool
) -> None:
    classifier = PodClassifier(defaults)
    pod = example_pod(pod_name)
    assert classifier.matching_rule(pod) == rule
    assert classifier.is_helper_pod(pod) is helper


def test_every_example_pod_is_covered(root: Any) -> None:
    assert sorted(p.stem for p in (root / "examples" / "pods").glob("*.yaml")) == sorted(
        name for name, _, _ in EXAMPLE_RULES
    )


def pod(labels: dict[str, str] | None = None, *images: str, name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]},
    }


@pytest.mark.parametrize(
    ("candidate", "rule"),
    [
        # HCE fault/helper pods carry no labels: their images make them chaos pods
        (pod({}, "harness/chaos-log-watcher:1.47.0", "busybox"), "hce-fault-or-helper"),
        (pod({}, "registry.acme.corp/mirror/harness/chaos-ddcr-faults:1"), "hce-fault-or-helper"),
        (pod({}, "harness/service-discovery-collector:1"), "hce-fault-or-helper"),
        (pod({}, "harness/chaos-ddcr@sha256:" + "a" * 64), "hce-fault-or-helper"),
        # Litmus images alone do not make a chaos pod (a user may run go-runner); labels do
        (pod({}, "litmuschaos/go-runner:3.11.0"), None),
        (pod({"app.kubernetes.io/part-of": "litmus"}, "nginx"), "litmus-part-of"),
        (pod({"app.kubernetes.io/component": "chaos-runner"}, "nginx"), "litmus-runner"),
        (pod({"app.kubernetes.io/component": "chaos-runnerX"}, "nginx"), None),  # exact value
        (pod({"chaosUID": ""}, "nginx"), "litmus-experiment-helper-or-probe"),  # presence only
        (pod({"ddcr.app/name": "x"}, "nginx"), "hce-ddcr-runner"),
        # Argo: both labels are needed (a plain Argo workflow has no controller-instanceid)
        (pod({"workflows.argoproj.io/workflow": "w"}, "litmuschaos/k8s"), None),
        (
            pod(
                {"workflows.argoproj.io/workflow": "w", "workflows.argoproj.io/controller-instanceid": "i"},
                "x",
            ),
            "argo-chaos-step",
        ),
        (pod({"app": "web"}, "nginx:1.27", "chaos-ddcr-lookalike:1"), None),
        (pod({}, "not a valid image"), None),
        ({"metadata": None, "spec": None}, None),
        ({}, None),
        ({"metadata": {"labels": "x"}, "spec": {"containers": ["x", {"image": 3}]}}, None),
    ],
)
def test_classification_rules(defaults: DefaultsConfig, candidate: dict[str, Any], rule: str | None) -> None:
    assert PodClassifier(defaults).matching_rule(candidate) == rule


@pytest.mark.parametrize("list_name", ["initContainers", "containers", "ephemeralContainers"])
def test_images_in_every_container_list_count(defaults: DefaultsConfig, list_name: str) -> None:
    candidate = {"metadata": {}, "spec": {list_name: [{"name": "x", "image": "harness/chaos-ddcr:1"}]}}
    assert PodClassifier(defaults).matching_rule(candidate) == "hce-fault-or-helper"


@pytest.mark.parametrize(
    ("metadata", "helper"),
    [
        ({"name": "pod-network-loss-helper-abcde"}, True),
        ({"generateName": "pod-network-loss-helper-"}, True),
        ({"name": "pod-network-loss-abcde"}, False),
        ({"name": "helper-abc"}, False),  # the marker is "-helper-"
        ({}, False),
    ],
)
def test_helper_pods(defaults: DefaultsConfig, metadata: dict[str, str], helper: bool) -> None:
    assert PodClassifier(defaults).is_helper_pod({"metadata": metadata}) is helper
    assert PodClassifier(defaults).is_helper_pod({"metadata": None}) is False


def test_rules_come_from_the_defaults() -> None:
    defaults = load_defaults(
        {
            "chaosPods": [
                {
                    "name": "litmus-part-of",
                    "enabled": False,
                    "matchLabels": {"app.kubernetes.io/part-of": "litmus"},
                },
                {"name": "my-chaos", "matchLabels": {"team": "chaos"}, "labelsPresent": ["experiment"]},
                {"name": "my-images", "components": ["myTool"]},
            ],
            "catalog": [{"repository": "my-tool", "component": "myTool"}],
            "helperPodNameContains": ["-sidekick-"],
        }
    )
    classifier = PodClassifier(defaults)
    assert classifier.matching_rule(pod({"app.kubernetes.io/part-of": "litmus"}, "nginx")) is None
    assert classifier.matching_rule(pod({"team": "chaos"}, "nginx")) is None  # every condition must hold
    assert classifier.matching_rule(pod({"team": "chaos", "experiment": "x"}, "nginx")) == "my-chaos"
    assert classifier.matching_rule(pod({}, "acme.io/tools/my-tool:2")) == "my-images"
    assert classifier.is_helper_pod({"metadata": {"name": "x-sidekick-1"}})
    assert not classifier.is_helper_pod({"metadata": {"name": "x-helper-1"}})


# --- the admission decision -----------------------------------------------------------------------


@pytest.fixture
def config(defaults: DefaultsConfig, entry: EntryFactory) -> CompiledConfig:
    return CompiledConfig(
        defaults,
        [
            entry("acme", "acme", allow_overrides=True, server="reg.acme.corp", account="chaos"),
            entry(
                "other",
                "acme/retail/other",
                server="reg.other.corp",
                type="Private",
                secret_name="other-pull",
            ),
            entry("payments", "acme/retail/payments", server="reg.payments.corp"),
        ],
    )


RUNNER_IMAGE = "docker.io/harness/chaos-ddcr:1.47.0"


def runner_pod(**labels: str) -> dict[str, Any]:
    return pod({"ddcr.app/name": "chaos-ddcr", **labels}, RUNNER_IMAGE)


@pytest.mark.parametrize(
    "pod_labels",
    [
        {A: "acme", ORG: "retail", P: "other"},
        {P: "other"},
        {A: "evil"},
        {INF: "x"},
    ],
)
def test_pod_labels_never_change_the_scope(config: CompiledConfig, pod_labels: dict[str, str]) -> None:
    namespace = {A: "acme", ORG: "retail", P: "payments"}
    mutation = config.mutate(runner_pod(**pod_labels), namespace)
    assert mutation.scope == Scope.parse("acme/retail/payments")
    images = [op["value"] for op in mutation.patch if op["path"].endswith("/image")]
    assert images == ["reg.payments.corp/chaos/chaos-ddcr:1.47.0"]
    assert not any(op["path"].startswith("/spec/imagePullSecrets") for op in mutation.patch)  # no other-pull


def test_namespace_without_labels_gets_the_default_account(
    defaults: DefaultsConfig, entry: EntryFactory
) -> None:
    config = CompiledConfig(defaults, [entry("d", "default", server="reg.default.corp")])
    mutation = config.mutate(runner_pod(), {})
    assert mutation.scope == Scope.parse("default")
    assert mutation.patch[0]["value"] == "reg.default.corp/harness/chaos-ddcr:1.47.0"
    # ... and so does an unknown namespace (None), with a warning from the snapshot
    snapshot = Snapshot(config, {"known": {}})
    admitted = snapshot.admit(runner_pod(), "unknown")
    assert admitted.scope == Scope.parse("default")
    assert admitted.warnings[0] == "namespace 'unknown' is not known: treated as a namespace without labels"
    assert admitted.patch == mutation.patch
    assert snapshot.admit(runner_pod(), "known").warnings == ()


def test_broken_chain_warns_and_uses_the_prefix(config: CompiledConfig) -> None:
    mutation = config.mutate(runner_pod(), {A: "acme", P: "payments"})
    assert mutation.scope == Scope.parse("acme")
    assert mutation.patch[0]["value"] == "reg.acme.corp/chaos/chaos-ddcr:1.47.0"
    assert any("chaosregistry.io/organization is missing" in w for w in mutation.warnings)


def test_namespace_records_bind_the_same_way_every_time(config: CompiledConfig) -> None:
    # Namespace records (as the service keeps them) of a sound chain reach their Rewriter without
    # rebuilding the binding; a repaired chain warns on every pod, not only the first.
    sound = NamespaceLabels({A: "acme", "chaosregistry.io/organization": "payments"})
    broken = NamespaceLabels({A: "acme", P: "payments"})
    for _ in range(2):
        mutation = config.mutate(runner_pod(), sound)
        assert mutation.scope == Scope.parse("acme/payments") and mutation.warnings == ()
        assert mutation.patch == config.mutate(runner_pod(), dict(sound)).patch
        repaired = config.mutate(runner_pod(), broken)
        assert repaired.scope == Scope.parse("acme")
        assert any("chaosregistry.io/organization is missing" in w for w in repaired.warnings)
    assert config.mutate(runner_pod(), NamespaceLabels({A: "other"})).scope == Scope.parse("other")


def test_a_namespace_record_never_binds_through_another_configurations_memo(
    config: CompiledConfig, defaults: DefaultsConfig, entry: EntryFactory
) -> None:
    # The record remembers the Rewriter the last configuration resolved it to; a configuration
    # built later (a registry changed) must resolve it again, or its pods would keep the old server.
    record = NamespaceLabels({A: "acme"})
    assert config.mutate(runner_pod(), record).patch[0]["value"] == "reg.acme.corp/chaos/chaos-ddcr:1.47.0"
    assert record.resolved is config.rewriter(Scope.parse("acme"))
    moved = CompiledConfig(defaults, [entry("acme", "acme", server="mirror.acme.corp")])
    for _ in range(2):
        assert (
            moved.mutate(runner_pod(), record).patch[0]["value"]
            == "mirror.acme.corp/harness/chaos-ddcr:1.47.0"
        )
    assert record.resolved is moved.rewriter(Scope.parse("acme"))


@pytest.mark.parametrize(
    ("namespace_labels", "pod_labels", "reason"),
    [
        ({A: "acme", "chaosregistry.io/inject": "false"}, {}, "namespace opted out"),
        ({A: "acme"}, {"chaosregistry.io/inject": "false"}, "pod opted out"),
    ],
)
def test_opt_out(
    config: CompiledConfig, namespace_labels: dict[str, str], pod_labels: dict[str, str], reason: str
) -> None:
    mutation = config.mutate(runner_pod(**pod_labels), namespace_labels)
    assert (mutation.chaos, mutation.reason, mutation.patch, mutation.warnings) == (False, reason, [], ())
    # the same pod without the label is mutated
    assert config.mutate(runner_pod(), {A: "acme"}).patch


@pytest.mark.parametrize("pod_name", ["not-chaos"])
def test_non_chaos_pods_are_untouched(
    examples_config: LoadedConfig, example_pod: PodLoader, pod_name: str
) -> None:
    snapshot = examples_config.snapshot()
    candidate = example_pod(pod_name)
    mutation = snapshot.admit(candidate, candidate["metadata"]["namespace"])
    assert (mutation.chaos, mutation.reason, mutation.patch, mutation.warnings) == (
        False,
        "not a chaos pod",
        [],
        (),
    )


@pytest.mark.parametrize("image", ["nginx:1.27", "litmuschaos/go-runner:3.11.0", "::bad::", "ghcr.io/x/y"])
def test_non_chaos_pods_get_no_patch_in_any_scope(config: CompiledConfig, image: str) -> None:
    for labels in ({}, {A: "acme"}, {A: "acme", ORG: "retail", P: "payments"}):
        mutation = config.mutate(pod({"app": "web"}, image), labels)
        assert mutation.patch == []
        assert not mutation.chaos


@pytest.mark.parametrize("rewrite_unconfigured", [False, True])
def test_unconfigured_scopes(entry: EntryFactory, rewrite_unconfigured: bool) -> None:
    defaults = load_defaults({"rewriteUnconfiguredScopes": rewrite_unconfigured})
    config = CompiledConfig(defaults, [entry("acme", "acme", server="reg.acme.corp")])
    mutation = config.mutate(runner_pod(), {A: "globex"})
    assert mutation.chaos
    if rewrite_unconfigured:
        # the built-in registry (docker.io/harness) applies; the image is already there
        assert mutation.patch == [
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {"chaosregistry.io/scope": '{"scope":"globex","registries":[]}'},
            }
        ]
    else:
        assert mutation.patch == []
        assert mutation.reason == "hce-ddcr-runner: no ChaosImageRegistry covers scope globex"
    # a covered scope is mutated either way
    assert (
        config.mutate(runner_pod(), {A: "acme"}).patch[0]["value"]
        == "reg.acme.corp/harness/chaos-ddcr:1.47.0"
    )


@pytest.mark.parametrize("component", ["ddcrFault", "ddcrLib"])
def test_a_rule_may_name_either_component_of_a_repository(component: str) -> None:
    # chaos-ddcr-faults is ddcrFault and, on helper pods, ddcrLib: a rule naming either must match it.
    defaults = load_defaults(
        {
            "chaosPods": [
                {"name": "hce-fault-or-helper", "enabled": False, "components": ["ddcr"]},
                {"name": "faults-only", "components": [component]},
            ]
        }
    )
    classifier = PodClassifier(defaults)
    assert (
        classifier.matching_rule(pod({}, "harness/chaos-ddcr-faults:1.47.0", name="f-helper-1"))
        == "faults-only"
    )
    assert classifier.matching_rule(pod({}, "harness/chaos-log-watcher:1.47.0")) is None


def test_namespace_labels_keep_only_the_scope_and_opt_out_labels() -> None:
    labels = NamespaceLabels(
        {
            "chaosregistry.io/account": "acme",
            "chaosregistry.io/organization": "payments",
            "chaosregistry.io/inject": "false",
            "chaosregistry.io/other": "ignored",
            "istio-injection": "enabled",
            "chaosregistry.io/project": 7,  # not a string: as if absent
        }
    )
    assert dict(labels) == {
        "chaosregistry.io/account": "acme",
        "chaosregistry.io/organization": "payments",
        "chaosregistry.io/inject": "false",
    }
    assert len(labels) == 3
    assert labels.get("chaosregistry.io/project") is None
    assert labels.get("istio-injection", "default") == "default"
    assert labels["chaosregistry.io/account"] == "acme"
    with pytest.raises(KeyError):
        labels["chaosregistry.io/infrastructure"]
    assert opted_out(labels)
    assert scope_from_labels(labels, "default").scope == Scope(("acme", "payments"))


def test_namespace_labels_compare_by_value_and_empty_ones_are_falsy() -> None:
    one = NamespaceLabels({"chaosregistry.io/account": "acme", "team": "a"})
    assert one == NamespaceLabels({"chaosregistry.io/account": "acme", "team": "b"})
    assert one == {"chaosregistry.io/account": "acme"}
    assert one != NamespaceLabels({"chaosregistry.io/account": "other"})
    assert not NamespaceLabels(None) and not NamespaceLabels({})
    assert not opted_out(NamespaceLabels(None))

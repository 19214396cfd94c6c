"""Tests for webhook.core.mutator through CompiledConfig.mutate: what a mutation does
(docs/contract.md#mutation).

Each test builds a small configuration, mutates a pod, applies the JSON Patch with
webhook.core.jsonpatch and checks the result; most also check that a second pass changes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.unit.conftest import EntryFactory, PodLoader, make_entry
from webhook.core.jsonpatch import apply_patch, escape_pointer
from webhook.core.loader import LoadedConfig
from webhook.core.models import DefaultsConfig
from webhook.core.mutator import Rewrite
from webhook.core.snapshot import CompiledConfig, Mutation

NS = {"chaosregistry.io/account": "acme"}
ORIGINALS = "chaosregistry.io/original-images"
SCOPE = "chaosregistry.io/scope"
DIGEST = "sha256:" + "4f3c2b1a0e9d8c7b" * 4
PLATFORM = "us-docker.pkg.dev/acme-prod/chaos-public/litmuschaos"
RUNNER_LABELS = {"ddcr.app/name": "chaos-ddcr"}


def compiled(defaults: DefaultsConfig, **fields: Any) -> CompiledConfig:
    """One account-level resource for `acme` with `fields` (default: server reg.acme.corp, account chaos)."""
    fields.setdefault("server", "reg.acme.corp")
    fields.setdefault("account", "chaos")
    return CompiledConfig(defaults, [make_entry("acme", "acme", **fields)])


def make_pod(
    containers: list[Any] | None = None,
    *,
    name: str = "runner",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": RUNNER_LABELS if labels is None else labels},
        "spec": {"containers": containers if containers is not None else [], **spec},
    }
    return pod


def container(name: str, image: str, **env: str | dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "image": image}
    if env:
        result["env"] = [
            {"name": key, "valueFrom": value} if isinstance(value, dict) else {"name": key, "value": value}
            for key, value in env.items()
        ]
    return result


def run(
    config: CompiledConfig,
    pod: dict[str, Any],
    labels: dict[str, str] | None = None,
    old_pod: dict[str, Any] | None = None,
) -> tuple[Mutation, dict[str, Any]]:
    """Mutate `pod`, apply the patch, and check that the patched pod is left alone by a second pass."""
    before = copy.deepcopy(pod)
    mutation = config.mutate(pod, NS if labels is None else labels, old_pod)
    assert pod == before, "the mutator must not modify the pod it reads"
    patched = apply_patch(pod, mutation.patch)
    again = config.mutate(patched, NS if labels is None else labels, old_pod)
    assert again.patch == [], "mutating twice must change nothing"
    return mutation, patched


def images_of(pod: dict[str, Any]) -> dict[str, str]:
    return {
        c["name"]: c["image"]
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in pod["spec"].get(key) or []
    }


def env_of(pod: dict[str, Any], container_name: str) -> dict[str, Any]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod["spec"].get(key) or []:
            if c["name"] == container_name:
                return {v["name"]: v.get("value", v.get("valueFrom")) for v in c.get("env", [])}
    raise KeyError(container_name)


def originals_of(pod: dict[str, Any]) -> dict[str, str]:
    originals: dict[str, str] = json.loads(pod["metadata"]["annotations"][ORIGINALS])
    return originals


# --- which images are rewritten -------------------------------------------------------------------


def test_every_container_list_is_rewritten(defaults: DefaultsConfig) -> None:
    pod = make_pod(
        [container("main", "harness/chaos-ddcr:1")],
        initContainers=[container("init", "busybox:1.36")],
        ephemeralContainers=[container("debug", "litmuschaos/k8s:3")],
    )
    mutation, patched = run(compiled(defaults), pod)
    assert images_of(patched) == {
        "init": "reg.acme.corp/chaos/busybox:1.36",
        "main": "reg.acme.corp/chaos/chaos-ddcr:1",
        "debug": "reg.acme.corp/chaos/k8s:3",
    }
    assert [op["path"] for op in mutation.patch if op["op"] == "replace"] == [
        "/spec/initContainers/0/image",
        "/spec/containers/0/image",
        "/spec/ephemeralContainers/0/image",
    ]
    assert originals_of(patched) == {
        "init": "busybox:1.36",
        "main": "harness/chaos-ddcr:1",
        "debug": "litmuschaos/k8s:3",
    }
    assert mutation.rewrites == (
        Rewrite("init", None, None, "busybox:1.36", "reg.acme.corp/chaos/busybox:1.36"),
        Rewrite("main", None, "ddcr", "harness/chaos-ddcr:1", "reg.acme.corp/chaos/chaos-ddcr:1"),
        Rewrite("debug", None, "k8s", "litmuschaos/k8s:3", "reg.acme.corp/chaos/k8s:3"),
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LIB_IMAGE", "harness/chaos-ddcr-faults:1.47.0", "reg.acme.corp/chaos/chaos-ddcr-faults:1.47.0"),
        (
            "LOG_WATCHER_IMAGE",
            "harness/chaos-log-watcher:1.47.0",
            "reg.acme.corp/chaos/chaos-log-watcher:1.47.0",
        ),
        ("TC_IMAGE", "gaiadocker/iproute2", "reg.acme.corp/chaos/iproute2"),
        ("STRESS_IMAGE", "alexeiled/stress-ng:latest-ubuntu", "reg.acme.corp/chaos/stress-ng:latest-ubuntu"),
        ("LIB_IMAGE", "reg.acme.corp/chaos/go-runner:3", None),  # already in target form
        ("IMAGE", "harness/chaos-ddcr:1", None),
        ("LIB_IMAGE_PULL_POLICY", "Always", None),
        ("lib_image", "harness/chaos-ddcr-faults:1", None),  # names are exact
        ("TOTAL_CHAOS_DURATION", "60", None),
        ("LIB_IMAGE", "", None),
        ("LIB_IMAGE", {"configMapKeyRef": {"name": "c", "key": "k"}}, None),  # valueFrom is ignored
    ],
)
def test_image_env_vars(defaults: DefaultsConfig, variable: str, value: Any, expected: str | None) -> None:
    pod = make_pod([container("main", "reg.acme.corp/chaos/chaos-ddcr:1", **{variable: value})])
    mutation, patched = run(compiled(defaults), pod)
    if expected is None:
        assert env_of(patched, "main")[variable] == value
        assert not any("/env/" in op["path"] for op in mutation.patch)
    else:
        assert env_of(patched, "main")[variable] == expected
        assert mutation.patch[0] == {
            "op": "replace",
            "path": "/spec/containers/0/env/0/value",
            "value": expected,
        }
        assert originals_of(patched) == {f"main/env/{variable}": value}


def test_env_vars_from_the_defaults(entry: EntryFactory) -> None:
    from webhook.core.models import load_defaults

    defaults = load_defaults({"imageEnvVars": [{"name": "HELPER_IMAGE", "helper": True}]})
    config = CompiledConfig(defaults, [entry("acme", "acme", server="reg.acme.corp", account="chaos")])
    pod = make_pod([container("main", "harness/chaos-ddcr:1", HELPER_IMAGE="x/y:1", OTHER="x/y:1")])
    _, patched = run(config, pod)
    assert env_of(patched, "main") == {"HELPER_IMAGE": "reg.acme.corp/chaos/y:1", "OTHER": "x/y:1"}


def test_env_var_with_value_and_value_from_is_left_alone_when_value_missing(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("main", "harness/chaos-ddcr:1")])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "LIB_IMAGE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "LIB_IMAGE", "value": None},
        "not-a-mapping",
        {"name": "TC_IMAGE", "value": "gaiadocker/iproute2"},
    ]
    mutation, _ = run(compiled(defaults), pod)
    assert [op["path"] for op in mutation.patch if "/env/" in op["path"]] == [
        "/spec/containers/0/env/3/value"
    ]


@pytest.mark.parametrize("name", [["LIB_IMAGE"], {"x": 1}, None, 3])
def test_env_var_with_a_name_that_is_not_a_string_is_skipped(defaults: DefaultsConfig, name: Any) -> None:
    # The apiserver never sends these, but the CLI reads hand-written pods: no crash, just skipped.
    pod = make_pod([container("main", "harness/chaos-ddcr:1")])
    pod["spec"]["containers"][0]["env"] = [
        {"name": name, "value": "x/y"},
        {"name": "LIB_IMAGE", "value": "x/y"},
    ]
    _, patched = run(compiled(defaults), pod)
    assert [v.get("value") for v in patched["spec"]["containers"][0]["env"]] == [
        "x/y",
        "reg.acme.corp/chaos/y",
    ]


# --- ddcrFault vs ddcrLib -------------------------------------------------------------------------

CUSTOM = {
    "ddcr": "custom.acme.corp/hce/chaos-ddcr:9.0.0",
    "logWatcher": "custom.acme.corp/hce/chaos-log-watcher:9.0.0",
    "ddcrFault": "custom.acme.corp/hce/fault/chaos-ddcr-faults:9.0.0",
    "ddcrLib": "custom.acme.corp/hce/lib/chaos-ddcr-faults:9.0.0",
}
FAULTS = "docker.io/harness/chaos-ddcr-faults:1.47.0"


@pytest.mark.parametrize(
    ("name", "generate_name", "container_expected", "log_watcher_env_expected"),
    [
        ("pod-network-loss-1717-abcde", None, CUSTOM["ddcrFault"], CUSTOM["ddcrFault"]),
        ("pod-network-loss-helper-k8x2q", None, CUSTOM["ddcrLib"], CUSTOM["ddcrLib"]),
        (None, "pod-network-loss-helper-", CUSTOM["ddcrLib"], CUSTOM["ddcrLib"]),
    ],
)
def test_ddcr_faults_is_fault_in_fault_pods_and_lib_in_helpers_and_lib_image(
    defaults: DefaultsConfig,
    name: str | None,
    generate_name: str | None,
    container_expected: str,
    log_watcher_env_expected: str,
) -> None:
    pod = make_pod(
        [
            container("log-watcher", "harness/chaos-log-watcher:1.47.0"),
            container("fault", FAULTS, LIB_IMAGE=FAULTS, TC_IMAGE=FAULTS, LOG_WATCHER_IMAGE=FAULTS),
        ],
        labels={},  # HCE fault pods carry no labels: the catalog images make them chaos pods
    )
    del pod["metadata"]["name"]
    if name:
        pod["metadata"]["name"] = name
    if generate_name:
        pod["metadata"]["generateName"] = generate_name
    mutation, patched = run(compiled(defaults, custom_enabled=True, custom_images=CUSTOM), pod)
    assert images_of(patched) == {"log-watcher": CUSTOM["logWatcher"], "fault": container_expected}
    assert env_of(patched, "fault") == {
        "LIB_IMAGE": CUSTOM["ddcrLib"],  # LIB_IMAGE is always the helper image
        "TC_IMAGE": CUSTOM["ddcrLib"],
        "LOG_WATCHER_IMAGE": log_watcher_env_expected,  # not a helper variable: follows the pod
    }
    components = {(r.container, r.env): r.component for r in mutation.rewrites}
    assert components[("fault", "LIB_IMAGE")] == "ddcrLib"
    assert components[("fault", None)] == (
        "ddcrLib" if container_expected == CUSTOM["ddcrLib"] else "ddcrFault"
    )
    assert mutation.warnings == ()


def test_custom_images_are_used_verbatim(defaults: DefaultsConfig) -> None:
    pod = make_pod(
        [
            container("a", "harness/chaos-ddcr:1.47.0"),
            container("b", f"harness/chaos-log-watcher@{DIGEST}"),
            container("c", "busybox:1.36"),  # no component: follows the registry
        ]
    )
    custom = {"ddcr": "other.io/x/my-ddcr:7", "logWatcher": "other.io/y/chaos-log-watcher:9@" + DIGEST}
    _, patched = run(compiled(defaults, custom_enabled=True, custom_images=custom), pod)
    assert images_of(patched) == {
        "a": "other.io/x/my-ddcr:7",  # not the original tag, not the registry
        "b": "other.io/y/chaos-log-watcher:9@" + DIGEST,
        "c": "reg.acme.corp/chaos/busybox:1.36",
    }


@pytest.mark.parametrize(
    ("image", "component"),
    [
        ("litmuschaos/litmusportal-subscriber:3.11.0", "subscriber"),
        ("litmuschaos/litmusportal-event-tracker:3.11.0", "eventTracker"),
        ("example.org/litmus/subscriber:3.11.0", "subscriber"),
        ("example.org/litmus/event-tracker:3.11.0", "eventTracker"),
    ],
)
def test_litmus_infrastructure_images_are_found_under_either_name(
    defaults: DefaultsConfig, image: str, component: str
) -> None:
    # LitmusChaos publishes its subscriber and event tracker as litmusportal-*: a custom image set
    # for the component must reach the pods that run them.
    custom = {"subscriber": "custom.acme.corp/litmus/sub:1", "eventTracker": "custom.acme.corp/litmus/et:1"}
    mutation, patched = run(
        compiled(defaults, custom_enabled=True, custom_images=custom), make_pod([container("a", image)])
    )
    assert images_of(patched) == {"a": custom[component]}
    assert [r.component for r in mutation.rewrites] == [component]


def test_custom_images_not_enabled_are_ignored(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "harness/chaos-ddcr:1.47.0")])
    mutation, patched = run(compiled(defaults, custom_enabled=False, custom_images={"ddcr": "x.io/d:1"}), pod)
    assert images_of(patched) == {"a": "reg.acme.corp/chaos/chaos-ddcr:1.47.0"}
    assert mutation.warnings == ()


def test_warning_when_a_component_has_no_custom_image(defaults: DefaultsConfig) -> None:
    pod = make_pod(
        [
            container("a", "harness/chaos-ddcr:1.47.0"),
            container("b", "harness/chaos-log-watcher:1.47.0"),
            container("c", "busybox"),
        ]
    )
    config = compiled(defaults, custom_enabled=True, custom_images={"ddcr": "x.io/chaos-ddcr:2"})
    mutation, patched = run(config, pod)
    assert images_of(patched) == {
        "a": "x.io/chaos-ddcr:2",
        "b": "reg.acme.corp/chaos/chaos-log-watcher:1.47.0",
        "c": "reg.acme.corp/chaos/busybox",
    }
    assert mutation.warnings == (
        "custom images are enabled but component logWatcher has none: chaos-log-watcher rewritten to "
        "registry reg.acme.corp",
    )


def test_custom_image_outside_the_catalog_is_stable(defaults: DefaultsConfig) -> None:
    # The custom image's repository (my-ddcr) is not in the catalog: it is still a target, so neither a
    # reinvocation without the annotation nor an ephemeral-container UPDATE moves it again.
    config = compiled(defaults, custom_enabled=True, custom_images={"ddcr": "other.io/x/my-ddcr:7"})
    bare = make_pod([container("a", "other.io/x/my-ddcr:7")])
    assert config.mutate(bare, NS).patch == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {SCOPE: '{"scope":"acme","registries":["acme"]}'},
        }
    ]
    old = make_pod([container("a", "other.io/x/my-ddcr:7")])
    new = make_pod(
        [container("a", "other.io/x/my-ddcr:7")],
        ephemeralContainers=[container("dbg", "harness/chaos-ddcr:1")],
    )
    _mutation, patched = run(config, new, old_pod=old)
    assert images_of(patched)["dbg"] == "other.io/x/my-ddcr:7"


# --- images that cannot be rewritten --------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("harness/chaos-ddcr:", "tag is empty"),
        ("Harness/Chaos-DDCR", "must be lowercase"),
        ("harness/chaos ddcr", "invalid character ' '"),
        ("https://docker.io/harness/chaos-ddcr", "must not include a scheme"),
        ("harness/chaos-ddcr@sha256:abc", "digest"),
    ],
)
def test_unparseable_image_warns_and_others_are_still_rewritten(
    defaults: DefaultsConfig, image: str, reason: str
) -> None:
    pod = make_pod([container("bad", image), container("good", "harness/chaos-ddcr:1", LIB_IMAGE=image)])
    mutation, patched = run(compiled(defaults), pod)
    assert images_of(patched) == {"bad": image, "good": "reg.acme.corp/chaos/chaos-ddcr:1"}
    assert env_of(patched, "good") == {"LIB_IMAGE": image}
    assert len(mutation.warnings) == 1  # one warning per distinct problem
    assert mutation.warnings[0].startswith(f"image {image!r} left unchanged: ")
    assert reason in mutation.warnings[0]
    assert originals_of(patched) == {"good": "harness/chaos-ddcr:1"}


def test_missing_or_empty_images_are_skipped(defaults: DefaultsConfig) -> None:
    pod = make_pod(
        [{"name": "a"}, {"name": "b", "image": ""}, "junk", container("c", "harness/chaos-ddcr:1")]
    )
    mutation, _patched = run(compiled(defaults), pod)
    assert [op["path"] for op in mutation.patch if op["op"] == "replace"] == ["/spec/containers/3/image"]
    assert mutation.warnings == ()


def test_rewritten_image_that_would_be_too_long_is_left_with_a_warning(defaults: DefaultsConfig) -> None:
    server = "reg.acme.corp/" + "/".join(["mirror"] * 34)
    config = compiled(defaults, server=server, account="chaos")
    pod = make_pod([container("a", "harness/chaos-ddcr:1"), container("b", "busybox")])
    mutation, patched = run(config, pod)
    assert images_of(patched) == {"a": "harness/chaos-ddcr:1", "b": "busybox"}
    assert len(mutation.warnings) == 2
    assert all("would be invalid: repository name must not be more than 255" in w for w in mutation.warnings)


# --- the shape of rewritten images ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "server", "account", "expected"),
    [
        ("harness/chaos-ddcr:1.47.0", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/chaos-ddcr:1.47.0"),
        (
            f"harness/chaos-ddcr@{DIGEST}",
            "reg.acme.corp",
            "chaos",
            f"reg.acme.corp/chaos/chaos-ddcr@{DIGEST}",
        ),
        (
            f"harness/chaos-ddcr:1.47.0@{DIGEST}",
            "reg.acme.corp",
            "chaos",
            f"reg.acme.corp/chaos/chaos-ddcr:1.47.0@{DIGEST}",
        ),
        ("harness/chaos-ddcr", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/chaos-ddcr"),
        ("nginx", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/nginx"),
        ("ubuntu:16.04", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/ubuntu:16.04"),
        (
            "harness/chaos-ddcr:1.47.0",
            "registry.acme.corp:5000/mirror",
            "harness",
            "registry.acme.corp:5000/mirror/harness/chaos-ddcr:1.47.0",
        ),
        (
            "harness/chaos-ddcr:1.74.1",
            "us-docker.pkg.dev/gar-prod-setup/harness-public",
            "harness",
            "us-docker.pkg.dev/gar-prod-setup/harness-public/harness/chaos-ddcr:1.74.1",
        ),
        ("harness/chaos-ddcr:1", "reg.acme.corp", "", "reg.acme.corp/chaos-ddcr:1"),
        ("harness/chaos-ddcr:1", "reg.acme.corp", "chaos/hce", "reg.acme.corp/chaos/hce/chaos-ddcr:1"),
        ("harness/chaos-ddcr:1", "localhost:5000", "", "localhost:5000/chaos-ddcr:1"),
        ("harness/chaos-ddcr:1", "[::1]:5000", "x", "[::1]:5000/x/chaos-ddcr:1"),
        # localhost:5000/x and reg:5000/x name a registry, not a Docker Hub namespace
        ("localhost:5000/x", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/x"),
        ("localhost:5000/team/x:2", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/x:2"),
        ("reg:5000/x", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/x"),
        ("localhost/x:1", "reg.acme.corp", "chaos", "reg.acme.corp/chaos/x:1"),
        (
            "ghcr.io/grafana/k6-operator:latest-runner",
            "reg.acme.corp",
            "chaos",
            "reg.acme.corp/chaos/k6-operator:latest-runner",
        ),
        (
            "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:latest",
            "reg.acme.corp",
            "chaos",
            "reg.acme.corp/chaos/go-runner:latest",
        ),
        # already in target form, possibly spelled differently: left alone
        ("reg.acme.corp/chaos/chaos-ddcr:1", "reg.acme.corp", "chaos", None),
        ("harness/chaos-ddcr:1", "docker.io", "harness", None),
        ("docker.io/harness/chaos-ddcr:1", "docker.io", "harness", None),
        ("index.docker.io/harness/chaos-ddcr:1", "docker.io", "harness", None),
        ("nginx:1", "docker.io", "", None),
        ("docker.io/library/nginx:1", "docker.io", "library", None),
        ("localhost:5000/chaos-ddcr:1", "localhost:5000", "", None),
    ],
)
def test_rewritten_image_shape(
    defaults: DefaultsConfig, image: str, server: str, account: str, expected: str | None
) -> None:
    pod = make_pod([container("a", image)])
    mutation, patched = run(compiled(defaults, server=server, account=account), pod)
    assert images_of(patched) == {"a": expected or image}
    if expected is None:
        assert not any(op["path"].endswith("/image") for op in mutation.patch)
        assert ORIGINALS not in patched["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("server", "account", "image", "expected"),
    [
        ("reg.acme.corp", "proxy", "proxy/nginx", "reg.acme.corp/proxy/nginx"),
        ("proxy.acme.corp", "", "proxy/nginx", "proxy.acme.corp/nginx"),
        ("proxy.acme.corp", "proxy", "nginx", "proxy.acme.corp/proxy/nginx"),
        ("localhost:5000", "proxy", "proxy/nginx:1", "localhost:5000/proxy/nginx:1"),
    ],
)
def test_no_prefix_growth_on_a_second_pass(
    defaults: DefaultsConfig, server: str, account: str, image: str, expected: str
) -> None:
    config = compiled(defaults, server=server, account=account)
    _, patched = run(config, make_pod([container("a", image)]))
    assert images_of(patched) == {"a": expected}
    # even without the annotation that records the original, the target is left alone
    del patched["metadata"]["annotations"]
    again = config.mutate(patched, NS)
    assert not any(op["path"].endswith("/image") for op in again.patch)


# --- the record of originals ----------------------------------------------------------------------


def test_recorded_original_whose_target_is_current_means_already_mutated(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "reg.acme.corp/chaos/chaos-ddcr:1")])
    pod["metadata"]["annotations"] = {ORIGINALS: json.dumps({"a": "harness/chaos-ddcr:1"})}
    mutation = compiled(defaults).mutate(pod, NS)
    assert [op["path"] for op in mutation.patch] == ["/metadata/annotations/chaosregistry.io~1scope"]


def test_changed_image_is_rewritten_and_recorded_again(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "harness/chaos-log-watcher:2")])
    pod["metadata"]["annotations"] = {ORIGINALS: json.dumps({"a": "harness/chaos-ddcr:1", "gone": "x/y"})}
    _, patched = run(compiled(defaults), pod)
    assert images_of(patched) == {"a": "reg.acme.corp/chaos/chaos-log-watcher:2"}
    assert originals_of(patched) == {"a": "harness/chaos-log-watcher:2", "gone": "x/y"}


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '{"a": 1}', "null"])
def test_bad_original_images_annotation_is_replaced(defaults: DefaultsConfig, bad: str) -> None:
    pod = make_pod([container("a", "harness/chaos-ddcr:1")])
    pod["metadata"]["annotations"] = {ORIGINALS: bad}
    mutation, patched = run(compiled(defaults), pod)
    assert originals_of(patched) == {"a": "harness/chaos-ddcr:1"}
    assert f"annotation {ORIGINALS} is not a JSON object of strings: replaced" in mutation.warnings


# --- pull secrets ---------------------------------------------------------------------------------

PRIVATE = {"type": "Private", "secret_name": "acme-pull"}


@pytest.mark.parametrize(
    ("existing", "operation", "result"),
    [
        ("absent", {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "acme-pull"}]}, None),
        (None, {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "acme-pull"}]}, None),
        ([], {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "acme-pull"}}, None),
        (
            [{"name": "other"}],
            {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "acme-pull"}},
            [{"name": "other"}, {"name": "acme-pull"}],
        ),
        ([{"name": "acme-pull"}], None, [{"name": "acme-pull"}]),
        ([{"name": "other"}, {"name": "acme-pull"}], None, [{"name": "other"}, {"name": "acme-pull"}]),
    ],
)
def test_pull_secret_is_appended_once(
    defaults: DefaultsConfig, existing: Any, operation: dict[str, Any] | None, result: Any
) -> None:
    pod = make_pod([container("a", "harness/chaos-ddcr:1")])
    if existing != "absent":
        pod["spec"]["imagePullSecrets"] = copy.deepcopy(existing)
    mutation, patched = run(compiled(defaults, **PRIVATE), pod)
    secret_ops = [op for op in mutation.patch if op["path"].startswith("/spec/imagePullSecrets")]
    assert secret_ops == ([operation] if operation else [])
    assert patched["spec"]["imagePullSecrets"] == (result or [{"name": "acme-pull"}])


def test_public_registry_adds_no_pull_secret(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "harness/chaos-ddcr:1")], imagePullSecrets=[{"name": "x"}])
    mutation, patched = run(compiled(defaults, type="Public", secret_name="acme-pull"), pod)
    assert patched["spec"]["imagePullSecrets"] == [{"name": "x"}]
    assert not any("imagePullSecrets" in op["path"] for op in mutation.patch)


def test_pull_secret_even_when_no_image_changes(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "reg.acme.corp/chaos/chaos-ddcr:1")])
    _mutation, patched = run(compiled(defaults, **PRIVATE), pod)
    assert patched["spec"]["imagePullSecrets"] == [{"name": "acme-pull"}]


def test_resolution_problems_become_warnings(defaults: DefaultsConfig, entry: EntryFactory) -> None:
    config = CompiledConfig(defaults, [entry("acme", "acme", server="reg.acme.corp", type="Private")])
    mutation, patched = run(config, make_pod([container("a", "harness/chaos-ddcr:1")]))
    assert "imagePullSecrets" not in patched["spec"]
    assert any("has no registry.secretName" in w for w in mutation.warnings)


# --- annotations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "paths"),
    [
        ({"name": "r", "labels": RUNNER_LABELS}, ["/metadata/annotations"]),
        ({"name": "r", "labels": RUNNER_LABELS, "annotations": None}, ["/metadata/annotations"]),
        (
            {"name": "r", "labels": RUNNER_LABELS, "annotations": {}},
            [
                "/metadata/annotations/chaosregistry.io~1original-images",
                "/metadata/annotations/chaosregistry.io~1scope",
            ],
        ),
        (
            {"name": "r", "labels": RUNNER_LABELS, "annotations": {"a/b~c": "keep"}},
            [
                "/metadata/annotations/chaosregistry.io~1original-images",
                "/metadata/annotations/chaosregistry.io~1scope",
            ],
        ),
    ],
)
def test_annotations(defaults: DefaultsConfig, metadata: dict[str, Any], paths: list[str]) -> None:
    pod = make_pod([container("a", "harness/chaos-ddcr:1")])
    pod["metadata"] = metadata
    mutation, patched = run(compiled(defaults), pod)
    assert [op["path"] for op in mutation.patch if op["path"].startswith("/metadata")] == paths
    annotations = patched["metadata"]["annotations"]
    assert json.loads(annotations[ORIGINALS]) == {"a": "harness/chaos-ddcr:1"}
    assert json.loads(annotations[SCOPE]) == {"scope": "acme", "registries": ["acme"]}
    for key, value in (metadata.get("annotations") or {}).items():
        assert annotations[key] == value


def test_pod_without_metadata_gets_annotations(defaults: DefaultsConfig) -> None:
    pod = {"spec": {"containers": [container("a", "harness/chaos-ddcr:1")]}}
    mutation, patched = run(compiled(defaults), pod)
    assert mutation.patch[-1]["path"] == "/metadata"
    assert set(patched["metadata"]["annotations"]) == {ORIGINALS, SCOPE}


def test_scope_annotation_names_scope_and_applied_resources(
    defaults: DefaultsConfig, entry: EntryFactory
) -> None:
    config = CompiledConfig(
        defaults,
        [
            entry("acme", "acme", allow_overrides=True, server="reg.acme.corp"),
            entry("retail", "acme/retail", server="reg.retail.corp"),
            entry("blocked", "acme/retail/payments", server="reg.blocked.corp"),
        ],
    )
    labels = {**NS, "chaosregistry.io/organization": "retail", "chaosregistry.io/project": "payments"}
    _, patched = run(config, make_pod([container("a", "harness/chaos-ddcr:1")]), labels)
    assert json.loads(patched["metadata"]["annotations"][SCOPE]) == {
        "scope": "acme/retail/payments",
        "registries": ["acme", "retail"],
    }


def test_stale_scope_annotation_is_replaced(defaults: DefaultsConfig) -> None:
    pod = make_pod([container("a", "reg.acme.corp/chaos/chaos-ddcr:1")])
    pod["metadata"]["annotations"] = {SCOPE: '{"scope":"other","registries":[]}'}
    mutation, _patched = run(compiled(defaults), pod)
    assert mutation.patch == [
        {
            "op": "add",
            "path": "/metadata/annotations/chaosregistry.io~1scope",
            "value": '{"scope":"acme","registries":["acme"]}',
        }
    ]


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("chaosregistry.io/scope", "chaosregistry.io~1scope"),
        ("a~b", "a~0b"),
        ("~1", "~01"),
        ("/~/", "~1~0~1"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_json_pointer_escaping(token: str, escaped: str) -> None:
    assert escape_pointer(token) == escaped
    patched = apply_patch({"m": {}}, [{"op": "add", "path": f"/m/{escaped}", "value": 1}])
    assert patched == {"m": {token: 1}}


# --- UPDATE of pods/ephemeralcontainers -----------------------------------------------------------


def test_ephemeral_update_only_touches_new_ephemeral_containers(defaults: DefaultsConfig) -> None:
    spec: dict[str, Any] = {
        "initContainers": [container("init", "busybox")],
        "ephemeralContainers": [container("dbg-1", "busybox:1")],
    }
    old = make_pod([container("main", "harness/chaos-ddcr:1", LIB_IMAGE=FAULTS)], **copy.deepcopy(spec))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"].append(container("dbg-2", "busybox:2", LIB_IMAGE=FAULTS))
    mutation, patched = run(compiled(defaults, **PRIVATE), new, old_pod=old)
    assert mutation.patch == [
        {
            "op": "replace",
            "path": "/spec/ephemeralContainers/1/image",
            "value": "reg.acme.corp/chaos/busybox:2",
        },
        {
            "op": "replace",
            "path": "/spec/ephemeralContainers/1/env/0/value",
            "value": "reg.acme.corp/chaos/chaos-ddcr-faults:1.47.0",
        },
    ]
    # no annotations, no pull secret: the apiserver drops anything but ephemeral containers there
    assert "annotations" not in patched["metadata"]
    assert "imagePullSecrets" not in patched["spec"]


def test_ephemeral_update_of_a_pod_without_ephemeral_containers(defaults: DefaultsConfig) -> None:
    old = make_pod([container("main", "harness/chaos-ddcr:1")])
    new = make_pod(
        [container("main", "harness/chaos-ddcr:1")], ephemeralContainers=[container("dbg", "busybox")]
    )
    mutation, _ = run(compiled(defaults), new, old_pod=old)
    assert [op["path"] for op in mutation.patch] == ["/spec/ephemeralContainers/0/image"]


# --- whole example pods ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_name", "expected_images", "pull_secret"),
    [
        (
            "hce-fault",
            {
                "log-watcher": "registry.retail.acme.corp/chaos/chaos-log-watcher:1.47.0",
                "fault": "registry.retail.acme.corp/chaos/chaos-ddcr-faults:1.47.0",
            },
            True,
        ),
        (
            "hce-helper",
            {
                "helper": "registry.retail.acme.corp/harness/chaos-ddcr-faults:1.47.0"
                "@sha256:4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
            },
            True,
        ),
        ("hce-ddcr-runner", {"scheduler": "registry.retail.acme.corp/chaos/chaos-ddcr:1.47.0"}, True),
        (
            "litmus-helper",
            {"pod-network-loss-helper-hq8vz": f"{PLATFORM}/go-runner:latest"},
            False,
        ),
        (
            "argo-step",
            {
                "init": f"{PLATFORM}/argoexec:v3.4.16",
                "wait": f"{PLATFORM}/argoexec:v3.4.16",
                "main": f"{PLATFORM}/k8s:3.11.0",
            },
            False,
        ),
        ("not-chaos", {"nginx": "nginx:1.27"}, False),
    ],
)
def test_example_pods(
    examples_config: LoadedConfig,
    example_pod: PodLoader,
    pod_name: str,
    expected_images: dict[str, str],
    pull_secret: bool,
) -> None:
    pod = example_pod(pod_name)
    snapshot = examples_config.snapshot()
    namespace = pod["metadata"]["namespace"]
    mutation = snapshot.admit(pod, namespace)
    patched = apply_patch(pod, mutation.patch)
    assert images_of(patched) == expected_images
    assert ({"name": "acme-pull"} in (patched["spec"].get("imagePullSecrets") or [])) is pull_secret
    assert snapshot.admit(patched, namespace).patch == []
    if pod_name == "litmus-helper":
        assert patched["spec"]["imagePullSecrets"] == [{"name": "existing-secret"}]


def test_rewriter_caches_targets(examples_config: LoadedConfig) -> None:
    from webhook.core.models import Scope

    rewriter = examples_config.compile().rewriter(Scope.parse("acme"))
    first = rewriter.target_image("harness/chaos-ddcr:1", False)
    again = rewriter.target_image("harness/chaos-ddcr:1", False)
    assert again == first and again.image is first.image  # computed once, kept
    # Cached apart in a helper pod, where a component may differ.
    fault = rewriter.target_image("harness/chaos-ddcr-faults:1", False)
    lib = rewriter.target_image("harness/chaos-ddcr-faults:1", True)
    assert (fault.component, lib.component) == ("ddcrFault", "ddcrLib")
    assert rewriter.target_image("harness/chaos-ddcr-faults:1", True) == lib
    assert rewriter.target_image("harness/chaos-ddcr-faults:1", False) == fault
    assert first.image == "registry.acme.corp:5000/mirror/harness/chaos-ddcr:1"
    assert rewriter.settled("harness/chaos-ddcr:1", first.image, False)
    assert not rewriter.settled("harness/chaos-ddcr:1", "harness/chaos-ddcr:1", False)
    # The component of a rewrite's record, known apart from the cached target (which may be the new
    # image alone), asked before and after the target.
    assert rewriter.component("harness/chaos-ddcr-faults:2", True) == "ddcrLib"
    assert rewriter.component("harness/chaos-ddcr-faults:1", False) == "ddcrFault"
    assert rewriter.component("example.com/not-in-the-catalog:1", False) is None
    assert rewriter.component("not a reference", False) is None


def test_scope_annotations_stay_right_while_the_bounded_caches_churn(
    examples_config: LoadedConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from webhook.core import mutator
    from webhook.core.models import Scope

    monkeypatch.setattr(mutator, "_CACHE_LIMIT", 1)
    config = examples_config.compile()
    scopes = [Scope.parse("acme"), Scope.parse("acme/retail")]
    for _ in range(2):
        for scope in scopes:
            rewriter = config.rewriter(scope)
            effective = rewriter.effective
            assert json.loads(rewriter.scope_annotation) == {
                "scope": str(effective.scope),
                "registries": list(effective.applied),
            }
            assert rewriter.scope_annotation == json.dumps(
                {"scope": str(effective.scope), "registries": list(effective.applied)}, separators=(",", ":")
            )

"""Property tests of the core (docs/contract.md) with Hypothesis: random pods against random configurations.

Pods get random container lists (init, regular, ephemeral), images from a pool that mixes catalog
images, arbitrary valid references and garbage, random env, labels, annotations and pull secrets.
Configurations are random ChaosImageRegistry sets over a small scope tree. The properties:

* the patch always applies, and mutating the mutated pod yields [] (idempotent);
* the patched pod is exactly what `chaos-registry mutate` prints;
* non-chaos pods never get a patch;
* a lock (allowOverrides false) cannot be undone by any resource below it;
* the patch only touches images, env values of the listed variables, imagePullSecrets and the two
  annotations.
"""

from __future__ import annotations

import copy
import io
import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from webhook.cli.main import main
from webhook.core.jsonpatch import apply_patch
from webhook.core.models import LEVELS, ChaosImageRegistry, DefaultsConfig, Scope, load_defaults
from webhook.core.resolver import RegistryEntry, RegistryIndex
from webhook.core.snapshot import CompiledConfig, Snapshot

DEFAULTS: DefaultsConfig = load_defaults()
REWRITE_ALL: DefaultsConfig = load_defaults({"rewriteUnconfiguredScopes": True})
IMAGE_VARS = frozenset(var.name for var in DEFAULTS.image_env_vars)
ORIGINALS = "chaosregistry.io/original-images"
SCOPE_ANNOTATION = "chaosregistry.io/scope"
LISTS = ("initContainers", "containers", "ephemeralContainers")
PROFILE = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DIGEST = "sha256:" + "0123456789abcdef" * 4

# --- scopes and namespaces ------------------------------------------------------------------------

TREE = {
    "acme": {"retail": {"payments": ["prod", "dev"], "web": ["prod"]}, "platform": {"litmus": ["prod"]}},
    "globex": {"ops": {"chaos": ["dev"]}},
}


def _all_scopes() -> list[tuple[str, ...]]:
    scopes: list[tuple[str, ...]] = []
    for account, orgs in TREE.items():
        scopes.append((account,))
        for org, projects in orgs.items():
            scopes.append((account, org))
            for project, infras in projects.items():
                scopes.append((account, org, project))
                scopes.extend((account, org, project, infra) for infra in infras)
    return scopes


SCOPES = _all_scopes()
DEEPEST = [s for s in SCOPES if len(s) == 4]
LABELS = LEVELS


def _namespace_labels(parts: tuple[str, ...]) -> dict[str, str]:
    return {f"chaosregistry.io/{level}": part for level, part in zip(LABELS, parts, strict=False)}


NAMESPACES: dict[str, dict[str, str]] = {f"ns-{'-'.join(s)}": _namespace_labels(s) for s in SCOPES}
NAMESPACES["ns-unlabelled"] = {}
NAMESPACES["ns-broken"] = {"chaosregistry.io/account": "acme", "chaosregistry.io/project": "payments"}
NAMESPACES["ns-opted-out"] = {**_namespace_labels(("acme", "retail")), "chaosregistry.io/inject": "false"}
NAMESPACE_NAMES = sorted(NAMESPACES)

# --- registries -----------------------------------------------------------------------------------

SERVERS = [
    "reg.acme.corp",
    "registry.acme.corp:5000/mirror",
    "localhost:5000",
    "us-docker.pkg.dev/acme-prod/chaos-public",
    "docker.io",
    "proxy.acme.corp",
]
ACCOUNTS = ["", "harness", "chaos/hce", "litmuschaos", "proxy"]
# Custom images keep their component's repository name, or use one outside the catalog.
CUSTOM = {
    "ddcr": ["custom.acme.corp/hce/chaos-ddcr:9.0.0", "custom.acme.corp/x/my-ddcr:7"],
    "logWatcher": ["custom.acme.corp/hce/chaos-log-watcher:9.0.0", f"custom.acme.corp/lw@{DIGEST}"],
    "ddcrFault": ["custom.acme.corp/fault/chaos-ddcr-faults:9.0.0", "custom.acme.corp/my-fault:1"],
    "ddcrLib": ["custom.acme.corp/lib/chaos-ddcr-faults:9.0.0", "custom.acme.corp/my-lib:1"],
    "goRunner": ["custom.acme.corp/litmus/go-runner:3.12.0"],
    "chaosRunner": ["localhost:5000/chaos-runner:1"],
}


@st.composite
def registry_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to 8 ChaosImageRegistry documents (valid ones) over the scope tree."""
    count = draw(st.integers(0, 8))
    documents = []
    for index in range(count):
        parts = draw(st.sampled_from(SCOPES))
        scope = dict(zip(LABELS, parts, strict=False))
        registry: dict[str, Any] = {}
        if draw(st.booleans()):
            registry["server"] = draw(st.sampled_from(SERVERS))
        if draw(st.booleans()):
            registry["account"] = draw(st.sampled_from(ACCOUNTS))
        kind = draw(st.sampled_from([None, "Public", "Private"]))
        if kind:
            registry["type"] = kind
        if kind == "Private" or draw(st.booleans()):
            registry["secretName"] = draw(st.sampled_from(["acme-pull", "other-pull"]))
        if draw(st.booleans()):
            registry["secretNamespace"] = "chaos-system"
        spec: dict[str, Any] = {"scope": scope, "allowOverrides": draw(st.booleans())}
        if registry:
            spec["registry"] = registry
        custom: dict[str, Any] = {}
        enabled = draw(st.sampled_from([None, True, False]))
        if enabled is not None:
            custom["enabled"] = enabled
        components = draw(st.lists(st.sampled_from(sorted(CUSTOM)), unique=True, max_size=3))
        if components:
            custom["images"] = {c: draw(st.sampled_from(CUSTOM[c])) for c in components}
        if custom:
            spec["customImages"] = custom
        day = draw(st.integers(1, 3))  # few days: conflicts and ties happen
        documents.append(
            {
                "apiVersion": "chaosregistry.io/v1alpha1",
                "kind": "ChaosImageRegistry",
                "metadata": {"name": f"r{index}", "creationTimestamp": f"2024-01-0{day}T00:00:00Z"},
                "spec": spec,
            }
        )
    return documents


def compile_documents(documents: list[dict[str, Any]]) -> CompiledConfig:
    entries = [RegistryEntry.from_resource(ChaosImageRegistry.model_validate(d)) for d in documents]
    return CompiledConfig(DEFAULTS, entries)


# --- pods -----------------------------------------------------------------------------------------

HCE_IMAGES = [
    "harness/chaos-ddcr:1.47.0",
    "docker.io/harness/chaos-ddcr-faults:1.47.0",
    f"harness/chaos-ddcr-faults:1.47.0@{DIGEST}",
    "harness/chaos-log-watcher:1.47.0",
    "harness/service-discovery-collector:0.1.0",
    "reg.acme.corp/chaos/chaos-ddcr:1.47.0",
    "localhost:5000/chaos-ddcr-faults",
    "custom.acme.corp/hce/chaos-ddcr:9.0.0",
]
LITMUS_IMAGES = [
    "litmuschaos/go-runner:3.11.0",
    "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:latest",
    "litmuschaos/chaos-runner:3.11.0",
    "quay.io/argoproj/argoexec:v3.4.16",
    "litmuschaos/k8s:3.11.0",
    "litmuschaos/litmus-checker:3.11.0",
    "reg:5000/x/go-runner",
]
OTHER_IMAGES = [
    "nginx",
    "ubuntu:16.04",
    "ghcr.io/grafana/k6-operator:latest-runner",
    "gaiadocker/iproute2",
    "proxy/nginx",
    "proxy.acme.corp/nginx",
    "custom.acme.corp/x/my-ddcr:7",
    "[::1]:5000/a/b:c",
]
GARBAGE = [
    "",
    "UPPER/Case",
    "harness/chaos-ddcr:",
    "a:b:c",
    "https://docker.io/nginx",
    "nginx@sha256:abc",
    " ",
    "x" * 300,
]

_component = st.from_regex(r"[a-z0-9]{1,5}([._-][a-z0-9]{1,4})?", fullmatch=True)
valid_references = st.builds(
    lambda domain, path, tag, digest: f"{domain}{'/'.join(path)}{tag}{digest}",
    st.sampled_from(["", "docker.io/", "quay.io/", "localhost:5000/", "reg.example.com:443/a/"]),
    st.lists(_component, min_size=1, max_size=3),
    st.sampled_from(["", ":1", ":latest", ":v1.2.3-rc_1"]),
    st.sampled_from(["", f"@{DIGEST}"]),
)
garbage = st.one_of(st.sampled_from(GARBAGE), st.text(st.characters(codec="ascii"), max_size=12))
non_hce_images = st.one_of(st.sampled_from(LITMUS_IMAGES + OTHER_IMAGES), valid_references, garbage)
any_images = st.one_of(st.sampled_from(HCE_IMAGES), non_hce_images)

CHAOS_LABELS = [
    {"ddcr.app/name": "chaos-ddcr"},
    {"app.kubernetes.io/component": "chaos-runner"},
    {"chaosUID": "5b6f2a3e"},
    {"app.kubernetes.io/part-of": "litmus"},
    {"workflows.argoproj.io/workflow": "w", "workflows.argoproj.io/controller-instanceid": "i"},
]
OTHER_LABELS = [
    {"app": "web"},
    {"workflows.argoproj.io/workflow": "w"},
    {"app.kubernetes.io/component": "experiment-job"},
    {"app.kubernetes.io/part-of": "litmus-portal"},
    {"chaosregistry.io/project": "payments"},  # pod labels never choose the scope
    {"chaosregistry.io/account": "globex", "chaosregistry.io/organization": "ops"},
]
ENV_NAMES = [*sorted(IMAGE_VARS), "OTHER_IMAGE", "TOTAL_CHAOS_DURATION"]


@st.composite
def env_lists(draw: st.DrawFn, images: st.SearchStrategy[str]) -> list[dict[str, Any]]:
    env = []
    for name in draw(st.lists(st.sampled_from(ENV_NAMES), max_size=4)):
        if draw(st.integers(0, 5)) == 0:
            env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        else:
            env.append({"name": name, "value": draw(images)})
    return env


@st.composite
def pods(
    draw: st.DrawFn, *, chaos_labels: bool = True, images: st.SearchStrategy[str] = any_images
) -> dict[str, Any]:
    labels: dict[str, str] = {}
    if chaos_labels and draw(st.sampled_from([False, True, True])):
        labels.update(draw(st.sampled_from(CHAOS_LABELS)))
    for group in draw(st.lists(st.sampled_from(OTHER_LABELS), max_size=2)):
        labels.update(group)
    if chaos_labels and draw(st.sampled_from(range(20))) == 7:
        labels["chaosregistry.io/inject"] = "false"
    metadata: dict[str, Any] = {
        "name": draw(st.sampled_from(["pod-network-loss-abcde", "pod-network-loss-helper-k8x2q", "runner"])),
        "namespace": draw(st.sampled_from(NAMESPACE_NAMES)),
    }
    if labels or draw(st.sampled_from([False, True])):
        metadata["labels"] = labels
    spec: dict[str, Any] = {}
    names = iter(f"c{i}" for i in range(100))
    for list_name in LISTS:
        if list_name == "containers" or draw(st.booleans()):
            count = draw(st.integers(1 if list_name == "containers" else 0, 3))
            spec[list_name] = []
            for _ in range(count):
                container: dict[str, Any] = {"name": next(names), "image": draw(images)}
                if draw(st.booleans()):
                    container["env"] = draw(env_lists(images))
                spec[list_name].append(container)
    secrets = draw(st.sampled_from(["absent", None, [], [{"name": "acme-pull"}], [{"name": "x"}], ["junk"]]))
    if secrets != "absent":
        spec["imagePullSecrets"] = secrets
    annotations = draw(
        st.sampled_from(
            [
                "absent",
                None,
                {},
                {"keep/me": "x", "a~b": "y"},
                {ORIGINALS: json.dumps({"c0": "harness/chaos-ddcr:1.0.0"})},
                {ORIGINALS: "not json"},
                {SCOPE_ANNOTATION: "stale"},
            ]
        )
    )
    if annotations != "absent":
        metadata["annotations"] = copy.deepcopy(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


# --- what a patch may touch -----------------------------------------------------------------------

_IMAGE_PATH = re.compile(r"^/spec/(initContainers|containers|ephemeralContainers)/(\d+)/image$")
_ENV_PATH = re.compile(r"^/spec/(initContainers|containers|ephemeralContainers)/(\d+)/env/(\d+)/value$")
_ANNOTATION_PATHS = {
    "/metadata/annotations/chaosregistry.io~1original-images",
    "/metadata/annotations/chaosregistry.io~1scope",
}


def check_operation(pod: dict[str, Any], operation: dict[str, Any]) -> None:
    path, op = operation["path"], operation["op"]
    if match := _IMAGE_PATH.match(path):
        assert op == "replace"
        assert pod["spec"][match[1]][int(match[2])]["image"] != operation["value"]
    elif match := _ENV_PATH.match(path):
        assert op == "replace"
        assert pod["spec"][match[1]][int(match[2])]["env"][int(match[3])]["name"] in IMAGE_VARS
    elif path in ("/spec/imagePullSecrets", "/spec/imagePullSecrets/-") or path in _ANNOTATION_PATHS:
        assert op == "add"
    elif path == "/metadata/annotations":
        assert op == "add"
        assert set(operation["value"]) <= {ORIGINALS, SCOPE_ANNOTATION}
    elif path == "/metadata":
        assert op == "add"
        assert set(operation["value"]) == {"annotations"}
    else:
        raise AssertionError(f"patch touches {path}")


def untouchable_part(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` without what a mutation may change: images, listed env values, pull secrets, our annotations."""
    pod = copy.deepcopy(pod)
    for list_name in LISTS:
        for container in pod["spec"].get(list_name) or []:
            container.pop("image", None)
            for variable in container.get("env") or []:
                if variable.get("name") in IMAGE_VARS:
                    variable.pop("value", None)
    pod["spec"].pop("imagePullSecrets", None)
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    annotations.pop(ORIGINALS, None)
    annotations.pop(SCOPE_ANNOTATION, None)
    if not annotations:
        metadata.pop("annotations", None)
    return pod


# --- the properties -------------------------------------------------------------------------------


@PROFILE
@given(documents=registry_documents(), pod=pods(), rewrite_all=st.booleans())
def test_patch_applies_is_idempotent_and_only_touches_what_it_may(
    documents: list[dict[str, Any]], pod: dict[str, Any], rewrite_all: bool
) -> None:
    config = compile_documents(documents)
    if rewrite_all:
        config = CompiledConfig(REWRITE_ALL, config.index.entries())
    snapshot = Snapshot(config, NAMESPACES)
    namespace = pod["metadata"]["namespace"]
    before = copy.deepcopy(pod)
    mutation = snapshot.admit(pod, namespace)
    assert pod == before
    event(f"{mutation.reason.split(':')[0]}, images rewritten: {bool(mutation.rewrites)}")
    patched = apply_patch(pod, mutation.patch)
    assert snapshot.admit(patched, namespace).patch == []
    for operation in mutation.patch:
        check_operation(pod, operation)
    assert untouchable_part(patched) == untouchable_part(pod)
    old_secrets = pod["spec"].get("imagePullSecrets") or []
    new_secrets = patched["spec"].get("imagePullSecrets") or []
    assert new_secrets[: len(old_secrets)] == old_secrets  # existing entries are kept, in order
    added = new_secrets[len(old_secrets) :]
    assert len(added) <= 1
    if added:  # only when absent, and only where the effective type is Private
        assert added[0] not in old_secrets
        effective = config.effective(mutation.scope)  # type: ignore[arg-type]
        assert effective.private
        assert added == [{"name": effective.secret_name}]
    if mutation.patch:
        assert mutation.chaos


@PROFILE
@given(documents=registry_documents(), pod=pods(), update=st.data())
def test_ephemeral_update_is_idempotent_and_only_touches_new_ephemeral_containers(
    documents: list[dict[str, Any]], pod: dict[str, Any], update: st.DataObject
) -> None:
    # Every scope configured (the built-in registry applies), custom images for account acme, and a
    # chaos pod with ephemeral containers.
    base = {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": "base", "creationTimestamp": "2023-01-01T00:00:00Z"},
        "spec": {
            "scope": {"account": "acme"},
            "allowOverrides": True,
            "customImages": {
                "enabled": True,
                "images": {c: update.draw(st.sampled_from(CUSTOM[c])) for c in CUSTOM},
            },
        },
    }
    config = CompiledConfig(REWRITE_ALL, compile_documents([base, *documents]).index.entries())
    snapshot = Snapshot(config, NAMESPACES)
    pod["metadata"].setdefault("labels", {})["chaosUID"] = "x"
    if not pod["spec"].get("ephemeralContainers"):
        pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": update.draw(any_images)}]
    old = copy.deepcopy(pod)
    ephemeral = old["spec"].get("ephemeralContainers") or []
    keep = update.draw(st.integers(0, len(ephemeral)))
    old["spec"]["ephemeralContainers"] = ephemeral[:keep]
    namespace = pod["metadata"]["namespace"]
    mutation = snapshot.admit(pod, namespace, old_pod=old)
    event(f"ephemeral rewrites={bool(mutation.patch)}")
    existing = {c["name"] for c in old["spec"]["ephemeralContainers"]}
    for operation in mutation.patch:
        match = _IMAGE_PATH.match(operation["path"]) or _ENV_PATH.match(operation["path"])
        assert match is not None, operation
        assert match[1] == "ephemeralContainers"
        assert pod["spec"]["ephemeralContainers"][int(match[2])]["name"] not in existing
    patched = apply_patch(pod, mutation.patch)
    assert snapshot.admit(patched, namespace, old_pod=old).patch == []


@PROFILE
@given(documents=registry_documents(), pod=pods(chaos_labels=False, images=non_hce_images))
def test_non_chaos_pods_never_get_a_patch(documents: list[dict[str, Any]], pod: dict[str, Any]) -> None:
    snapshot = Snapshot(compile_documents(documents), NAMESPACES)
    mutation = snapshot.admit(pod, pod["metadata"]["namespace"])
    assert mutation.patch == []
    assert not mutation.chaos


def _write_config(directory: Path, documents: list[dict[str, Any]], namespace: str) -> None:
    """The registries, and the pod's namespace (all the CLI reads of the namespaces; it keeps YAML short)."""
    namespaces = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": NAMESPACES[namespace]},
        }
    ]
    if namespace == "ns-unlabelled":  # not in CONFIG: the CLI treats it as unlabelled, as admission does
        namespaces = []
    # JSON, which is YAML with every string quoted: PyYAML would write `y` or `n` bare, which the
    # CLI (like kubectl) reads as a boolean.
    (directory / "namespaces.yaml").write_text(_json_stream(namespaces), encoding="utf-8")
    (directory / "registries.yaml").write_text(_json_stream(documents), encoding="utf-8")


def _json_stream(documents: list[dict[str, Any]]) -> str:
    return "".join(f"---\n{json.dumps(document)}\n" for document in documents)


@settings(PROFILE, max_examples=100)
@given(documents=registry_documents(), pod=pods())
def test_cli_prints_what_admission_patches(documents: list[dict[str, Any]], pod: dict[str, Any]) -> None:
    snapshot = Snapshot(compile_documents(documents), NAMESPACES)
    mutation = snapshot.admit(pod, pod["metadata"]["namespace"])
    with tempfile.TemporaryDirectory(prefix="props-") as tmp:
        directory = Path(tmp)
        (directory / "config").mkdir()
        _write_config(directory / "config", documents, pod["metadata"]["namespace"])
        pod_file = directory / "pod.yaml"
        pod_file.write_text(json.dumps(pod), encoding="utf-8")
        results = []
        for extra in (["-o", "json"], ["--patch"]):
            out, err = io.StringIO(), io.StringIO()
            code = main(["mutate", "-c", str(directory / "config"), str(pod_file), *extra], out, err)
            assert code == 0, err.getvalue()
            assert "Traceback" not in err.getvalue()
            results.append(json.loads(out.getvalue()))
    assert results[0] == apply_patch(pod, mutation.patch)
    assert results[1] == mutation.patch


# --- locks ----------------------------------------------------------------------------------------


@st.composite
def entries(draw: st.DrawFn, scopes: list[tuple[str, ...]], prefix: str) -> list[RegistryEntry]:
    result = []
    for index in range(draw(st.integers(0, 8))):
        custom = {
            c: draw(st.sampled_from(CUSTOM[c]))
            for c in draw(st.lists(st.sampled_from(sorted(CUSTOM)), max_size=2))
        }
        kind = draw(st.sampled_from([None, "Public", "Private"]))
        result.append(
            RegistryEntry(
                name=f"{prefix}{index}",
                scope=Scope(draw(st.sampled_from(scopes))),
                created=datetime(2024, 1, draw(st.integers(1, 3)), tzinfo=UTC),
                allow_overrides=draw(st.booleans()),
                server=draw(st.none() | st.sampled_from(SERVERS)),
                registry_account=draw(st.none() | st.sampled_from(ACCOUNTS)),
                type=kind,
                secret_name=draw(st.none() | st.sampled_from(["acme-pull", "other-pull"])),
                secret_namespace=draw(st.none() | st.just("chaos-system")),
                custom_enabled=draw(st.sampled_from([None, True, False])),
                custom_images=MappingProxyType(custom),
            )
        )
    return result


def _values(config: RegistryIndex, scope: Scope) -> tuple[Any, ...]:
    effective = config.resolve(scope, DEFAULTS)
    return (
        effective.server,
        effective.registry_account,
        effective.type,
        effective.secret_name,
        effective.secret_namespace,
        effective.custom_enabled,
        dict(effective.custom_images),
    )


@PROFILE
@given(upper=entries(SCOPES, "u"), data=st.data())
def test_a_lock_cannot_be_undone_below_it(upper: list[RegistryEntry], data: st.DataObject) -> None:
    target = Scope(data.draw(st.sampled_from(DEEPEST)))
    index = RegistryIndex(upper)
    lock = None
    for ancestor in target.ancestors_and_self():
        winner = index.winner(ancestor)
        if winner is not None and not winner.allow_overrides:
            lock = winner
            break
    event(f"locked at level {len(lock.scope.parts)}" if lock else "no lock")
    if lock is None:
        return
    # Whatever exists strictly below the lock, the target resolves as the lock's own scope does.
    below = [s for s in SCOPES if lock.scope.is_ancestor_of(Scope(s))]
    lower = data.draw(entries(below, "l")) if below else []
    kept = [e for e in upper if not lock.scope.is_ancestor_of(e.scope)]
    for candidate in (upper, kept, kept + lower, upper + lower):
        candidate_index = RegistryIndex(candidate)
        assert _values(candidate_index, target) == _values(candidate_index, lock.scope)
        assert _values(candidate_index, target) == _values(RegistryIndex(kept), lock.scope)
        effective = candidate_index.resolve(target, DEFAULTS)
        assert all(b.blocker == lock.name for b in effective.blocked)
        assert {b.resource for b in effective.blocked} == {
            e.name
            for e in (candidate_index.winner(s) for s in target.ancestors_and_self())
            if e is not None and lock.scope.is_ancestor_of(e.scope)
        }

"""Tests for webhook.core.loader: CONFIG files and folders, one problem line per mistake
(docs/contract.md#the-command-line-program).

Every problem must name the file, the document and the field, and every problem of a CONFIG is
reported at once (a user fixes them in one go, not one per run).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from webhook.core.loader import (
    ConfigError,
    LoadedConfig,
    config_files,
    load_config,
    load_documents,
    parse_defaults_configmap,
)
from webhook.core.models import Scope

REGISTRY = """\
apiVersion: chaosregistry.io/v1alpha1
kind: ChaosImageRegistry
metadata:
  name: {name}
spec:
  scope:
    account: acme
{extra}"""

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  labels:
    chaosregistry.io/account: acme
"""


CM = "x.yaml: document 1 (ConfigMap chaos-registry-defaults): "
RG = "x.yaml: document 1 (ChaosImageRegistry acme): "


def registry(name: str = "acme", extra: str = "") -> str:
    return REGISTRY.format(name=name, extra=textwrap.indent(textwrap.dedent(extra), "  "))


def configmap(config_yaml: str) -> str:
    body = textwrap.indent(textwrap.dedent(config_yaml), "    ")
    return (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chaos-registry-defaults\n"
        f"data:\n  config.yaml: |\n{body}"
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(paths: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(paths)
    assert str(raised.value) == "; ".join(raised.value.problems)
    return raised.value.problems


def test_examples_load(examples_config: LoadedConfig) -> None:
    assert [r.name for r in examples_config.registries] == [
        "acme",
        "acme-retail",
        "acme-retail-payments",
        "acme-retail-payments-prod",
        "acme-platform",
    ]
    assert sorted(examples_config.namespaces) == [
        "litmus",
        "opted-out",
        "payments-chaos",
        "payments-prod-chaos",
        "retail-chaos",
    ]
    assert examples_config.namespaces["retail-chaos"] == {
        "chaosregistry.io/account": "acme",
        "chaosregistry.io/organization": "retail",
    }
    assert examples_config.sources["ChaosImageRegistry/acme-retail"].endswith("registries.yaml: document 2")
    assert examples_config.defaults_document is None
    assert examples_config.defaults is None
    compiled = examples_config.compile()
    assert len(compiled.index) == 5
    assert compiled.effective(Scope(("acme", "retail"))).server == "registry.retail.acme.corp"


def test_several_documents_per_file_and_folders(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", registry("one") + "---\n" + NAMESPACE.format(name="ns1") + "---\n")
    write(tmp_path, "sub/b.yml", registry("two").replace("account: acme", "account: other"))
    write(
        tmp_path,
        "sub/deeper/c.json",
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns2"}}',
    )
    write(tmp_path, "README.md", "not: [config")  # other suffixes are ignored
    loaded = load_config([str(tmp_path)])
    assert sorted(r.name for r in loaded.registries) == ["one", "two"]
    assert loaded.namespaces == {"ns1": {"chaosregistry.io/account": "acme"}, "ns2": {}}
    assert len(config_files([str(tmp_path)])) == 3


def test_several_config_paths(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", registry("one"))
    second = write(tmp_path, "b.yaml", NAMESPACE.format(name="ns"))
    loaded = load_config([first, second])
    assert [r.name for r in loaded.registries] == ["one"]
    assert list(loaded.namespaces) == ["ns"]


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "---\n# only a comment\n---\n" + registry() + "---\n")
    assert len(load_documents(path)) == 1
    assert load_config([path]).sources["ChaosImageRegistry/acme"] == f"{path}: document 1"


def test_creation_timestamp_is_read(tmp_path: Path) -> None:
    text = registry("old").replace(
        "  name: old\n", "  name: old\n  creationTimestamp: 2023-05-01T10:00:00Z\n"
    )
    loaded = load_config([write(tmp_path, "a.yaml", text)])
    created = loaded.registries[0].metadata.creation_timestamp
    assert created is not None
    assert created.year == 2023


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1\n", "x.yaml: invalid YAML at line 2, column 1: expected ',' or ']'"),
        ("a: b\n  c: d\n", "x.yaml: invalid YAML at line 2, column 4: mapping values are not allowed here"),
        ("\tkind: x\n", "x.yaml: invalid YAML at line 1, column 1: found character '\\t'"),
        (
            "- 1\n",
            "x.yaml: document 1: not a Kubernetes object (expected a mapping with apiVersion and kind)",
        ),
        ("apiVersion: v1\nmetadata: {name: a}\n", "x.yaml: document 1: kind: missing"),
        ("apiVersion: v1\nkind: Namespace\n", "x.yaml: document 1 (Namespace): metadata.name: missing"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n",
            "x.yaml: document 1 (Pod web): unsupported kind 'Pod' "
            "(expected ChaosImageRegistry, Namespace or ConfigMap chaos-registry-defaults)",
        ),
        (
            registry().replace("v1alpha1", "v1"),
            RG + "apiVersion: must be chaosregistry.io/v1alpha1",
        ),
        (
            registry(extra="registry:\n  server: https://x.io\n"),
            RG + "spec.registry.server: registry server must not include a scheme: drop 'https://'",
        ),
        (
            registry().replace("account: acme", "account: acme\n    project: p"),
            RG + "spec.scope: project requires organization",
        ),
        (
            registry(extra="registry:\n  type: Private\n"),
            RG + "spec: registry.type Private requires registry.secretName",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  labels: {a: 1}\n",
            "x.yaml: document 1 (Namespace ns1): metadata.labels.a: must be a string, not int",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {}\n",
            "x.yaml: document 1 (ConfigMap other): only the ConfigMap 'chaos-registry-defaults' is read; "
            "remove this one",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: chaos-registry-defaults}\ndata: {}\n",
            CM + "data.config.yaml: missing",
        ),
        (
            configmap("- a\n"),
            CM + "data.config.yaml: must be a YAML mapping",
        ),
        (
            configmap("a: [1\n"),
            CM + "data.config.yaml: invalid YAML at line 2",
        ),
        (
            configmap("registry:\n  server: registry\n"),
            CM + "data.config.yaml.registry.server: "
            "registry server 'registry' would be read as a Docker Hub namespace",
        ),
        (
            configmap("catalog:\n  - {repository: x, component: a-b}\n"),
            CM + "data.config.yaml.catalog.16.component: String should match pattern",
        ),
        (
            configmap("rewriteUnconfiguredScopes: perhaps\n"),
            CM + "data.config.yaml.rewriteUnconfiguredScopes: Input should be a valid boolean",
        ),
    ],
)
def test_one_line_per_problem_naming_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    found = problems([write(tmp_path, "x.yaml", text)])
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path}/{expected}"), found
    assert "\n" not in found[0]


@pytest.mark.parametrize(
    ("first", "second", "duplicate"),
    [
        (registry("acme"), registry("acme"), "ChaosImageRegistry 'acme'"),
        (NAMESPACE.format(name="ns"), NAMESPACE.format(name="ns"), "Namespace 'ns'"),
        (
            configmap("defaultAccount: a\n"),
            configmap("defaultAccount: b\n"),
            "ConfigMap 'chaos-registry-defaults'",
        ),
    ],
)
def test_duplicate_names(tmp_path: Path, first: str, second: str, duplicate: str) -> None:
    path_a = write(tmp_path, "a.yaml", first)
    path_b = write(tmp_path, "b.yaml", second)
    found = problems([path_a, path_b])
    kind = duplicate.split()[0]
    assert found == [
        f"{path_b}: document 1 ({kind} {duplicate.split()[1][1:-1]}): duplicate {duplicate} "
        f"(first in {path_a}: document 1)"
    ]


def test_same_name_different_kinds_is_no_duplicate(tmp_path: Path) -> None:
    loaded = load_config(
        [write(tmp_path, "a.yaml", registry("acme") + "---\n" + NAMESPACE.format(name="acme"))]
    )
    assert [r.name for r in loaded.registries] == ["acme"]
    assert list(loaded.namespaces) == ["acme"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "a: [1\n")
    write(tmp_path, "b.yaml", "kind: Deployment\nmetadata: {name: d}\n---\n" + registry("ok"))
    write(tmp_path, "c.yaml", registry("bad", "registry:\n  server: x\n"))
    found = problems([str(tmp_path)])
    assert len(found) == 3, found
    assert found[0].startswith(f"{tmp_path / 'a.yaml'}: invalid YAML")
    assert found[1].startswith(f"{tmp_path / 'b.yaml'}: document 1 (Deployment d): unsupported kind")
    assert found[2].startswith(
        f"{tmp_path / 'c.yaml'}: document 1 (ChaosImageRegistry bad): spec.registry.server"
    )


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "{p}: cannot read: no such file or folder"),
        ("empty-folder", "{p}: folder holds no .yaml, .yml or .json file"),
        ("folder-of-other-files", "{p}: folder holds no .yaml, .yml or .json file"),
        ("binary", "{p}: cannot read: not UTF-8 text (byte 0)"),
    ],
)
def test_unreadable_inputs(tmp_path: Path, setup: str, expected: str) -> None:
    path = tmp_path / "config"
    if setup == "empty-folder":
        path.mkdir()
    elif setup == "folder-of-other-files":
        path.mkdir()
        (path / "notes.txt").write_text("kind: Namespace\n")
    elif setup == "binary":
        path = tmp_path / "config.yaml"
        path.write_bytes(b"\xff\xfe\x00")
    found = problems([str(path)])
    assert len(found) == 1
    assert found[0].startswith(expected.format(p=path)), found


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    # Permission bits do not stop root (CI runs as root); a file that is not UTF-8 is unreadable
    # to everyone, and takes the same path through read_text.
    path = tmp_path / "a.yaml"
    path.write_bytes(b"kind: \xff\xfe\n")
    found = problems([str(path)])
    assert len(found) == 1
    assert found[0].startswith(f"{path}: cannot read: "), found


# --- component names are checked against the catalog (built in, or extended by the ConfigMap) -----


def test_unknown_component_against_builtin_catalog(tmp_path: Path) -> None:
    path = write(
        tmp_path, "a.yaml", registry(extra="customImages:\n  images:\n    myFault: x.io/my-fault:1\n")
    )
    found = problems([path])
    assert len(found) == 1
    assert found[0].startswith(
        f"{path}: document 1 (ChaosImageRegistry acme): spec.customImages.images.myFault: "
        "unknown component (known: argoexec, "
    )
    assert "ddcrLib" in found[0]


@pytest.mark.parametrize("configmap_first", [True, False])
def test_component_known_through_extended_catalog(tmp_path: Path, configmap_first: bool) -> None:
    extension = configmap(
        "catalog:\n  - {repository: my-fault, component: myFault, helperComponent: myLib}\n"
    )
    resource = registry(
        extra="customImages:\n  images:\n    myFault: x.io/my-fault:1\n    myLib: x.io/my-lib:1\n"
    )
    documents = [extension, resource] if configmap_first else [resource, extension]
    loaded = load_config([write(tmp_path, "a.yaml", "---\n".join(documents))])
    assert loaded.defaults is not None
    assert {"myFault", "myLib"} <= loaded.defaults.component_names
    assert loaded.registries[0].spec.custom_images.images["myLib"] == "x.io/my-lib:1"
    # the compiled configuration uses the extended catalog
    assert "my-fault" in loaded.compile().catalog


def test_configmap_merges_over_builtins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cm.yaml",
        configmap(
            """\
            defaultAccount: acme
            registry:
              server: mirror.acme.corp
            imageEnvVars:
              - {name: HELPER_IMAGE, helper: true}
            """
        ),
    )
    loaded = load_config([path])
    assert loaded.defaults_document == {
        "defaultAccount": "acme",
        "registry": {"server": "mirror.acme.corp"},
        "imageEnvVars": [{"name": "HELPER_IMAGE", "helper": True}],
    }
    defaults = loaded.compile().defaults
    assert defaults.default_account == "acme"
    assert (defaults.registry.server, defaults.registry.registry_account) == ("mirror.acme.corp", "harness")
    assert [v.name for v in defaults.image_env_vars] == [
        "LIB_IMAGE",
        "LOG_WATCHER_IMAGE",
        "TC_IMAGE",
        "STRESS_IMAGE",
        "HELPER_IMAGE",
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"data": {"config.yaml": ""}}, ({}, [])),
        ({"data": {"config.yaml": "defaultAccount: x\n"}}, ({"defaultAccount": "x"}, [])),
        ({}, (None, ["data.config.yaml: missing"])),
        ({"data": "x"}, (None, ["data.config.yaml: missing"])),
        ({"data": {"config.yaml": "42"}}, (None, ["data.config.yaml: must be a YAML mapping"])),
        (
            {"data": {"config.yaml": "customImages: {images: {nope: x.io/a}}"}},
            (None, ["data.config.yaml: customImages.images: unknown component 'nope'"]),
        ),
    ],
)
def test_parse_defaults_configmap(document: dict[str, object], expected: tuple[object, list[str]]) -> None:
    override, found = parse_defaults_configmap(document)
    assert (override, found) == expected

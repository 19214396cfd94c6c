"""Offline checks of the ChaosImageRegistry CustomResourceDefinition
(docs/contract.md#the-chaosimageregistry-resource).

The API server enforces the schema; these tests pin its shape (names, scope, printer columns, CEL
rules with messages, CEL cost guards) and run the schema's own regular expressions through Python
`re` on tables of good and bad servers, accounts, identifiers and image references. Kubernetes
evaluates `pattern` and CEL `matches()` with Go's RE2, so the patterns must stay in the subset that
RE2, ECMA-262 and Python read alike: that is checked here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import contract_example
from webhook.core.models import LEVELS, load_defaults

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "charts" / "chaos-registry-webhook" / "crds" / "chaosimageregistries.chaosregistry.io.yaml"

# The built-in catalog's components (and helper components): what the CRD must accept.
CATALOG_COMPONENTS = sorted(load_defaults().component_names)

# The example of docs/contract.md#the-chaosimageregistry-resource.
CONTRACT_EXAMPLE = contract_example()

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_PATH.open(encoding="utf-8") as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    assert len(docs) == 1, "the CRD file holds exactly one document"
    document: dict[str, Any] = docs[0]
    return document


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    only: dict[str, Any] = versions[0]
    return only


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    openapi: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return openapi


def spec_props(schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = schema["properties"]["spec"]["properties"]
    return props


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (path, schema node) for every node of an OpenAPI schema."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def cel_rules(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, rule) for path, node in walk(schema) for rule in node.get("x-kubernetes-validations", [])]


def cel_regex(rule: str) -> str:
    """The regular expression of a rule of the form self.matches(r'...')."""
    match = re.fullmatch(r"self\.matches\(r'([^']*)'\)", rule.strip())
    assert match, f"not a plain self.matches(r'...') rule: {rule}"
    return match.group(1)


def as_python(regex: str) -> re.Pattern[str]:
    """Compile a schema regex with RE2 semantics.

    Go's regexp.MatchString lets the pattern's own anchors decide, like search(). One difference
    matters: RE2's final `$` matches only at the very end, Python's also before a final newline,
    so a trailing `$` becomes `\\Z`.
    """
    return re.compile(regex[:-1] + r"\Z" if regex.endswith("$") else regex)


def pattern(schema: dict[str, Any], path: str) -> re.Pattern[str]:
    nodes = dict(walk(schema))
    return as_python(nodes[path]["pattern"])


def matches(compiled: re.Pattern[str], value: str) -> bool:
    return compiled.search(value) is not None


# ---------------------------------------------------------------------------------------------
# structure


def test_names_and_scope(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "chaosimageregistries.chaosregistry.io"
    spec = crd["spec"]
    assert spec["group"] == "chaosregistry.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"] == {
        "kind": "ChaosImageRegistry",
        "listKind": "ChaosImageRegistryList",
        "plural": "chaosimageregistries",
        "singular": "chaosimageregistry",
        "shortNames": ["cir"],
        "categories": ["chaos"],
    }


def test_version_served_stored_with_status(version: dict[str, Any]) -> None:
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert list(columns) == ["Level", "Scope", "Server", "Type", "Blocked", "Images", "Age"]
    assert columns["Level"]["jsonPath"] == ".status.level"
    assert columns["Scope"]["jsonPath"] == ".status.scope"
    # What is in effect for the scope (inherited or own), as the status says: not the spec's own field.
    assert columns["Server"]["jsonPath"] == ".status.effectiveServer"
    assert columns["Type"]["jsonPath"] == ".status.effectiveType"
    assert columns["Images"]["jsonPath"] == '.status.conditions[?(@.type=="ImagesAvailable")].status'
    assert columns["Blocked"]["jsonPath"] == '.status.conditions[?(@.type=="Blocked")].status'
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for name in ("Level", "Scope", "Server", "Type", "Blocked", "Images"):
        assert columns[name]["type"] == "string"
        assert columns[name].get("priority", 0) == 0, f"{name} shows in plain `kubectl get cir`"


def test_spec_required_fields(schema: dict[str, Any]) -> None:
    assert schema["required"] == ["spec"]
    assert schema["properties"]["spec"]["required"] == ["scope"]
    assert spec_props(schema)["scope"]["required"] == ["account"]


def test_allow_overrides_defaults_to_false(schema: dict[str, Any]) -> None:
    assert spec_props(schema)["allowOverrides"] == {
        **spec_props(schema)["allowOverrides"],
        "type": "boolean",
        "default": False,
    }


def test_registry_type_enum(schema: dict[str, Any]) -> None:
    assert spec_props(schema)["registry"]["properties"]["type"]["enum"] == ["Public", "Private"]


def test_status_shape(schema: dict[str, Any]) -> None:
    status = schema["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    assert status["observedGeneration"]["format"] == "int64"
    assert status["level"]["enum"] == ["Account", "Organization", "Project", "Infrastructure"]
    assert status["scope"]["type"] == "string"
    assert status["effectiveServer"]["type"] == "string"
    assert status["effectiveType"]["type"] == "string"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert item["properties"]["observedGeneration"]["format"] == "int64"


def test_every_cel_rule_has_a_message(schema: dict[str, Any]) -> None:
    rules = cel_rules(schema)
    assert len(rules) >= 8
    for path, rule in rules:
        message = rule.get("message") or rule.get("messageExpression")
        assert message, f"CEL rule at {path or '<root>'} has no message: {rule['rule']}"
        assert "\n" not in rule.get("message", ""), "a message must be one line"


def test_cel_rules_are_where_expected(schema: dict[str, Any]) -> None:
    by_message = {rule.get("message"): path for path, rule in cel_rules(schema)}
    assert by_message["scope.project requires scope.organization"] == ".spec.scope"
    assert by_message["scope.infrastructure requires scope.project"] == ".spec.scope"
    assert by_message["scope is immutable: create a new ChaosImageRegistry"] == ".spec.scope"
    assert by_message["registry.type Private requires registry.secretName"] == ".spec"
    immutable = next(rule for _, rule in cel_rules(schema) if "oldSelf" in rule["rule"])
    assert immutable["rule"] == "self == oldSelf"
    assert "optionalOldSelf" not in immutable, "a transition rule must not run on create"


def test_component_key_rule_lists_the_catalog(schema: dict[str, Any]) -> None:
    images = spec_props(schema)["customImages"]["properties"]["images"]
    (rule,) = images["x-kubernetes-validations"]
    listed = re.findall(r"'([A-Za-z0-9]+)'", rule["rule"])
    assert sorted(listed) == CATALOG_COMPONENTS
    assert len(listed) == len(set(listed))
    for component in CATALOG_COMPONENTS:
        assert component in rule["message"]


def test_cel_guards_keep_cost_bounded(schema: dict[str, Any]) -> None:
    """Every string a CEL rule reads has a maxLength, every map and list a size limit."""
    for path, node in walk(schema):
        if not node.get("x-kubernetes-validations") or path == ".spec.scope":
            continue
        if node.get("type") == "string":
            assert "maxLength" in node, path
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, path
            value = node["additionalProperties"]
            if value.get("type") == "string":
                assert "maxLength" in value, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
    for name, prop in spec_props(schema)["scope"]["properties"].items():
        assert prop["maxLength"] == 63, name
        assert prop["minLength"] == 1, name


def test_cel_match_rules_use_the_schema_patterns(schema: dict[str, Any]) -> None:
    """Where a CEL rule repeats a pattern to give a clear message, both must be the same regex."""
    checked = 0
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            if rule["rule"].strip().startswith("self.matches("):
                assert cel_regex(rule["rule"]) == node["pattern"], path
                checked += 1
    assert checked == 3  # server, account, image values


def test_patterns_stay_in_the_portable_regex_subset(schema: dict[str, Any]) -> None:
    portable_breakers = ["(?=", "(?!", "(?<", "(?P", "\\d", "\\w", "\\s", "\\b", "\\A", "\\Z", "\\z"]
    patterns = [node["pattern"] for _, node in walk(schema) if "pattern" in node]
    assert len(patterns) >= 10
    for regex in patterns:
        assert regex.startswith("^") and regex.endswith("$"), regex
        for construct in portable_breakers:
            assert construct not in regex, f"{construct} is not portable: {regex}"
        assert not re.search(r"\\[1-9]", regex), f"back-references are not RE2: {regex}"
        assert regex.isascii()
        re.compile(regex)


# ---------------------------------------------------------------------------------------------
# regex tables


@pytest.mark.parametrize(
    "value",
    ["acme", "retail", "payments", "prod-ddcr", "A", "9", "Acme.Retail_1", "a-b_c.d", "x" * 63],
)
def test_scope_identifier_good(schema: dict[str, Any], value: str) -> None:
    for field in LEVELS:
        assert matches(pattern(schema, f".spec.scope.{field}"), value), (field, value)


@pytest.mark.parametrize("value", ["", "-acme", "acme-", "_a", "a.", "a b", "acme/retail", "açme", "a\n"])
def test_scope_identifier_bad(schema: dict[str, Any], value: str) -> None:
    for field in LEVELS:
        assert not matches(pattern(schema, f".spec.scope.{field}"), value), (field, value)


GOOD_SERVERS = [
    "docker.io",
    "registry.acme.corp",
    "registry.acme.corp:5000/mirror",
    "localhost",
    "localhost:5000",
    "localhost/mirror",
    "registry:5000",
    "registry:5000/a/b",
    "us-docker.pkg.dev/gar-prod-setup/harness-public",
    "10.0.0.1:5000/chaos",
    "[::1]:5000",
    "[fe80::1]/mirror",
    "Registry.ACME.corp/mirror",
    "a.b/x__y/z--w/v.u_t",
    "xn--bcher-kva.example/x",
]

BAD_SERVERS = [
    "",
    "https://registry.acme.corp",
    "http://registry.acme.corp:5000/mirror",
    "registry.acme.corp/",
    "registry.acme.corp:5000/mirror/",
    "myregistry",
    "myregistry/mirror",
    "registry.acme.corp/Mirror",
    "registry.acme.corp//mirror",
    "registry.acme.corp:port",
    "registry.acme.corp:",
    "-registry.acme.corp",
    "registry-.acme.corp",
    "registry..acme.corp",
    "registry.acme.corp/a___b",
    "registry.acme.corp/_a",
    "registry.acme.corp/a-",
    "registry acme.corp",
    "registry.acme.corp:5000:6000",
    "registry.acme.corp/mirror:1.0",
    "registry.acme.corp/mirror@" + DIGEST,
]


@pytest.mark.parametrize("server", GOOD_SERVERS)
def test_server_good(schema: dict[str, Any], server: str) -> None:
    assert matches(pattern(schema, ".spec.registry.server"), server)


@pytest.mark.parametrize("server", BAD_SERVERS)
def test_server_bad(schema: dict[str, Any], server: str) -> None:
    assert not matches(pattern(schema, ".spec.registry.server"), server)


def test_server_message_names_the_mistake(schema: dict[str, Any]) -> None:
    """The messageExpression's host test agrees with the pattern on bare names."""
    rule = spec_props(schema)["registry"]["properties"]["server"]["x-kubernetes-validations"][0]
    expression = rule["messageExpression"]
    assert expression.startswith("'registry.server ")
    for needle in ("scheme", "slash", "localhost", "like registry.acme.corp:5000/mirror"):
        assert needle in expression
    host_regex = re.search(r"self\.matches\(r'([^']*)'\)", expression)
    assert host_regex
    host = as_python(host_regex.group(1))
    for server in GOOD_SERVERS:
        assert matches(host, server), server
    for server in ("myregistry", "myregistry/mirror", "registry/a.b"):
        assert not matches(host, server), server


GOOD_ACCOUNTS = ["", "harness", "chaos/harness", "a", "a.b_c-d", "a__b", "a--b", "a/b/c", "0x"]
BAD_ACCOUNTS = ["Harness", "/harness", "harness/", "a//b", "_a", "a_", "a b", "a___b", "a:b", "a@b", ".a"]


@pytest.mark.parametrize("account", GOOD_ACCOUNTS)
def test_account_good(schema: dict[str, Any], account: str) -> None:
    assert matches(pattern(schema, ".spec.registry.account"), account)


@pytest.mark.parametrize("account", BAD_ACCOUNTS)
def test_account_bad(schema: dict[str, Any], account: str) -> None:
    assert not matches(pattern(schema, ".spec.registry.account"), account)


GOOD_IMAGES = [
    "registry.acme.corp/chaos/chaos-ddcr:1.47.0",
    "docker.io/harness/chaos-ddcr:1.47.0",
    "harness/chaos-log-watcher:1.47.0",
    "ubuntu:16.04",
    "ubuntu",
    "gaiadocker/iproute2",
    "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:latest",
    "ghcr.io/grafana/k6-operator:latest-runner",
    "localhost:5000/chaos/go-runner@" + DIGEST,
    "reg:5000/a/b:tag@" + DIGEST,
    "registry.acme.corp/chaos/chaos-ddcr@" + DIGEST,
    "[::1]:5000/chaos/ddcr:1",
    "registry.acme.corp/chaos/x:" + "t" * 128,
    "registry.acme.corp/a__b/c--d/e.f_g:V1_2.3-rc",
    "registry.acme.corp/x@sha512+v2:" + "ab" * 16,
]

BAD_IMAGES = [
    "",
    "https://registry.acme.corp/chaos/ddcr:1",
    "Harness/chaos-ddcr:1",
    "registry.acme.corp/Chaos/ddcr:1",
    "registry.acme.corp/chaos/ddcr:",
    "registry.acme.corp/chaos/ddcr:.tag",
    "registry.acme.corp/chaos/ddcr:-tag",
    "registry.acme.corp/chaos/x:" + "t" * 129,
    "registry.acme.corp/chaos/ddcr@sha256:abc",
    "registry.acme.corp/chaos/ddcr@" + DIGEST + "x",
    "registry.acme.corp/chaos/ddcr@:" + "a" * 64,
    "registry.acme.corp/",
    "registry.acme.corp//ddcr",
    "chaos ddcr",
    "ddcr:1:2",
    "/chaos/ddcr",
    "registry.acme.corp/chaos/ddcr:1.47.0 ",
]


@pytest.mark.parametrize("image", GOOD_IMAGES)
def test_image_good(schema: dict[str, Any], image: str) -> None:
    assert matches(pattern(schema, ".spec.customImages.images[*]"), image)


@pytest.mark.parametrize("image", BAD_IMAGES)
def test_image_bad(schema: dict[str, Any], image: str) -> None:
    assert not matches(pattern(schema, ".spec.customImages.images[*]"), image)


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("secretName", ["acme-pull", "a", "a.b-c", "0"], ["", "Acme", "-a", "a-", "a_b", "a..b"]),
        ("secretNamespace", ["chaos-system", "a", "0a"], ["", "Chaos", "-a", "a.b", "a_b"]),
    ],
)
def test_secret_fields(schema: dict[str, Any], field: str, good: list[str], bad: list[str]) -> None:
    compiled = pattern(schema, f".spec.registry.{field}")
    for value in good:
        assert matches(compiled, value), value
    for value in bad:
        assert not matches(compiled, value), value


# ---------------------------------------------------------------------------------------------
# the example of docs/contract.md against the OpenAPI part of the schema (the API server checks the CEL part)


def openapi_errors(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """A small OpenAPI checker for the keywords this CRD uses (type, enum, pattern, sizes)."""
    errors: list[str] = []
    kind = node.get("type")
    expected: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "string": str,
        "boolean": bool,
        "integer": int,
        "array": list,
    }
    if kind and not isinstance(value, expected[kind]):
        return [f"{path}: want {kind}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: not in enum")
    if isinstance(value, str):
        if "pattern" in node and not as_python(node["pattern"]).search(value):
            errors.append(f"{path}: does not match pattern")
        if len(value) > node.get("maxLength", len(value)) or len(value) < node.get("minLength", 0):
            errors.append(f"{path}: bad length")
    if isinstance(value, dict):
        for name in node.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        if len(value) > node.get("maxProperties", len(value)):
            errors.append(f"{path}: too many properties")
        for name, child in value.items():
            if name in node.get("properties", {}):
                errors += openapi_errors(node["properties"][name], child, f"{path}.{name}")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += openapi_errors(node["additionalProperties"], child, f"{path}.{name}")
            elif kind == "object" and "properties" in node:
                errors.append(f"{path}.{name}: unknown field")
    return errors


def test_spec_example_fits_the_schema(schema: dict[str, Any]) -> None:
    assert openapi_errors(schema, CONTRACT_EXAMPLE) == []


def test_checker_sees_bad_values(schema: dict[str, Any]) -> None:
    bad = {
        "spec": {
            "scope": {"account": "-acme"},
            "registry": {"server": "https://x.io", "type": "private"},
            "customImages": {"images": {"ddcr": "Bad Image"}},
            "bogus": 1,
        }
    }
    errors = openapi_errors(schema, bad)
    assert len(errors) == 5, errors

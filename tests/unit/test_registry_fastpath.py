"""The direct reader of ChaosImageRegistry objects agrees with the models on everything it accepts,
and accepts the usual shape (else it would agree by never answering)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from webhook.core.documents import parse_documents
from webhook.core.loader import parse_registry, registry_entry
from webhook.core.models import API_VERSION, KIND, LEVELS
from webhook.core.registry_fastpath import direct_entry
from webhook.core.resolver import RegistryEntry

EXAMPLES = Path(__file__).parents[2] / "examples"

# What JSON can hold where a string, a boolean or an object was expected.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` nine times in ten: a document is read directly only when all its fields are."""
    return st.integers(0, 9).flatmap(lambda draw: valid if draw else invalid)


def either(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(valid), st.one_of(st.sampled_from(invalid), junk) if invalid else junk)


identifiers = either(["acme", "a", "A.b_c-1", "x" * 63], ["", "x" * 64, "-a", "a.", "a\n", "a b", "a/b"])
servers = either(
    [
        "registry.example.com",
        "registry.example.com:5000/mirror",
        "localhost",
        "myregistry:5000",
        "[::1]:5000",
    ],
    [
        *("", "https://x.io", "x.io/", "UPPER", "single", "x.io:99999", "x.io/a:1", "x.io@sha256", "[::g]"),
        "registry.example.com/" + "a" * 235,  # valid but for its length
    ],
)
accounts = either(["harness", "chaos/images", "a_b.c"], ["", "Upper", "a//b", "a:b", "-a", "a" * 256])
secret_names = either(["acme-pull", "a.b", "a" * 253], ["", "Acme", "a_b", "a\n", "a" * 254, "-a"])
namespaces = either(["chaos-system", "a"], ["", "a.b", "A", "a\n", "a" * 64])
timestamps = either(
    ["2024-01-01T00:00:00Z", "2026-11-30T13:35:17Z", "2024-02-29T23:59:59Z"],
    [
        "2023-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-11-30T24:00:00Z",
        "2026-11-30T13:35:60Z",
        "2026-11-30T13:35:17+00:00",
        "2026-11-30T13:35:17.5Z",
        "2026-11-30 13:35:17Z",
        "2026-11-30",
        "١٢٣٤-01-01T00:00:00Z",
    ],
)
components = mostly(  # keys: JSON's are strings
    st.sampled_from(["ddcr", "chaosGo", "x" * 63]),
    st.one_of(st.sampled_from(["", "dd-cr", "1ddcr", "ddcr\n", "x" * 64]), st.text(max_size=4)),
)
images = either(
    ["registry.example.com/chaos/ddcr:1.0", "ddcr", "x.io/a@sha256:" + "a" * 64],
    ["", "UPPER/x", "x.io/a@sha256:abc", "x.io/a:", "a" * 300],
)

# The usual shape, each field valid nine times in ten ...
usual_scopes = st.integers(1, len(LEVELS)).flatmap(
    lambda depth: st.fixed_dictionaries({level: identifiers for level in LEVELS[:depth]})
)
usual_registries = st.fixed_dictionaries(
    {},
    optional={
        "server": servers,
        "account": accounts,
        "type": either(["Public", "Private"], ["private", ""]),
        "secretName": secret_names,
        "secretNamespace": namespaces,
    },
)
usual_custom_images = st.fixed_dictionaries(
    {},
    optional={
        "enabled": mostly(st.booleans(), junk),
        "images": mostly(st.dictionaries(components, images, max_size=3), junk),
    },
)
usual_specs = st.fixed_dictionaries(
    {"scope": usual_scopes},
    optional={
        "registry": mostly(usual_registries, junk),
        "allowOverrides": mostly(st.booleans(), junk),
        "customImages": mostly(usual_custom_images, junk),
    },
)
usual_metadata = st.fixed_dictionaries(
    {
        "name": either(["acme", "bench-a0-o0"], [""]),
        "uid": either(["d029eb55-34d7-446e-94b5-a26f46439dbc"], []),
        "generation": either([1, 7], []),
        "resourceVersion": either(["100266"], []),
        "creationTimestamp": timestamps,
    },
    optional={"labels": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)},
)
# ... and anything else: keys out of order or unknown, field names for aliases, nulls, wrong types.
wild_specs = st.fixed_dictionaries(
    {},
    optional={
        "scope": st.one_of(
            st.fixed_dictionaries(
                {}, optional={**{level: identifiers for level in LEVELS}, "team": identifiers}
            ),
            junk,
        ),
        "registry": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "server": servers,
                    "type": either(["Public", "Private"], []),
                    "secretName": secret_names,
                    # Field names rather than aliases: the models take them too (populate_by_name).
                    "registry_account": accounts,
                    "secret_name": secret_names,
                    "secret_namespace": namespaces,
                },
            ),
            junk,
        ),
        "allowOverrides": junk,
        "allow_overrides": st.booleans(),
        "customImages": st.one_of(
            st.fixed_dictionaries({}, optional={"enabled": junk, "images": junk, "extra": junk}), junk
        ),
        "status": junk,
    },
)
documents = st.fixed_dictionaries(
    {
        "apiVersion": either([API_VERSION], ["chaosregistry.io/v1"]),
        "kind": either([KIND], ["ChaosImageRegistryList"]),
        "metadata": mostly(usual_metadata, st.one_of(st.fixed_dictionaries({"name": junk}), junk)),
        "spec": mostly(usual_specs, st.one_of(wild_specs, junk)),
    },
    optional={"status": junk},
)


def _agree(document: dict[str, Any]) -> bool:
    """Whether the direct reader took `document`; when it did, the models read it the same way."""
    entry = direct_entry(document)
    if entry is not None:
        parsed = parse_registry(document)
        assert not isinstance(parsed, list), parsed
        assert RegistryEntry.from_resource(parsed) == entry
    return entry is not None


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_what_the_direct_reader_accepts_the_models_accept_with_the_same_entry(
    document: dict[str, Any],
) -> None:
    event("read directly" if _agree(document) else "left to the models")
    # And the one entry point answers as the models do, whichever way it went.
    parsed = parse_registry(document)
    read = registry_entry(document)
    if isinstance(parsed, list):
        assert read == parsed
    else:
        assert read == RegistryEntry.from_resource(parsed)


def _example_registries() -> list[dict[str, Any]]:
    found = []
    for path in sorted((EXAMPLES / "config").glob("*.yaml")):
        found += [
            d for d in parse_documents(path.read_text()) if isinstance(d, dict) and d.get("kind") == KIND
        ]
    return found


def _as_the_apiserver_returns(document: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        **document["metadata"],
        "uid": "d029eb55-34d7-446e-94b5-a26f46439dbc",
        "generation": 1,
        "resourceVersion": "100266",
        "creationTimestamp": "2026-11-30T13:35:17Z",
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
    }
    return {**document, "metadata": metadata, "status": {"level": "Account"}}


@pytest.mark.parametrize("document", _example_registries(), ids=lambda d: d["metadata"]["name"])
def test_the_documented_examples_are_read_directly(document: dict[str, Any]) -> None:
    assert _agree(_as_the_apiserver_returns(document))


def test_examples_cover_every_part_of_the_usual_shape() -> None:
    specs = [document["spec"] for document in _example_registries()]
    assert any("customImages" in spec for spec in specs)
    assert any(spec.get("registry", {}).get("type") == "Private" for spec in specs)
    assert any("infrastructure" in spec["scope"] for spec in specs)
    assert any("allowOverrides" in spec for spec in specs)


FULL = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {
        "name": "acme-prod",
        "uid": "d029eb55-34d7-446e-94b5-a26f46439dbc",
        "generation": 3,
        "resourceVersion": "100266",
        "creationTimestamp": "2026-11-30T13:35:17Z",
    },
    "spec": {
        "scope": {
            "account": "acme",
            "organization": "retail",
            "project": "payments",
            "infrastructure": "prod",
        },
        "registry": {
            "server": "registry.example.com:5000",
            "account": "chaos",
            "type": "Private",
            "secretName": "acme-pull",
            "secretNamespace": "chaos-system",
        },
        "allowOverrides": True,
        "customImages": {"enabled": True, "images": {"ddcr": "registry.example.com/chaos/ddcr:1.0"}},
    },
}
_DELETE = object()
_REPLACEMENTS = [_DELETE, None, True, 0, 1.5, "", "x\n", [], {}, "Private", "a" * 256]
_MANY_IMAGES = {f"c{index}": "registry.example.com/chaos/ddcr:1.0" for index in range(65)}


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    return found


def _with(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = dict(document)
    if len(path) == 1:
        if value is _DELETE:
            copy.pop(path[0])
        else:
            copy[path[0]] = value
        return copy
    copy[path[0]] = _with(document[path[0]], path[1:], value)
    return copy


def test_the_full_shape_is_read_directly() -> None:
    assert _agree(FULL)
    _agree(_with(FULL, ("spec", "customImages", "images"), _MANY_IMAGES))  # one over the limit


@pytest.mark.parametrize("path", _paths(FULL), ids=".".join)
def test_every_field_changed_alone_is_declined_or_read_as_the_models_read_it(path: tuple[str, ...]) -> None:
    for value in _REPLACEMENTS:
        _agree(_with(FULL, path, value))

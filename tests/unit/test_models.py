"""Tests for webhook.core.models: scopes, the ChaosImageRegistry resource and the defaults (docs/contract.md).

Every invalid resource must be refused with a line that names the field, as the API server would.
The image reference grammar itself is tested in test_reference.py; here only how the models use it.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from webhook.core.loader import parse_registry
from webhook.core.models import (
    ChaosImageRegistry,
    DefaultsConfig,
    Scope,
    builtin_defaults_document,
    format_validation_error,
    load_defaults,
    merge_defaults,
    release_version_error,
)


def registry_document(spec: dict[str, Any], name: str = "r") -> dict[str, Any]:
    return {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": name},
        "spec": spec,
    }


def problems_of(spec: dict[str, Any]) -> list[str]:
    """The problem lines of a resource with `spec`, or [] when it is valid."""
    parsed = parse_registry(registry_document(spec))
    return parsed if isinstance(parsed, list) else []


# --- Scope ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected", "level"),
    [
        (("acme",), ("acme",), "Account"),
        (("acme", "retail"), ("acme", "retail"), "Organization"),
        (("acme", "retail", "payments"), ("acme", "retail", "payments"), "Project"),
        (("acme", "retail", "payments", "prod"), ("acme", "retail", "payments", "prod"), "Infrastructure"),
        # Scope.of stops at the first missing identifier: a broken chain keeps its valid prefix.
        (("acme", None, "payments"), ("acme",), "Account"),
        (("acme", "retail", "", "prod"), ("acme", "retail"), "Organization"),
    ],
)
def test_scope_of(parts: tuple[str | None, ...], expected: tuple[str, ...], level: str) -> None:
    scope = Scope.of(*parts)
    assert scope.parts == expected
    assert scope.level == level
    assert str(scope) == "/".join(expected)


@pytest.mark.parametrize(
    "text", ["acme", "acme/retail", "acme/retail/payments", "acme/retail/payments/prod-ddcr", "A.b_c-1"]
)
def test_scope_parse_valid(text: str) -> None:
    assert str(Scope.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must be ACCOUNT[/ORG[/PROJECT[/INFRA]]]"),
        ("a/b/c/d/e", "must be ACCOUNT[/ORG[/PROJECT[/INFRA]]]"),
        ("acme//payments", "organization '' is not a valid identifier"),
        ("-acme", "account '-acme' is not a valid identifier"),
        ("acme/retail/pay ments", "project 'pay ments' is not a valid identifier"),
        ("acme/retail/payments/" + "x" * 64, "infrastructure"),
        # `$` in Python's `match` also matches before a last newline: identifiers are matched whole.
        ("acme\n", "account 'acme\\n' is not a valid identifier"),
    ],
)
def test_scope_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="scope") as raised:
        Scope.parse(text)
    assert fragment in str(raised.value)


def test_scope_ancestors_and_relations() -> None:
    scope = Scope.parse("acme/retail/payments")
    assert [str(s) for s in scope.ancestors_and_self()] == ["acme", "acme/retail", "acme/retail/payments"]
    assert Scope.parse("acme").is_ancestor_of(scope)
    assert Scope.parse("acme/retail").is_ancestor_of(scope)
    assert not scope.is_ancestor_of(scope)
    assert not Scope.parse("acme/platform").is_ancestor_of(scope)
    assert not Scope.parse("acm").is_ancestor_of(scope)
    assert not scope.is_ancestor_of(Scope.parse("acme"))


# --- spec.scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "problem"),
    [
        ({"account": "acme"}, None),
        ({"account": "acme", "organization": "retail"}, None),
        ({"account": "acme", "organization": "retail", "project": "payments"}, None),
        (
            {"account": "acme", "organization": "retail", "project": "payments", "infrastructure": "prod"},
            None,
        ),
        ({"account": "a" * 63}, None),
        ({"account": "acme", "project": "payments"}, "spec.scope: project requires organization"),
        (
            {"account": "acme", "organization": "retail", "infrastructure": "prod"},
            "spec.scope: infrastructure requires project",
        ),
        ({"account": "acme", "infrastructure": "prod"}, "spec.scope: infrastructure requires project"),
        ({}, "spec.scope.account: Field required"),
        ({"organization": "retail"}, "spec.scope.account: Field required"),
        ({"account": ""}, "spec.scope.account: String should have at least 1 character"),
        ({"account": "a" * 64}, "spec.scope.account: String should have at most 63 characters"),
        ({"account": "-acme"}, "spec.scope.account: must be 1-63 characters"),
        ({"account": "acme", "organization": "ret ail"}, "spec.scope.organization: must be 1-63 characters"),
        (
            {"account": "acme", "organization": "retail", "project": "pay/ments"},
            "spec.scope.project: must be 1-63 characters",
        ),
        (
            {"account": "acme", "organization": "r", "project": "p", "infrastructure": "infra."},
            "spec.scope.infrastructure: must be 1-63 characters",
        ),
        ({"account": "acme", "team": "x"}, "spec.scope.team: Extra inputs are not permitted"),
        ({"account": "acme\n"}, "spec.scope.account: must be 1-63 characters"),
    ],
)
def test_scope_chain_and_identifiers(scope: dict[str, str], problem: str | None) -> None:
    problems = problems_of({"scope": scope})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith(problem)


def test_scope_spec_level() -> None:
    parsed = parse_registry(
        registry_document({"scope": {"account": "acme", "organization": "retail", "project": "payments"}})
    )
    assert isinstance(parsed, ChaosImageRegistry)
    assert parsed.spec.scope.to_scope() == Scope(("acme", "retail", "payments"))
    assert parsed.spec.scope.to_scope().level == "Project"


# --- spec.registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        ("docker.io", None),
        ("registry.acme.corp", None),
        ("registry.acme.corp:5000", None),
        ("registry.acme.corp:5000/mirror", None),
        ("us-docker.pkg.dev/gar-prod-setup/harness-public", None),
        ("localhost", None),
        ("localhost:5000", None),
        ("reg:5000", None),
        ("10.0.0.1:5000/chaos", None),
        ("[::1]:5000", None),
        ("", "registry server is empty"),
        ("https://registry.acme.corp", "must not include a scheme"),
        ("registry.acme.corp/", "must not end with '/'"),
        ("registry", "would be read as a Docker Hub namespace"),
        ("registry.acme.corp:99999", "out of range"),
        ("registry.acme.corp/Mirror", "must be lowercase"),
        ("registry.acme.corp/mirror:1.0", "must not include a tag"),
        ("registry.acme.corp@sha256:abc", "must not include a digest"),
        ("registry.acme.corp//mirror", "empty path component"),
        ("reg_istry.corp", "invalid character"),
        ("a." + "b" * 260, "String should have at most 255 characters"),
    ],
)
def test_registry_server(server: str, fragment: str | None) -> None:
    problems = problems_of({"scope": {"account": "acme"}, "registry": {"server": server}})
    if fragment is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith("spec.registry.server: ")
        assert fragment in problems[0]


@pytest.mark.parametrize(
    ("account", "fragment"),
    [
        ("", None),  # "" means no account segment
        ("harness", None),
        ("litmuschaos", None),
        ("chaos/harness", None),
        ("my_team.mirror-1", None),
        ("Harness", "must be lowercase"),
        ("chaos//harness", "empty path component"),
        ("/harness", "empty path component"),
        ("harness/", "empty path component"),
        ("-harness", "must start and end with a lowercase letter or digit"),
        ("har ness", "invalid character"),
        ("har:ness", "invalid character"),
    ],
)
def test_registry_account(account: str, fragment: str | None) -> None:
    problems = problems_of({"scope": {"account": "acme"}, "registry": {"account": account}})
    if fragment is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith("spec.registry.account: ")
        assert fragment in problems[0]


@pytest.mark.parametrize(
    ("registry", "problem"),
    [
        ({"type": "Public"}, None),
        ({"type": "Private", "secretName": "acme-pull"}, None),
        ({"type": "Private", "secretName": "acme-pull", "secretNamespace": "chaos-system"}, None),
        # A secretName without type Private is allowed: a lower scope may switch to Private.
        ({"secretName": "acme-pull"}, None),
        ({"type": "Private"}, "spec: registry.type Private requires registry.secretName"),
        ({"type": "Private", "secretName": ""}, "spec.registry.secretName: '' is not a valid Secret name"),
        ({"type": "private", "secretName": "x"}, "spec.registry.type: Input should be 'Public' or 'Private'"),
        ({"secretName": "Acme_Pull"}, "spec.registry.secretName: 'Acme_Pull' is not a valid Secret name"),
        ({"secretNamespace": "chaos.system"}, "spec.registry.secretNamespace: 'chaos.system' is not a valid"),
        ({"secretName": "pull\n"}, "spec.registry.secretName: 'pull\\n' is not a valid Secret name"),
        ({"secretNamespace": "chaos\n"}, "spec.registry.secretNamespace: 'chaos\\n' is not a valid"),
        ({"servr": "x.io"}, "spec.registry.servr: Extra inputs are not permitted"),
    ],
)
def test_registry_type_and_secret(registry: dict[str, str], problem: str | None) -> None:
    problems = problems_of({"scope": {"account": "acme"}, "registry": registry})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith(problem)


def test_private_secret_must_be_in_own_spec_not_inherited() -> None:
    # The parent has the secret; the child still may not say Private without its own secretName:
    # the API server only sees one object at a time (docs/contract.md#the-chaosimageregistry-resource).
    assert problems_of(
        {
            "scope": {"account": "acme", "organization": "retail"},
            "registry": {"type": "Private"},
        }
    ) == ["spec: registry.type Private requires registry.secretName"]


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        ({"ddcr": "registry.acme.corp/chaos/chaos-ddcr:1.47.0"}, None),
        ({"ddcrLib": "registry.acme.corp/chaos/chaos-ddcr-faults@sha256:" + "a" * 64}, None),
        ({"goRunner": "localhost:5000/go-runner"}, None),
        ({"ddcr": "registry.acme.corp/chaos/chaos-ddcr:"}, "ddcr: 'registry.acme.corp/chaos/chaos-ddcr:'"),
        ({"logWatcher": "Registry/Chaos"}, "logWatcher: 'Registry/Chaos' is not a valid image reference"),
        ({"ddcr": ""}, "ddcr: '' is not a valid image reference"),
        ({"dd-cr": "x.io/a"}, "'dd-cr' is not a component name"),
        ({"1ddcr": "x.io/a"}, "'1ddcr' is not a component name"),
        ({"ddcr\n": "x.io/a"}, "'ddcr\\n' is not a component name"),
    ],
)
def test_custom_images_references(images: dict[str, str], fragment: str | None) -> None:
    problems = problems_of(
        {"scope": {"account": "acme"}, "customImages": {"enabled": True, "images": images}}
    )
    if fragment is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problems[0].startswith("spec.customImages.images: ")
        assert fragment in problems[0]


def test_resource_defaults_and_ignored_fields() -> None:
    document = registry_document({"scope": {"account": "acme"}})
    document["status"] = {"level": "Account"}  # written by the operator: ignored
    parsed = parse_registry(document)
    assert isinstance(parsed, ChaosImageRegistry)
    assert parsed.name == "r"
    assert parsed.spec.allow_overrides is False  # default false, as in HCE
    assert parsed.spec.custom_images.enabled is None  # unset: inherited
    assert parsed.spec.registry.server is None


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"apiVersion": "chaosregistry.io/v1"}, "apiVersion: Input should be 'chaosregistry.io/v1alpha1'"),
        ({"kind": "ImageRegistry"}, "kind: Input should be 'ChaosImageRegistry'"),
        ({"metadata": {}}, "metadata.name: Field required"),
        ({"spec": None}, "spec: Input should be a valid dictionary"),
    ],
)
def test_resource_envelope(patch: dict[str, Any], fragment: str) -> None:
    document = {**registry_document({"scope": {"account": "acme"}}), **patch}
    problems = parse_registry(document)
    assert isinstance(problems, list)
    assert any(p.startswith(fragment) for p in problems), problems


def test_format_validation_error_prefix() -> None:
    with pytest.raises(ValidationError) as raised:
        ChaosImageRegistry.model_validate(registry_document({"scope": {"account": "acme", "project": "p"}}))
    assert format_validation_error(raised.value, prefix="file.yaml") == [
        "file.yaml.spec.scope: project requires organization"
    ]


# --- the defaults ---------------------------------------------------------------------------------


def test_builtin_defaults(defaults: DefaultsConfig) -> None:
    assert defaults.registry.server == "docker.io"
    assert defaults.registry.registry_account == "harness"
    assert defaults.registry.type == "Public"
    assert defaults.custom_images.enabled is False
    assert defaults.rewrite_unconfigured_scopes is False
    assert defaults.default_account == "default"
    assert [v.name for v in defaults.image_env_vars] == [
        "LIB_IMAGE",
        "LOG_WATCHER_IMAGE",
        "TC_IMAGE",
        "STRESS_IMAGE",
    ]
    catalog = {e.last_segment: (e.component, e.helper_component) for e in defaults.catalog}
    assert catalog["chaos-ddcr"] == ("ddcr", None)
    assert catalog["chaos-log-watcher"] == ("logWatcher", None)
    assert catalog["chaos-ddcr-faults"] == ("ddcrFault", "ddcrLib")
    assert catalog["service-discovery-collector"] == ("discoveryCollector", None)
    for repository in (
        "chaos-runner",
        "go-runner",
        "chaos-operator",
        "chaos-exporter",
        "litmus-checker",
        "k8s",
        "argoexec",
        "workflow-controller",
        "subscriber",
        "event-tracker",
    ):
        assert repository in catalog
    assert catalog["litmusportal-subscriber"] == ("subscriber", None)
    assert catalog["litmusportal-event-tracker"] == ("eventTracker", None)
    assert "ddcrLib" in defaults.component_names  # helper components are component names too


def test_merge_lists_by_key_and_scalars_replace() -> None:
    builtin = builtin_defaults_document()
    merged = merge_defaults(
        builtin,
        {
            "defaultAccount": "acme",
            "rewriteUnconfiguredScopes": True,
            "registry": {"server": "mirror.acme.corp"},
            "catalog": [
                {"repository": "my-fault", "component": "myFault"},
                {"repository": "subscriber", "component": "litmusSubscriber"},
            ],
            "imageEnvVars": [{"name": "HELPER_IMAGE", "helper": True}],
            "chaosPods": [{"name": "litmus-part-of", "enabled": False, "matchLabels": {"x": "y"}}],
        },
    )
    defaults = DefaultsConfig.model_validate(merged)
    assert defaults.default_account == "acme"
    assert defaults.rewrite_unconfigured_scopes is True
    # mappings merge field by field: account and type are still the built-in ones
    assert (defaults.registry.server, defaults.registry.registry_account, defaults.registry.type) == (
        "mirror.acme.corp",
        "harness",
        "Public",
    )
    repositories = [e.last_segment for e in defaults.catalog]
    # an entry with a known key replaces the built-in one in place; new keys are appended
    position = [e["repository"] for e in builtin["catalog"]].index("subscriber")
    assert repositories.index("subscriber") == position
    assert defaults.catalog[position].component == "litmusSubscriber"
    assert repositories[-1] == "my-fault"
    assert len(repositories) == len(builtin["catalog"]) + 1
    assert [v.name for v in defaults.image_env_vars][-1] == "HELPER_IMAGE"
    assert len(defaults.image_env_vars) == len(builtin["imageEnvVars"]) + 1
    rules = {r.name: r for r in defaults.chaos_pods}
    assert rules["litmus-part-of"].enabled is False
    assert len(rules) == len(builtin["chaosPods"])
    # the built-in document itself is never modified by a merge
    assert builtin_defaults_document()["defaultAccount"] == "default"


def test_load_defaults_extends_components() -> None:
    defaults = load_defaults(
        {
            "catalog": [{"repository": "my-fault", "component": "myFault", "helperComponent": "myLib"}],
            "customImages": {"images": {"myLib": "registry.acme.corp/my-fault:1"}},
        }
    )
    assert {"myFault", "myLib", "ddcr"} <= defaults.component_names
    assert defaults.custom_images.images == {"myLib": "registry.acme.corp/my-fault:1"}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (
            {"registry": {"server": "https://x.io"}},
            "registry.server: registry server must not include a scheme",
        ),
        ({"registry": {"type": "Private"}}, "registry.type Private requires registry.secretName"),
        ({"registry": {"account": "Harness"}}, "registry.account: registry account must be lowercase"),
        ({"defaultAccount": "-x"}, "defaultAccount: must be 1-63 characters"),
        (
            {"rewriteUnconfiguredScopes": "perhaps"},
            "rewriteUnconfiguredScopes: Input should be a valid boolean",
        ),
        ({"catalog": [{"repository": "x"}]}, "catalog.16.component: Field required"),
        ({"catalog": [{"repository": "x", "component": "a-b"}]}, "catalog.16.component: String should match"),
        ({"catalog": ["chaos-ddcr"]}, "catalog.16: Input should be a valid dictionary"),
        (
            {"chaosPods": [{"name": "mine", "components": ["nope"]}]},
            "chaosPods: rule 'mine' names unknown component 'nope'",
        ),
        ({"chaosPods": [{"name": "empty"}]}, "rule 'empty' needs matchLabels, labelsPresent or components"),
        ({"customImages": {"images": {"nope": "x.io/a"}}}, "customImages.images: unknown component 'nope'"),
        ({"customImages": {"images": {"ddcr": "x.io/a:"}}}, "customImages.images: ddcr: 'x.io/a:'"),
        (
            {"imageEnvVars": [{"name": "X", "helpr": True}]},
            "imageEnvVars.4.helpr: Extra inputs are not permitted",
        ),
        ({"unknownField": 1}, "unknownField: Extra inputs are not permitted"),
        ({"registry": None}, "registry: Input should be a valid dictionary"),
    ],
)
def test_bad_defaults_name_the_field(override: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as raised:
        load_defaults(override)
    lines = format_validation_error(raised.value)
    assert any(fragment in line for line in lines), lines


def test_duplicate_catalog_repository_in_one_document_is_refused() -> None:
    document = builtin_defaults_document()
    document["catalog"] = [*document["catalog"], {"repository": "chaos-ddcr", "component": "other"}]
    with pytest.raises(ValidationError, match="repository 'chaos-ddcr' is listed twice"):
        DefaultsConfig.model_validate(document)


@pytest.mark.parametrize(
    ("version", "valid"), [("1.0.0", True), ("3.9.1-rc", True), ("1.0\n", False), ("", False)]
)
def test_release_version_is_matched_whole(version: str, valid: bool) -> None:
    assert (release_version_error(version) is None) is valid

"""Typed models of the configuration: scopes, the ChaosImageRegistry resource and the defaults.

These validate what users write (CLI files, watched objects). The admission hot path never touches
them: the resolver reduces them to plain frozen records once, when the configuration changes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from webhook.core.documents import quote, shown
from webhook.core.reference import (
    ImageReference,
    parse_reference,
    registry_account_error,
    registry_server_error,
)

API_GROUP = "chaosregistry.io"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "ChaosImageRegistry"
PLURAL = "chaosimageregistries"
LABEL_PREFIX = f"{API_GROUP}/"
INJECT_LABEL = f"{LABEL_PREFIX}inject"
ORIGINAL_IMAGES_ANNOTATION = f"{LABEL_PREFIX}original-images"
SCOPE_ANNOTATION = f"{LABEL_PREFIX}scope"
# On what the webhook writes (pull-secret copies, its record of them, its certificate Secret).
MANAGER = "chaos-registry-webhook"  # the field manager of its writes, and the managed-by label's value
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COPY_SOURCE_LABEL = f"{LABEL_PREFIX}source"  # <namespace>.<name> of a copy's source, shortened to fit
COPY_SOURCE_ANNOTATION = f"{LABEL_PREFIX}source"  # <namespace>/<name> of a copy's source
COPY_SOURCE_HASH_ANNOTATION = f"{LABEL_PREFIX}source-hash"
DESCRIPTION_ANNOTATION = f"{LABEL_PREFIX}description"
# Namespaces the webhook never selects, besides its own: no pod there is mutated or gets a copy.
NEVER_SELECTED_NAMESPACES = ("kube-system",)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
DEFAULTS_CONFIGMAP = "chaos-registry-defaults"
DEFAULTS_KEY = "config.yaml"

LEVELS = ("account", "organization", "project", "infrastructure")
LEVEL_NAMES = ("Account", "Organization", "Project", "Infrastructure")
SCOPE_LABELS = tuple(f"{LABEL_PREFIX}{level}" for level in LEVELS)

RegistryType = Literal["Public", "Private"]

# Always matched whole (`fullmatch`): with `match`, `$` also matches before a last newline, so
# "acme\n" would pass as an identifier, a Secret name or a version.
IDENTIFIER = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
COMPONENT = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """A position in the account > organization > project > infrastructure hierarchy.

    `parts` holds the identifiers given, top-down; its length is the level (1 = account).
    """

    parts: tuple[str, ...]

    @classmethod
    def of(cls, *parts: str | None) -> Scope:
        """The scope of the given identifiers; stops at the first missing one."""
        given: list[str] = []
        for part in parts:
            if not part:
                break
            # Interned: the same names recur in every scope below them and in namespace labels.
            given.append(sys.intern(part) if type(part) is str else part)
        return cls(tuple(given))

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse `ACCOUNT[/ORG[/PROJECT[/INFRA]]]`; raises ValueError naming what is wrong."""
        parts = tuple(text.split("/"))
        if not text or len(parts) > len(LEVELS):
            raise ValueError(f"scope {quote(text)} must be ACCOUNT[/ORG[/PROJECT[/INFRA]]]")
        for level, part in zip(LEVELS, parts, strict=False):
            if not IDENTIFIER.fullmatch(part):
                raise ValueError(f"scope {quote(text)}: {level} {quote(part)} is not a valid identifier")
        return cls(parts)

    @property
    def level(self) -> str:
        """The level name of the deepest identifier, e.g. "Project"."""
        return LEVEL_NAMES[len(self.parts) - 1]

    def ancestors_and_self(self) -> Iterator[Scope]:
        """Every scope on the path from the account down to this one."""
        for depth in range(1, len(self.parts) + 1):
            yield Scope(self.parts[:depth])

    def is_ancestor_of(self, other: Scope) -> bool:
        """True when this scope strictly contains `other`."""
        return len(self.parts) < len(other.parts) and other.parts[: len(self.parts)] == self.parts

    def __str__(self) -> str:
        return "/".join(self.parts)


class _Model(BaseModel):
    # Booleans are strict: the CRD's schema (and so the apiserver) refuses "false" or 1 for one.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_identifier(value: str | None) -> str | None:
    if value is not None and not IDENTIFIER.fullmatch(value):
        raise ValueError(
            "must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending "
            "with a letter or digit (it is matched against a namespace label value)"
        )
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=63)]


class ScopeSpec(_Model):
    """`spec.scope`: the deepest identifier given is the resource's level."""

    account: Identifier
    organization: Identifier | None = None
    project: Identifier | None = None
    infrastructure: Identifier | None = None

    _identifiers = field_validator("account", "organization", "project", "infrastructure")(_check_identifier)

    @model_validator(mode="after")
    def _chain_is_unbroken(self) -> ScopeSpec:
        if self.project and not self.organization:
            raise ValueError("project requires organization")
        if self.infrastructure and not self.project:
            raise ValueError("infrastructure requires project")
        return self

    def to_scope(self) -> Scope:
        return Scope.of(self.account, self.organization, self.project, self.infrastructure)


class RegistrySpec(_Model):
    """`spec.registry`: every field is optional; unset fields are inherited from higher scopes."""

    server: str | None = Field(default=None, max_length=255)
    # The path after the server (HCE's registryAccount), not the scope's account.
    registry_account: str | None = Field(default=None, alias="account", max_length=255)
    type: RegistryType | None = None
    secret_name: str | None = Field(default=None, alias="secretName", max_length=253)
    secret_namespace: str | None = Field(default=None, alias="secretNamespace", max_length=63)

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and (problem := registry_server_error(value)):
            raise ValueError(problem)
        return value

    @field_validator("registry_account")
    @classmethod
    def _registry_account(cls, value: str | None) -> str | None:
        if value is not None and (problem := registry_account_error(value)):
            raise ValueError(problem)
        return value

    @field_validator("secret_name")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        if value is not None and not DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError(f"{quote(value)} is not a valid Secret name (lowercase DNS subdomain)")
        return value

    @field_validator("secret_namespace")
    @classmethod
    def _secret_namespace(cls, value: str | None) -> str | None:
        if value is not None and not DNS_LABEL.fullmatch(value):
            raise ValueError(f"{quote(value)} is not a valid namespace name (lowercase DNS label)")
        return value


class CustomImagesSpec(_Model):
    """`spec.customImages`: full image references per component, used verbatim."""

    enabled: StrictBool | None = None
    images: dict[str, str] = Field(default_factory=dict, max_length=64)

    @field_validator("images")
    @classmethod
    def _images(cls, value: dict[str, str]) -> dict[str, str]:
        for component, image in value.items():
            if not COMPONENT.fullmatch(component):
                raise ValueError(f"{quote(component)} is not a component name")
            parsed = parse_reference(image)
            if not isinstance(parsed, ImageReference):
                raise ValueError(
                    f"{component}: {quote(image)} is not a valid image reference: {parsed.reason}"
                )
        return value


class ChaosImageRegistrySpec(_Model):
    scope: ScopeSpec
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    allow_overrides: StrictBool = Field(default=False, alias="allowOverrides")
    custom_images: CustomImagesSpec = Field(default_factory=CustomImagesSpec, alias="customImages")

    @model_validator(mode="after")
    def _private_needs_secret(self) -> ChaosImageRegistrySpec:
        # An inherited secretName is checked at resolution time; here only the resource's own spec.
        if self.registry.type == "Private" and not self.registry.secret_name:
            raise ValueError("registry.type Private requires registry.secretName")
        return self


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1)
    uid: str | None = None
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")


class ChaosImageRegistry(BaseModel):
    """The custom resource. `status` and unknown top-level fields are ignored: the operator owns them."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["chaosregistry.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ChaosImageRegistry"]
    metadata: ObjectMeta
    spec: ChaosImageRegistrySpec

    @property
    def name(self) -> str:
        return self.metadata.name


class CatalogEntry(_Model):
    """A catalog line: the component of images whose last path segment is `last_segment`
    (written `repository` in the defaults, as users know it)."""

    last_segment: str = Field(alias="repository", min_length=1)
    component: str = Field(pattern=COMPONENT.pattern)
    helper_component: str | None = Field(default=None, alias="helperComponent", pattern=COMPONENT.pattern)


class ImageEnvVar(_Model):
    name: str = Field(min_length=1)
    helper: StrictBool = False


class ChaosPodRule(_Model):
    name: str = Field(min_length=1)
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    labels_present: list[str] = Field(default_factory=list, alias="labelsPresent")
    components: list[str] = Field(default_factory=list)
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _has_a_condition(self) -> ChaosPodRule:
        if not (self.match_labels or self.labels_present or self.components):
            raise ValueError(f"rule {quote(self.name)} needs matchLabels, labelsPresent or components")
        return self


_VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # a tag: what `{version}` becomes


class Release(_Model):
    """The images one release of a chaos product needs; `{version}` in an image is the version."""

    version: str = Field(pattern=_VERSION.pattern)
    images: list[str] = Field(min_length=1, max_length=256)

    @field_validator("images")
    @classmethod
    def _images(cls, value: list[str]) -> list[str]:
        for image in value:
            parsed = parse_reference(image.replace("{version}", "0"))
            if not isinstance(parsed, ImageReference):
                raise ValueError(f"{image!r} is not a valid image reference: {parsed.reason}")
        return value

    def image_list(self, version: str | None = None) -> list[str]:
        """The release's images at `version` (default: the release's own)."""
        chosen = version or self.version
        return [image.replace("{version}", chosen) for image in self.images]


def release_version_error(version: str) -> str | None:
    """Why `version` cannot be a release version (it becomes an image tag), or None."""
    if not _VERSION.fullmatch(version):
        return f"{version!r} is not a valid version: it becomes an image tag ([A-Za-z0-9_.-], at most 128)"
    return None


class DefaultRegistry(RegistrySpec):
    """The root of resolution: server, registry account and type must be known."""

    server: str = Field(max_length=255)
    registry_account: str = Field(alias="account", max_length=255)
    type: RegistryType = "Public"


class DefaultsConfig(_Model):
    """The defaults ConfigMap (`chaos-registry-defaults`, key `config.yaml`), merged over built-ins."""

    default_account: Identifier = Field(alias="defaultAccount")
    rewrite_unconfigured_scopes: StrictBool = Field(default=False, alias="rewriteUnconfiguredScopes")
    registry: DefaultRegistry
    custom_images: CustomImagesSpec = Field(default_factory=CustomImagesSpec, alias="customImages")
    catalog: list[CatalogEntry]
    image_env_vars: list[ImageEnvVar] = Field(alias="imageEnvVars")
    chaos_pods: list[ChaosPodRule] = Field(alias="chaosPods")
    helper_pod_name_contains: list[str] = Field(alias="helperPodNameContains")
    releases: dict[str, Release] = Field(default_factory=dict, max_length=32)

    _default_account = field_validator("default_account")(_check_identifier)

    @model_validator(mode="after")
    def _consistent(self) -> DefaultsConfig:
        if self.registry.type == "Private" and not self.registry.secret_name:
            raise ValueError("registry.type Private requires registry.secretName")
        seen: set[str] = set()
        for entry in self.catalog:
            if entry.last_segment in seen:
                raise ValueError(f"catalog: repository {quote(entry.last_segment)} is listed twice")
            seen.add(entry.last_segment)
        known = self.component_names
        for rule in self.chaos_pods:
            for component in rule.components:
                if component not in known:
                    raise ValueError(
                        f"chaosPods: rule {quote(rule.name)} names unknown component {quote(component)}"
                    )
        for component in self.custom_images.images:
            if component not in known:
                raise ValueError(f"customImages.images: unknown component {quote(component)}")
        return self

    @cached_property
    def component_names(self) -> frozenset[str]:
        names = {entry.component for entry in self.catalog}
        names.update(entry.helper_component for entry in self.catalog if entry.helper_component)
        return frozenset(names)


_LIST_KEYS = {"catalog": "repository", "imageEnvVars": "name", "chaosPods": "name"}


def _merge_lists(base: list[Any], override: list[Any], key: str) -> list[Any]:
    merged: dict[tuple[str, Any], Any] = {}
    for item in [*base, *override]:
        # Only a string key merges: the ConfigMap is anyone's text, and a list or mapping as the key
        # (unhashable) must reach validation, which names the field, not raise here.
        if isinstance(item, Mapping) and isinstance(item.get(key), str):
            merged["key", item[key]] = item
        else:
            merged["id", id(item)] = item  # left for validation to reject with the field's name
    return list(merged.values())


def merge_defaults(builtin: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a defaults document over the built-in one: lists by key, mappings by field."""
    merged: dict[str, Any] = dict(builtin)
    for key, value in override.items():
        base = merged.get(key)
        if key == "releases" and isinstance(base, Mapping) and isinstance(value, Mapping):
            # A release given a version alone keeps its image list.
            merged[key] = {
                name: {**base[name], **release}
                if isinstance(base.get(name), Mapping) and isinstance(release, Mapping)
                else release
                for name, release in {**base, **value}.items()
            }
        elif key in _LIST_KEYS and isinstance(base, list) and isinstance(value, list):
            merged[key] = _merge_lists(base, value, _LIST_KEYS[key])
        elif isinstance(base, Mapping) and isinstance(value, Mapping):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


def builtin_defaults_document() -> dict[str, Any]:
    """The built-in defaults as a plain document (shipped as webhook/core/defaults.yaml)."""
    text = resources.files("webhook.core").joinpath("defaults.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def load_defaults(override: Mapping[str, Any] | None = None) -> DefaultsConfig:
    """The effective defaults: built-ins, with `override` (a ConfigMap's config.yaml) merged over."""
    document = builtin_defaults_document()
    if override:
        document = merge_defaults(document, override)
    return DefaultsConfig.model_validate(document)


def format_validation_error(error: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each naming the field by its YAML path (`spec.registry.server`)."""
    lines = []
    for detail in error.errors():
        # shown(): a key is the user's text, and may hold a newline or be a megabyte long.
        path = ".".join(shown(str(part)) for part in detail["loc"] if part != "__root__")
        location = ".".join(part for part in (prefix, path) if part)
        message = detail["msg"].removeprefix("Value error, ")
        lines.append(f"{location}: {message}" if location else message)
    return lines

"""A ChaosImageRegistry in its usual shape, read straight into the resolver's entry.

The pydantic models decide whether a resource is valid, and word every error. Validating with them
and then building the entry took 24 us a resource, the largest single part of serve's start-up CPU
at 100,000 resources. This reader takes 14 us for the shape the apiserver returns for a resource
written as documented (aliases as keys, exact JSON types, timestamps as `2006-01-02T15:04:05Z`),
and declines (returns None) on anything else, valid or not, so that the models see it. It never
decides that a resource is invalid.

tests/unit/test_registry_fastpath.py holds it to the models: whatever it accepts, the models accept,
and build an equal entry from.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from webhook.core.models import (
    API_VERSION,
    COMPONENT,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    IDENTIFIER,
    KIND,
    LEVELS,
    Scope,
)
from webhook.core.reference import (
    ImageReference,
    parse_reference,
    registry_account_error,
    registry_server_error,
)
from webhook.core.resolver import NO_IMAGES, RegistryEntry

_SPEC_KEYS = frozenset(("scope", "registry", "allowOverrides", "customImages"))
_REGISTRY_KEYS = frozenset(("server", "account", "type", "secretName", "secretNamespace"))
_CUSTOM_IMAGES_KEYS = frozenset(("enabled", "images"))
_TYPES = frozenset(("Public", "Private"))
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_MAX_IMAGES = 64
_NO_REGISTRY: Mapping[str, Any] = {}
_ABSENT = object()


def direct_entry(document: Mapping[str, Any]) -> RegistryEntry | None:
    """The entry of `document` when it is valid and in the usual shape; None to leave it to the
    models (see the module's docstring)."""
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        return None
    metadata, spec = document.get("metadata"), document.get("spec")
    if type(metadata) is not dict or type(spec) is not dict or not spec.keys() <= _SPEC_KEYS:
        return None
    name = metadata.get("name")
    if type(name) is not str or not name or not _metadata_is_plain(metadata):
        return None
    created = metadata.get("creationTimestamp")
    if created is not None and (created := _timestamp(created)) is None:
        return None
    scope = _scope(spec.get("scope"))
    registry = spec.get("registry", _NO_REGISTRY)
    allow_overrides = spec.get("allowOverrides", False)
    custom_images = spec.get("customImages", _ABSENT)
    if scope is None or type(registry) is not dict or type(allow_overrides) is not bool:
        return None
    if not registry.keys() <= _REGISTRY_KEYS or not _registry_is_valid(registry):
        return None
    custom_enabled, images = None, NO_IMAGES
    if custom_images is not _ABSENT:
        if type(custom_images) is not dict or not custom_images.keys() <= _CUSTOM_IMAGES_KEYS:
            return None
        custom_enabled = custom_images.get("enabled")
        images = custom_images.get("images", NO_IMAGES)
        if custom_enabled is not None and type(custom_enabled) is not bool:
            return None
        if images is not NO_IMAGES and not _images_are_valid(images):
            return None
    return RegistryEntry.of(
        name=name,
        scope=scope,
        created=created,
        allow_overrides=allow_overrides,
        server=registry.get("server"),
        registry_account=registry.get("account"),
        type=registry.get("type"),
        secret_name=registry.get("secretName"),
        secret_namespace=registry.get("secretNamespace"),
        custom_enabled=custom_enabled,
        custom_images=images,
    )


def _metadata_is_plain(metadata: Mapping[str, Any]) -> bool:
    """The ObjectMeta fields the models read, each absent or of its exact JSON type."""
    uid, generation, resource_version = (
        metadata.get("uid"),
        metadata.get("generation"),
        metadata.get("resourceVersion"),
    )
    return (
        (uid is None or type(uid) is str)
        and (generation is None or type(generation) is int)
        and (resource_version is None or type(resource_version) is str)
    )


def _timestamp(value: Any) -> datetime | None:
    """The creation time when written in the apiserver's own format, else None."""
    if type(value) is not str or not _TIMESTAMP.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # a month 13, a 30 February: the models word it
        return None


def _scope(value: Any) -> Scope | None:
    """The scope of `spec.scope` when its levels are given top-down without a gap or a null."""
    if type(value) is not dict or not 0 < len(value) <= len(LEVELS):
        return None
    parts = []
    for level in LEVELS[: len(value)]:
        part = value.get(level)
        if type(part) is not str or not IDENTIFIER.fullmatch(part):
            return None
        parts.append(sys.intern(part))  # as Scope.of does: names recur in every scope below them
    return Scope(tuple(parts))


def _registry_is_valid(registry: Mapping[str, Any]) -> bool:
    secret_name = registry.get("secretName")
    kind = registry.get("type")
    return (
        _absent_or(registry.get("server"), 255, _is_registry_server)
        and _absent_or(registry.get("account"), 255, _is_registry_account)
        and (kind is None or (type(kind) is str and kind in _TYPES))
        and _absent_or(secret_name, 253, DNS_SUBDOMAIN.fullmatch)
        and _absent_or(registry.get("secretNamespace"), 63, DNS_LABEL.fullmatch)
        and (kind != "Private" or secret_name is not None)
    )


def _absent_or(value: Any, limit: int, valid: Callable[[str], object]) -> bool:
    """None, or a string of at most `limit` characters that `valid` finds true."""
    return value is None or (type(value) is str and len(value) <= limit and bool(valid(value)))


def _is_registry_server(server: str) -> bool:
    return registry_server_error(server) is None


def _is_registry_account(account: str) -> bool:
    return registry_account_error(account) is None


def _images_are_valid(images: Any) -> bool:
    if type(images) is not dict or len(images) > _MAX_IMAGES:
        return False
    for component, image in images.items():
        if type(component) is not str or not COMPONENT.fullmatch(component) or type(image) is not str:
            return False
        if not isinstance(parse_reference(image), ImageReference):
            return False
    return True

"""Shared fixtures of the unit tests: the built-in defaults, the examples, and small factories.

Everything here is cheap and pure (no cluster); the built-in defaults are parsed once per session.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from webhook.core.loader import LoadedConfig, load_config
from webhook.core.models import DefaultsConfig, Scope, load_defaults
from webhook.core.resolver import RegistryEntry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

EntryFactory = Callable[..., RegistryEntry]
PodLoader = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def defaults() -> DefaultsConfig:
    """The built-in defaults (immutable, so one instance serves every test)."""
    return load_defaults()


@pytest.fixture(scope="session")
def examples_config() -> LoadedConfig:
    """examples/config, loaded as the CLI loads it."""
    return load_config([str(EXAMPLES / "config")])


@pytest.fixture(scope="session")
def _example_pods() -> dict[str, dict[str, Any]]:
    pods = {}
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        pods[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return pods


@pytest.fixture
def example_pod(_example_pods: dict[str, dict[str, Any]]) -> PodLoader:
    """A fresh deep copy of examples/pods/<name>.yaml (tests may change it)."""

    def load(name: str) -> dict[str, Any]:
        return copy.deepcopy(_example_pods[name])

    return load


def make_entry(
    name: str,
    scope: str,
    *,
    created: datetime | None = None,
    allow_overrides: bool = False,
    server: str | None = None,
    account: str | None = None,
    type: str | None = None,
    secret_name: str | None = None,
    secret_namespace: str | None = None,
    custom_enabled: bool | None = None,
    custom_images: dict[str, str] | None = None,
) -> RegistryEntry:
    """A RegistryEntry at `scope` ("acme/retail/...") without going through the pydantic models."""
    return RegistryEntry(
        name=name,
        scope=Scope(tuple(scope.split("/"))),
        created=created or datetime(2024, 1, 1, tzinfo=UTC),
        allow_overrides=allow_overrides,
        server=server,
        registry_account=account,  # `account` as in the resource: spec.registry.account
        type=type,
        secret_name=secret_name,
        secret_namespace=secret_namespace,
        custom_enabled=custom_enabled,
        custom_images=MappingProxyType(dict(custom_images or {})),
    )


@pytest.fixture(scope="session")
def entry() -> EntryFactory:
    """Factory: `entry("acme", "acme", server=..., allow_overrides=True)`."""
    return make_entry

"""Scope resolution (docs/contract.md#resolution): the effective registry of a scope, with provenance.

Resources are indexed by scope once; resolving a scope looks at most four keys up (one per level),
whatever the number of resources. Pure and deterministic: no I/O, no clock.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from webhook.core.models import ChaosImageRegistry, DefaultsConfig, Scope
from webhook.core.sharing import shared

DEFAULTS_SOURCE = "defaults"
# Shared by every entry and scope without custom images (most of them): one per scope adds up.
NO_IMAGES: Mapping[str, str] = MappingProxyType({})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMES: dict[datetime, datetime] = {}
_TIMES_LIMIT = 4096

# Provenance keys, in the order `explain` prints them.
REGISTRY_FIELDS = (
    ("registry.server", "server"),
    ("registry.account", "registry_account"),
    ("registry.type", "type"),
    ("registry.secretName", "secret_name"),
    ("registry.secretNamespace", "secret_namespace"),
)


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A ChaosImageRegistry reduced to what resolution needs."""

    name: str
    scope: Scope
    created: datetime
    allow_overrides: bool = False
    server: str | None = None
    registry_account: str | None = None  # the path after the server; the scope's account is in `scope`
    type: str | None = None
    secret_name: str | None = None
    secret_namespace: str | None = None
    custom_enabled: bool | None = None
    custom_images: Mapping[str, str] = field(default_factory=lambda: NO_IMAGES)

    @classmethod
    def from_resource(cls, resource: ChaosImageRegistry) -> RegistryEntry:
        spec = resource.spec
        registry = spec.registry
        return cls.of(
            name=resource.name,
            scope=spec.scope.to_scope(),
            created=resource.metadata.creation_timestamp,
            allow_overrides=spec.allow_overrides,
            server=registry.server,
            registry_account=registry.registry_account,
            type=registry.type,
            secret_name=registry.secret_name,
            secret_namespace=registry.secret_namespace,
            custom_enabled=spec.custom_images.enabled,
            custom_images=spec.custom_images.images,
        )

    @classmethod
    def of(
        cls,
        *,
        name: str,
        scope: Scope,
        created: datetime | None,
        allow_overrides: bool,
        server: str | None,
        registry_account: str | None,
        type: str | None,
        secret_name: str | None,
        secret_namespace: str | None,
        custom_enabled: bool | None,
        custom_images: Mapping[str, str],
    ) -> RegistryEntry:
        """The entry of validated values, sharing what recurs across resources: one object each,
        not one a resource."""
        created = created or _EPOCH
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(
            name=name,
            scope=scope,
            created=shared(_TIMES, created, _TIMES_LIMIT),  # resources created in bulk share one
            allow_overrides=allow_overrides,
            server=server,
            registry_account=_interned(registry_account),
            type=_interned(type),
            secret_name=_interned(secret_name),
            secret_namespace=_interned(secret_namespace),
            custom_enabled=custom_enabled,
            custom_images=_images(custom_images),
        )

    @property
    def source(self) -> str:
        return f"ChaosImageRegistry/{self.name}"


@dataclass(frozen=True, slots=True)
class Blocked:
    """`resource` (at `scope`) cannot change anything: `blocker` at `blocker_scope` locks it."""

    resource: str
    scope: Scope
    blocker: str
    blocker_scope: Scope

    def message(self) -> str:
        return (
            f"a higher scope is blocking this configuration: ChaosImageRegistry {self.blocker} "
            f"at {self.blocker_scope.level.lower()} {self.blocker_scope} has allowOverrides false; "
            f"please enable override from {self.blocker_scope.level.lower()} {self.blocker_scope}"
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    """`resource` has the same scope as `winner`, which is older (ties broken by name)."""

    resource: str
    scope: Scope
    winner: str

    def message(self) -> str:
        return (
            f"ChaosImageRegistry {self.winner} has the same scope {self.scope} and is older "
            f"(oldest wins, ties by name): this resource is ignored"
        )


@dataclass(frozen=True, slots=True)
class Effective:
    """The registry configuration that applies to one scope, and where each field came from.

    One is memoised per scope in use, so it keeps the entries that were applied rather than a
    provenance table: `provenance` is computed when asked (explain, status), never by admission.
    """

    scope: Scope
    server: str
    registry_account: str  # the path after the server (the scope's account is in `scope`)
    type: str
    secret_name: str | None
    secret_namespace: str | None
    custom_enabled: bool
    custom_images: Mapping[str, str]
    layers: tuple[RegistryEntry, ...]  # the entries applied, from the account down
    default_components: tuple[str, ...]  # components with a custom image in the defaults
    blocked: tuple[Blocked, ...]
    problems: tuple[str, ...]

    @property
    def private(self) -> bool:
        return self.type == "Private"

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.layers)

    @property
    def provenance(self) -> Mapping[str, str]:
        """Field (as `explain` names it) -> where its value came from: `defaults` or a resource."""
        return MappingProxyType(_provenance(self.layers, self.default_components))


class RegistryIndex:
    """All ChaosImageRegistry entries, indexed by scope; resolves scopes on demand."""

    def __init__(self, entries: Iterable[RegistryEntry]) -> None:
        grouped: dict[Scope, list[RegistryEntry]] = {}
        for entry in entries:
            grouped.setdefault(entry.scope, []).append(entry)
        # The oldest resource of a scope wins (ties broken by name); the others, rare, are kept
        # apart so that a scope with one resource costs one dict slot (100,000 scopes in use).
        self._winners: dict[Scope, RegistryEntry] = {}
        self._losers: dict[Scope, tuple[RegistryEntry, ...]] = {}
        for scope, group in grouped.items():
            if len(group) > 1:
                group.sort(key=lambda e: (e.created, e.name))
                self._losers[scope] = tuple(group[1:])
            self._winners[group[0].scope] = group[0]
        self._by_name: Mapping[str, RegistryEntry] | None = None

    def __len__(self) -> int:
        return len(self._winners) + sum(len(group) for group in self._losers.values())

    def entries(self) -> Iterable[RegistryEntry]:
        for scope, winner in self._winners.items():
            yield winner
            yield from self._losers.get(scope, ())

    def by_name(self) -> Mapping[str, RegistryEntry]:
        """Name -> entry. Built on first use and kept with the index: the writer asks for it in
        every batch of statuses it plans, and rebuilding it each time was 400 dicts of 100,000
        names at 100,000 registries. Admission never asks, so a replica that does not write
        never builds it."""
        if self._by_name is None:
            self._by_name = MappingProxyType({entry.name: entry for entry in self.entries()})
        return self._by_name

    def winner(self, scope: Scope) -> RegistryEntry | None:
        return self._winners.get(scope)

    def canonical(self, scope: Scope) -> Scope:
        """The Scope object of the resource at `scope`, if there is one, else `scope`: what is
        memoised per scope then holds no second copy of an equal Scope (100,000 scopes in use)."""
        winner = self._winners.get(scope)
        return scope if winner is None else winner.scope

    def conflict(self, entry: RegistryEntry) -> Conflict | None:
        """Set when another resource of the same scope wins over `entry`."""
        winner = self._winners.get(entry.scope)
        if winner is None or winner.name == entry.name:
            return None
        return Conflict(resource=entry.name, scope=entry.scope, winner=winner.name)

    def blocker(self, scope: Scope) -> RegistryEntry | None:
        """The highest resource above `scope` that locks the levels below it, if any."""
        for ancestor in scope.ancestors_and_self():
            if ancestor == scope:
                return None
            winner = self._winners.get(ancestor)
            if winner is not None and not winner.allow_overrides:
                return winner
        return None

    def blocked_count(self) -> int:
        """How many resources have a lock above them (as `blocker` finds it, without a Scope built
        per level: the service counts them for a metric at every change of configuration)."""
        locks = {scope.parts for scope, winner in self._winners.items() if not winner.allow_overrides}
        if not locks:
            return 0
        return sum(
            1
            for entry in self.entries()
            if any(entry.scope.parts[:depth] in locks for depth in range(1, len(entry.scope.parts)))
        )

    def conflict_count(self) -> int:
        """How many resources another of the same scope wins over (names are unique: every loser)."""
        return sum(len(group) for group in self._losers.values())

    def blocked(self, entry: RegistryEntry) -> Blocked | None:
        blocker = self.blocker(entry.scope)
        if blocker is None:
            return None
        return Blocked(
            resource=entry.name, scope=entry.scope, blocker=blocker.name, blocker_scope=blocker.scope
        )

    def resolve(self, scope: Scope, defaults: DefaultsConfig) -> Effective:
        """docs/contract.md#resolution: walk from the account down, merge field by field, stop at a lock."""
        root = defaults.registry
        values: dict[str, str | None] = {
            "server": root.server,
            "registry_account": root.registry_account,
            "type": root.type,
            "secret_name": root.secret_name,
            "secret_namespace": root.secret_namespace,
        }
        type_source = DEFAULTS_SOURCE
        custom_enabled = bool(defaults.custom_images.enabled)
        images = dict(defaults.custom_images.images)
        applied: list[RegistryEntry] = []
        blocked: list[Blocked] = []
        lock: RegistryEntry | None = None

        for level_scope in scope.ancestors_and_self():
            entry = self._winners.get(level_scope)
            if entry is None:
                continue
            if lock is not None:
                blocked.append(Blocked(entry.name, entry.scope, lock.name, lock.scope))
                continue
            applied.append(entry)
            for _, attribute in REGISTRY_FIELDS:
                value = getattr(entry, attribute)
                if value is not None:
                    values[attribute] = value
            if entry.type is not None:
                type_source = entry.source
            if entry.custom_enabled is not None:
                custom_enabled = entry.custom_enabled
            images.update(entry.custom_images)
            if not entry.allow_overrides:
                lock = entry

        problems = []
        if values["type"] == "Private" and not values["secret_name"]:
            problems.append(
                f"registry.type Private (from {type_source}) has no registry.secretName "
                "at this scope or above: no pull secret can be added"
            )
        server, registry_account, type_ = values["server"], values["registry_account"], values["type"]
        assert server is not None and registry_account is not None and type_ is not None
        return Effective(
            scope=scope,
            server=server,
            registry_account=registry_account,
            type=type_,
            secret_name=values["secret_name"],
            secret_namespace=values["secret_namespace"],
            custom_enabled=custom_enabled,
            custom_images=_shared_images(images, applied),
            layers=tuple(applied),
            default_components=tuple(defaults.custom_images.images),
            blocked=tuple(blocked),
            problems=tuple(problems),
        )


def _provenance(layers: Iterable[RegistryEntry], default_components: Iterable[str]) -> dict[str, str]:
    provenance = {key: DEFAULTS_SOURCE for key, _ in REGISTRY_FIELDS}
    provenance["customImages.enabled"] = DEFAULTS_SOURCE
    for component in default_components:
        provenance[f"customImages.images.{component}"] = DEFAULTS_SOURCE
    for entry in layers:
        source = entry.source
        for key, attribute in REGISTRY_FIELDS:
            if getattr(entry, attribute) is not None:
                provenance[key] = source
        if entry.custom_enabled is not None:
            provenance["customImages.enabled"] = source
        for component in entry.custom_images:
            provenance[f"customImages.images.{component}"] = source
    return provenance


def _interned(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def _shared_images(images: dict[str, str], layers: Iterable[RegistryEntry]) -> Mapping[str, str]:
    """`images`, as the mapping of the one layer that gave all of them when there is one (the
    usual case): an Effective is memoised per scope in use, so it should not hold its own copy of
    what a resource already holds."""
    if not images:
        return NO_IMAGES
    for entry in layers:
        if entry.custom_images == images:
            return entry.custom_images
    return _images(images)


def _images(images: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(images)) if images else NO_IMAGES

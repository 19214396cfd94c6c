"""Tests for webhook.core.resolver: the effective registry of a scope (docs/contract.md#resolution)
and Blocked/Conflicting.

Resolution starts from the defaults, merges each level's resource field by field top-down, stops at
the first resource with allowOverrides false, and records where every field came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.conftest import EntryFactory, make_entry
from webhook.core.models import DefaultsConfig, Scope, load_defaults
from webhook.core.resolver import (
    DEFAULTS_SOURCE,
    REGISTRY_FIELDS,
    Blocked,
    Conflict,
    Effective,
    RegistryEntry,
    RegistryIndex,
)

ACCOUNT, ORG, PROJECT, INFRA = "acme", "acme/retail", "acme/retail/payments", "acme/retail/payments/prod"


def resolve(defaults: DefaultsConfig, scope: str, *entries: RegistryEntry) -> Effective:
    return RegistryIndex(entries).resolve(Scope.parse(scope), defaults)


def values(effective: Effective) -> dict[str, Any]:
    return {
        "server": effective.server,
        "account": effective.registry_account,
        "type": effective.type,
        "secret_name": effective.secret_name,
        "secret_namespace": effective.secret_namespace,
        "custom_enabled": effective.custom_enabled,
        "custom_images": dict(effective.custom_images),
    }


def at(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def test_defaults_only(defaults: DefaultsConfig) -> None:
    effective = resolve(defaults, INFRA)
    assert values(effective) == {
        "server": "docker.io",
        "account": "harness",
        "type": "Public",
        "secret_name": None,
        "secret_namespace": None,
        "custom_enabled": False,
        "custom_images": {},
    }
    assert set(effective.provenance.values()) == {DEFAULTS_SOURCE}
    assert effective.applied == ()
    assert effective.blocked == ()
    assert effective.problems == ()
    assert not effective.private


def test_defaults_from_a_configmap_are_the_root() -> None:
    defaults = load_defaults(
        {
            "registry": {"server": "mirror.acme.corp", "type": "Private", "secretName": "pull"},
            "customImages": {"enabled": True, "images": {"ddcr": "mirror.acme.corp/ddcr:1"}},
        }
    )
    effective = resolve(defaults, ORG, make_entry("acme", ACCOUNT, allow_overrides=True, account="chaos"))
    assert (effective.server, effective.registry_account, effective.type, effective.secret_name) == (
        "mirror.acme.corp",
        "chaos",
        "Private",
        "pull",
    )
    assert effective.custom_enabled is True
    assert dict(effective.custom_images) == {"ddcr": "mirror.acme.corp/ddcr:1"}
    assert effective.provenance["customImages.images.ddcr"] == DEFAULTS_SOURCE
    assert effective.provenance["registry.account"] == "ChaosImageRegistry/acme"


# (entries as (name, scope, fields), scope resolved, expected field values, expected provenance by name)
MERGES: list[tuple[str, list[tuple[str, str, dict[str, Any]]], str, dict[str, Any], dict[str, str]]] = [
    (
        "account sets server only",
        [("a", ACCOUNT, {"server": "reg.acme.corp"})],
        ACCOUNT,
        {"server": "reg.acme.corp", "account": "harness", "type": "Public"},
        {"registry.server": "a", "registry.account": DEFAULTS_SOURCE},
    ),
    (
        "org overrides server, inherits account from the account level",
        [
            ("a", ACCOUNT, {"allow_overrides": True, "server": "reg.acme.corp", "account": "chaos"}),
            ("o", ORG, {"server": "reg.retail.acme.corp"}),
        ],
        PROJECT,
        {"server": "reg.retail.acme.corp", "account": "chaos"},
        {"registry.server": "o", "registry.account": "a", "registry.type": DEFAULTS_SOURCE},
    ),
    (
        "empty account is a value, not unset",
        [
            ("a", ACCOUNT, {"allow_overrides": True, "account": "harness"}),
            ("p", PROJECT, {"account": ""}),
        ],
        INFRA,
        {"account": ""},
        {"registry.account": "p"},
    ),
    (
        "private at org with secret; project changes server only",
        [
            (
                "o",
                ORG,
                {"allow_overrides": True, "type": "Private", "secret_name": "pull", "secret_namespace": "cs"},
            ),
            ("p", PROJECT, {"allow_overrides": True, "server": "reg.pay.corp"}),
        ],
        INFRA,
        {"server": "reg.pay.corp", "type": "Private", "secret_name": "pull", "secret_namespace": "cs"},
        {
            "registry.server": "p",
            "registry.type": "o",
            "registry.secretName": "o",
            "registry.secretNamespace": "o",
        },
    ),
    (
        "lower level switches back to Public, keeps the inherited secret name",
        [
            ("o", ORG, {"allow_overrides": True, "type": "Private", "secret_name": "pull"}),
            ("i", INFRA, {"type": "Public"}),
        ],
        INFRA,
        {"type": "Public", "secret_name": "pull"},
        {"registry.type": "i", "registry.secretName": "o"},
    ),
    (
        "infrastructure level applies to its own scope only",
        [("i", INFRA, {"server": "reg.infra.corp"})],
        PROJECT,
        {"server": "docker.io"},
        {"registry.server": DEFAULTS_SOURCE},
    ),
    (
        "another branch does not apply",
        [
            ("x", "acme/platform", {"server": "reg.platform.corp"}),
            ("y", "other", {"server": "reg.other.corp"}),
        ],
        INFRA,
        {"server": "docker.io"},
        {"registry.server": DEFAULTS_SOURCE},
    ),
]


@pytest.mark.parametrize(
    ("case", "entries", "scope", "expected", "sources"), MERGES, ids=[case[0] for case in MERGES]
)
def test_field_level_merge(
    defaults: DefaultsConfig,
    case: str,
    entries: list[tuple[str, str, dict[str, Any]]],
    scope: str,
    expected: dict[str, Any],
    sources: dict[str, str],
) -> None:
    effective = resolve(defaults, scope, *(make_entry(n, s, **f) for n, s, f in entries))
    got = values(effective)
    for key, value in expected.items():
        assert got[key] == value, key
    for key, source in sources.items():
        wanted = source if source == DEFAULTS_SOURCE else f"ChaosImageRegistry/{source}"
        assert effective.provenance[key] == wanted, key


def test_custom_images_merge_per_component(defaults: DefaultsConfig) -> None:
    effective = resolve(
        defaults,
        INFRA,
        make_entry(
            "a",
            ACCOUNT,
            allow_overrides=True,
            custom_enabled=True,
            custom_images={"ddcr": "a.io/ddcr:1", "logWatcher": "a.io/lw:1"},
        ),
        make_entry(
            "p", PROJECT, allow_overrides=True, custom_images={"ddcr": "p.io/ddcr:2", "ddcrLib": "p.io/lib:2"}
        ),
        make_entry("i", INFRA, custom_enabled=False),
    )
    assert dict(effective.custom_images) == {
        "ddcr": "p.io/ddcr:2",
        "logWatcher": "a.io/lw:1",
        "ddcrLib": "p.io/lib:2",
    }
    assert effective.custom_enabled is False
    assert effective.provenance["customImages.enabled"] == "ChaosImageRegistry/i"
    assert effective.provenance["customImages.images.ddcr"] == "ChaosImageRegistry/p"
    assert effective.provenance["customImages.images.logWatcher"] == "ChaosImageRegistry/a"
    assert effective.provenance["customImages.images.ddcrLib"] == "ChaosImageRegistry/p"


def test_provenance_has_every_field(defaults: DefaultsConfig) -> None:
    effective = resolve(
        defaults,
        PROJECT,
        make_entry(
            "a",
            ACCOUNT,
            allow_overrides=True,
            server="reg.acme.corp",
            account="x",
            type="Private",
            secret_name="s",
            secret_namespace="ns",
            custom_enabled=True,
            custom_images={"ddcr": "reg.acme.corp/x/chaos-ddcr:1"},
        ),
    )
    expected_keys = {key for key, _ in REGISTRY_FIELDS} | {"customImages.enabled", "customImages.images.ddcr"}
    assert set(effective.provenance) == expected_keys
    assert set(effective.provenance.values()) == {"ChaosImageRegistry/a"}


LOCKING_LEVELS = [ACCOUNT, ORG, PROJECT]


@pytest.mark.parametrize("lock_scope", LOCKING_LEVELS)
def test_allow_overrides_false_locks_everything_below(defaults: DefaultsConfig, lock_scope: str) -> None:
    depth = lock_scope.count("/") + 1
    scopes = [ACCOUNT, ORG, PROJECT, INFRA]
    entries = []
    for index, scope in enumerate(scopes):
        entries.append(
            make_entry(
                f"r{index}",
                scope,
                allow_overrides=scope != lock_scope,
                server=f"reg{index}.corp",
                account=f"acct{index}",
                type="Private",
                secret_name=f"secret{index}",
                secret_namespace=f"ns{index}",
                custom_enabled=index % 2 == 0,
                custom_images={
                    "ddcr": f"reg{index}.corp/ddcr:{index}",
                    f"c{index}": f"reg{index}.corp/c:{index}",
                },
            )
        )
    effective = resolve(defaults, INFRA, *entries)
    lock = depth - 1
    assert effective.server == f"reg{lock}.corp"
    assert effective.registry_account == f"acct{lock}"
    assert effective.secret_name == f"secret{lock}"
    assert effective.secret_namespace == f"ns{lock}"
    assert effective.custom_enabled is (lock % 2 == 0)
    assert effective.custom_images["ddcr"] == f"reg{lock}.corp/ddcr:{lock}"
    # components set only below the lock never arrive
    assert set(effective.custom_images) == {"ddcr"} | {f"c{i}" for i in range(lock + 1)}
    assert effective.applied == tuple(f"r{i}" for i in range(lock + 1))
    assert effective.blocked == tuple(
        Blocked(f"r{i}", Scope.parse(scopes[i]), f"r{lock}", Scope.parse(lock_scope))
        for i in range(lock + 1, 4)
    )
    assert "ChaosImageRegistry/r" + str(lock + 1) not in effective.provenance.values()


def test_lock_is_the_highest_locking_resource(defaults: DefaultsConfig) -> None:
    # Both the account and the project lock; the account's lock is the one that counts for the infra.
    index = RegistryIndex(
        [
            make_entry("a", ACCOUNT, server="a.corp"),
            make_entry("p", PROJECT, server="p.corp"),
            make_entry("i", INFRA, server="i.corp"),
        ]
    )
    effective = index.resolve(Scope.parse(INFRA), defaults)
    assert effective.server == "a.corp"
    assert [(b.resource, b.blocker) for b in effective.blocked] == [("p", "a"), ("i", "a")]
    blocked = index.blocked(make_entry("i", INFRA))
    assert blocked is not None
    assert (blocked.blocker, blocked.blocker_scope) == ("a", Scope.parse(ACCOUNT))
    assert index.blocker(Scope.parse(ACCOUNT)) is None
    assert index.blocked(make_entry("a", ACCOUNT)) is None


@pytest.mark.parametrize(
    ("entries", "scope", "server", "blocked"),
    [
        # the org level has no resource: it passes the account's values through and locks nothing
        ([("a", ACCOUNT, True, "a.corp"), ("p", PROJECT, True, "p.corp")], INFRA, "p.corp", []),
        # ... and does not lift a lock either
        ([("a", ACCOUNT, False, "a.corp"), ("p", PROJECT, True, "p.corp")], INFRA, "a.corp", [("p", "a")]),
        ([("o", ORG, False, "o.corp"), ("i", INFRA, True, "i.corp")], INFRA, "o.corp", [("i", "o")]),
        # allowOverrides true at every level: the deepest wins
        (
            [("a", ACCOUNT, True, "a.corp"), ("o", ORG, True, "o.corp"), ("i", INFRA, True, "i.corp")],
            INFRA,
            "i.corp",
            [],
        ),
        # a lock at the deepest level locks nothing that exists
        ([("a", ACCOUNT, True, "a.corp"), ("i", INFRA, False, "i.corp")], INFRA, "i.corp", []),
        # a lock in another branch does not apply
        ([("x", "acme/platform", False, "x.corp"), ("p", PROJECT, True, "p.corp")], INFRA, "p.corp", []),
    ],
)
def test_levels_without_a_resource_pass_through(
    defaults: DefaultsConfig,
    entries: list[tuple[str, str, bool, str]],
    scope: str,
    server: str,
    blocked: list[tuple[str, str]],
) -> None:
    effective = resolve(
        defaults,
        scope,
        *(make_entry(n, s, allow_overrides=allow, server=srv) for n, s, allow, srv in entries),
    )
    assert effective.server == server
    assert [(b.resource, b.blocker) for b in effective.blocked] == blocked


def test_blocked_message_names_blocker_and_scope() -> None:
    blocked = Blocked("child", Scope.parse(INFRA), "parent", Scope.parse(PROJECT))
    message = blocked.message()
    assert "a higher scope is blocking this configuration" in message
    assert "ChaosImageRegistry parent at project acme/retail/payments has allowOverrides false" in message
    assert message.endswith("please enable override from project acme/retail/payments")


@pytest.mark.parametrize(
    ("entries", "winner"),
    [
        ([("b", 1), ("a", 2)], "b"),  # oldest wins
        ([("a", 2), ("b", 1)], "b"),  # whatever the order given
        ([("b", 1), ("a", 1)], "a"),  # ties by name
        ([("c", 3), ("b", 2), ("a", 2)], "a"),
    ],
)
def test_conflicting_resources_oldest_wins_ties_by_name(
    defaults: DefaultsConfig, entries: list[tuple[str, int]], winner: str
) -> None:
    index = RegistryIndex([make_entry(n, PROJECT, created=at(day), server=f"{n}.corp") for n, day in entries])
    effective = index.resolve(Scope.parse(INFRA), defaults)
    assert effective.server == f"{winner}.corp"
    assert effective.applied == (winner,)
    assert effective.blocked == ()
    assert index.winner(Scope.parse(PROJECT)) is not None
    assert index.winner(Scope.parse(PROJECT)).name == winner  # type: ignore[union-attr]
    for name, day in entries:
        conflict = index.conflict(make_entry(name, PROJECT, created=at(day)))
        if name == winner:
            assert conflict is None
        else:
            assert conflict == Conflict(resource=name, scope=Scope.parse(PROJECT), winner=winner)
            assert conflict.message().startswith(f"ChaosImageRegistry {winner} has the same scope {PROJECT}")
    assert len(index) == len(entries)
    assert sorted(e.name for e in index.entries()) == sorted(n for n, _ in entries)


def test_every_entry_is_found_by_name_winners_and_losers_alike() -> None:
    entries = [
        make_entry("old", ORG, created=at(1)),
        make_entry("new", ORG, created=at(2)),
        make_entry("infra", INFRA),
    ]
    index = RegistryIndex(entries)
    by_name = index.by_name()
    assert dict(by_name) == {entry.name: entry for entry in entries}
    assert index.by_name() is by_name, "built once, kept with the index"


def test_a_conflict_loser_neither_applies_nor_locks(defaults: DefaultsConfig) -> None:
    effective = resolve(
        defaults,
        INFRA,
        make_entry("old", ORG, created=at(1), allow_overrides=True, server="old.corp"),
        make_entry("new", ORG, created=at(2), allow_overrides=False, server="new.corp"),
        make_entry("i", INFRA, account="infra"),
    )
    assert (effective.server, effective.registry_account) == ("old.corp", "infra")
    assert effective.blocked == ()


def test_resource_without_creation_timestamp_counts_as_oldest(defaults: DefaultsConfig) -> None:
    from webhook.core.loader import parse_registry

    def resource(name: str, created: str | None) -> RegistryEntry:
        metadata: dict[str, Any] = {"name": name}
        if created:
            metadata["creationTimestamp"] = created
        parsed = parse_registry(
            {
                "apiVersion": "chaosregistry.io/v1alpha1",
                "kind": "ChaosImageRegistry",
                "metadata": metadata,
                "spec": {"scope": {"account": "acme"}, "registry": {"server": f"{name}.corp"}},
            }
        )
        assert not isinstance(parsed, list)
        return RegistryEntry.from_resource(parsed)

    naive = resource("naive", "2024-01-01T00:00:00")
    assert naive.created.tzinfo is not None  # naive timestamps are read as UTC, comparable with aware ones
    effective = resolve(defaults, ACCOUNT, resource("b", "2024-01-01T00:00:00Z"), resource("z", None), naive)
    assert effective.server == "z.corp"


def test_inherited_private_without_secret_is_a_problem(defaults: DefaultsConfig, entry: EntryFactory) -> None:
    # The CRD refuses Private without secretName in one resource, but not every path is checked by it
    # (entries built by the service, defaults): resolution reports it where it is used.
    effective = resolve(
        defaults,
        PROJECT,
        entry("o", ORG, allow_overrides=True, type="Private"),
        entry("p", PROJECT, server="p.corp"),
    )
    assert effective.private
    assert effective.secret_name is None
    assert len(effective.problems) == 1
    assert (
        "registry.type Private (from ChaosImageRegistry/o) has no registry.secretName"
        in effective.problems[0]
    )
    fixed = resolve(
        defaults,
        PROJECT,
        entry("o", ORG, allow_overrides=True, type="Private"),
        entry("p", PROJECT, secret_name="pull"),
    )
    assert fixed.problems == ()


def test_examples_resolution(examples_config: Any) -> None:
    compiled = examples_config.compile()
    payments = compiled.effective(Scope.parse("acme/retail/payments/prod-ddcr"))
    assert payments.server == "registry.retail.acme.corp"  # prod's own server is blocked
    assert payments.custom_enabled is True
    assert [b.resource for b in payments.blocked] == ["acme-retail-payments-prod"]
    assert payments.blocked[0].blocker == "acme-retail-payments"
    platform = compiled.effective(Scope.parse("acme/platform"))
    assert (platform.server, platform.registry_account, platform.type) == (
        "us-docker.pkg.dev/acme-prod/chaos-public",
        "litmuschaos",
        "Public",
    )
    assert platform.provenance["registry.type"] == "ChaosImageRegistry/acme"


@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=4),  # the scope's identifiers
            st.booleans(),  # allowOverrides
            st.integers(1, 3),  # the day it was created: equal days conflict by name
        ),
        max_size=25,
    )
)
def test_the_counts_agree_with_blocked_and_conflict(specs: list[tuple[list[str], bool, int]]) -> None:
    entries = [
        make_entry(f"r{n}", "/".join(parts), allow_overrides=allow, created=at(day))
        for n, (parts, allow, day) in enumerate(specs)
    ]
    index = RegistryIndex(entries)
    assert index.blocked_count() == sum(1 for e in index.entries() if index.blocked(e) is not None)
    assert index.conflict_count() == sum(1 for e in index.entries() if index.conflict(e) is not None)

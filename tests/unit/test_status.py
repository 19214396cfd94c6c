"""Tests for webhook.core.status: the desired status of every ChaosImageRegistry and the pull-secret
copies (docs/contract.md#the-chaosimageregistry-resource, #pull-secret-copies), table by table.
Pure: no cluster, a fixed clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.conftest import make_entry
from webhook.core.models import LEVELS, DefaultsConfig, load_defaults
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig
from webhook.core.status import (
    CopyPlan,
    SecretCopy,
    SecretSources,
    attention_needed,
    desired_copies,
    desired_status,
    desired_statuses,
    format_time,
    status_patch,
)
from webhook.service.writer.copies import data_hash, source_label_value
from webhook.service.writer.record import copies_configmap_name

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = "2024-04-01T08:00:00Z"
WEBHOOK_NS = "chaos-system"
ACCOUNT, ORG, PROJECT, INFRA = "acme", "acme/retail", "acme/retail/payments", "acme/retail/payments/prod"


@dataclass(frozen=True)
class Record:
    name: str
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=UTC)


def config(*entries: RegistryEntry, defaults: DefaultsConfig | None = None) -> CompiledConfig:
    return CompiledConfig(defaults or load_defaults(), entries)


def sources(*existing: tuple[str, str], allowed: tuple[str, ...] = ("shared-secrets",)) -> SecretSources:
    return SecretSources.of(WEBHOOK_NS, allowed, existing)


def status_of(
    compiled: CompiledConfig, name: str, src: SecretSources | None = None, **record: Any
) -> dict[str, Any]:
    return desired_status(compiled, Record(name, **record), src or sources(), NOW)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# Level, scope and the effective registry --------------------------------------------------------

FOUR_LEVELS = (
    make_entry("acct", ACCOUNT, allow_overrides=True, server="mirror.acme.corp", type="Public"),
    make_entry("org", ORG, allow_overrides=True, server="org.acme.corp"),
    make_entry("proj", PROJECT, allow_overrides=True, type="Private", secret_name="pull"),
    make_entry("infra", INFRA, server="infra.acme.corp:5000/cache"),
)


@pytest.mark.parametrize(
    ("name", "level", "scope", "server", "type_"),
    [
        ("acct", "Account", "acme", "mirror.acme.corp", "Public"),
        ("org", "Organization", "acme/retail", "org.acme.corp", "Public"),
        ("proj", "Project", "acme/retail/payments", "org.acme.corp", "Private"),
        ("infra", "Infrastructure", "acme/retail/payments/prod", "infra.acme.corp:5000/cache", "Private"),
    ],
)
def test_level_scope_and_effective_registry_at_the_resource_scope(
    name: str, level: str, scope: str, server: str, type_: str
) -> None:
    status = status_of(config(*FOUR_LEVELS), name, generation=3)
    assert status["observedGeneration"] == 3
    assert (status["level"], status["scope"], status["effectiveServer"], status["effectiveType"]) == (
        level,
        scope,
        server,
        type_,
    )
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}
    assert [c["type"] for c in status["conditions"]] == [
        "Effective",
        "Blocked",
        "Conflicting",
        "SecretMissing",
    ]


# Conditions -------------------------------------------------------------------------------------

CONDITION_CASES = [
    (
        "lone account resource contributes",
        [make_entry("a", ACCOUNT, server="m.acme.corp")],
        "a",
        (),
        {
            "Effective": ("True", "Applied"),
            "Blocked": ("False", "NotBlocked"),
            "Conflicting": ("False", "NoConflict"),
            "SecretMissing": ("False", "NotPrivate"),
        },
    ),
    (
        "locked by the account (allowOverrides false)",
        [make_entry("a", ACCOUNT), make_entry("o", ORG)],
        "o",
        (),
        {
            "Effective": ("False", "Blocked"),
            "Blocked": ("True", "HigherScopeLocked"),
            "Conflicting": ("False", "NoConflict"),
            "SecretMissing": ("False", "NotPrivate"),
        },
    ),
    (
        "the locking resource itself is effective",
        [make_entry("a", ACCOUNT), make_entry("o", ORG)],
        "a",
        (),
        {"Effective": ("True", "Applied"), "Blocked": ("False", "NotBlocked")},
    ),
    (
        "account allows overrides: org contributes",
        [make_entry("a", ACCOUNT, allow_overrides=True), make_entry("o", ORG)],
        "o",
        (),
        {"Effective": ("True", "Applied"), "Blocked": ("False", "NotBlocked")},
    ),
    (
        "infrastructure blocked by the org two levels up",
        [
            make_entry("a", ACCOUNT, allow_overrides=True),
            make_entry("o", ORG),
            make_entry("i", INFRA),
        ],
        "i",
        (),
        {"Effective": ("False", "Blocked"), "Blocked": ("True", "HigherScopeLocked")},
    ),
    (
        "same scope, newer loses",
        [make_entry("old", ORG, created=day(1)), make_entry("new", ORG, created=day(2))],
        "new",
        (),
        {
            "Effective": ("False", "Conflicting"),
            "Blocked": ("False", "NotBlocked"),
            "Conflicting": ("True", "OlderResourceWins"),
        },
    ),
    (
        "same scope, older wins",
        [make_entry("old", ORG, created=day(1)), make_entry("new", ORG, created=day(2))],
        "old",
        (),
        {"Effective": ("True", "Applied"), "Conflicting": ("False", "NoConflict")},
    ),
    (
        "same scope and age: tie by name, b loses",
        [make_entry("b", ORG), make_entry("a", ORG)],
        "b",
        (),
        {"Effective": ("False", "Conflicting"), "Conflicting": ("True", "OlderResourceWins")},
    ),
    (
        "blocked and conflicting: Effective says Blocked",
        [
            make_entry("a", ACCOUNT),
            make_entry("o1", ORG, created=day(1)),
            make_entry("o2", ORG, created=day(2)),
        ],
        "o2",
        (),
        {
            "Effective": ("False", "Blocked"),
            "Blocked": ("True", "HigherScopeLocked"),
            "Conflicting": ("True", "OlderResourceWins"),
        },
    ),
    (
        "private, source secret exists in the webhook namespace",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull")],
        "a",
        ((WEBHOOK_NS, "pull"),),
        {"Effective": ("True", "Applied"), "SecretMissing": ("False", "SecretFound")},
    ),
    (
        "private, source secret missing",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull")],
        "a",
        (("other", "pull"), (WEBHOOK_NS, "other")),
        {"Effective": ("True", "Applied"), "SecretMissing": ("True", "SecretNotFound")},
    ),
    (
        "private, source in an allowed extra namespace",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace="shared-secrets")],
        "a",
        (("shared-secrets", "pull"),),
        {"SecretMissing": ("False", "SecretFound")},
    ),
    (
        "private, source namespace not allowed",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace="kube-public")],
        "a",
        (("kube-public", "pull"),),
        {"SecretMissing": ("True", "SecretNamespaceNotAllowed")},
    ),
    (
        "project inherits Private and the secret from the account",
        [
            make_entry("a", ACCOUNT, allow_overrides=True, type="Private", secret_name="pull"),
            make_entry("p", PROJECT, server="p.acme.corp"),
        ],
        "p",
        (),
        {"Effective": ("True", "Applied"), "SecretMissing": ("True", "SecretNotFound")},
    ),
    (
        "project turns Public under a Private account",
        [
            make_entry("a", ACCOUNT, allow_overrides=True, type="Private", secret_name="pull"),
            make_entry("p", PROJECT, type="Public"),
        ],
        "p",
        (),
        {"SecretMissing": ("False", "NotPrivate")},
    ),
    (
        "Private with no secretName at its scope or above",
        [make_entry("a", ACCOUNT, allow_overrides=True), make_entry("p", PROJECT, type="Private")],
        "p",
        (),
        {"SecretMissing": ("True", "NoSecretName")},
    ),
    (
        "blocked below a Private account reports the account's missing secret",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull"), make_entry("o", ORG, type="Public")],
        "o",
        (),
        {"Effective": ("False", "Blocked"), "SecretMissing": ("True", "SecretNotFound")},
    ),
]


@pytest.mark.parametrize(
    ("entries", "name", "existing", "expected"),
    [case[1:] for case in CONDITION_CASES],
    ids=[case[0] for case in CONDITION_CASES],
)
def test_conditions(
    entries: list[RegistryEntry],
    name: str,
    existing: tuple[tuple[str, str], ...],
    expected: dict[str, tuple[str, str]],
) -> None:
    actual = conditions(status_of(config(*entries), name, sources(*existing)))
    assert {k: actual[k] for k in expected} == expected


def test_blocked_message_names_the_blocker_and_its_scope_like_hce() -> None:
    compiled = config(
        make_entry("acme-root", ACCOUNT, allow_overrides=True),
        make_entry("retail", ORG),
        make_entry("payments", PROJECT),
    )
    status = status_of(compiled, "payments")
    assert condition(status, "Blocked")["message"] == (
        "a higher scope is blocking this configuration: ChaosImageRegistry retail at organization "
        "acme/retail has allowOverrides false; please enable override from organization acme/retail"
    )
    assert condition(status, "Effective")["message"].startswith("not applied: a higher scope is blocking")


def test_conflicting_message_names_the_winner() -> None:
    compiled = config(make_entry("first", ORG, created=day(1)), make_entry("second", ORG, created=day(2)))
    message = condition(status_of(compiled, "second"), "Conflicting")["message"]
    assert "ChaosImageRegistry first has the same scope acme/retail" in message
    assert "oldest wins" in message


@pytest.mark.parametrize(
    ("secret_namespace", "existing", "message"),
    [
        (
            None,
            (),
            f"Secret {WEBHOOK_NS}/pull does not exist (registry.secretName from ChaosImageRegistry/a)",
        ),
        (
            "vault",
            (("vault", "pull"),),
            "secretNamespace vault is not allowed: add it to secretSourceNamespaces",
        ),
    ],
)
def test_secret_missing_messages(
    secret_namespace: str | None, existing: tuple[tuple[str, str], ...], message: str
) -> None:
    compiled = config(
        make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace=secret_namespace)
    )
    assert message in condition(status_of(compiled, "a", sources(*existing)), "SecretMissing")["message"]


def test_invalid_resource_reports_its_problems() -> None:
    problems = (
        "spec.registry.server: 'bad server' is not valid",
        "spec.scope.project: requires organization",
    )
    status = status_of(config(), "broken", generation=4, problems=problems)
    assert status == {
        "observedGeneration": 4,
        "conditions": [
            {
                "type": "Effective",
                "status": "False",
                "reason": "Invalid",
                "message": "the resource is invalid and ignored: " + "; ".join(problems),
                "observedGeneration": 4,
                "lastTransitionTime": format_time(NOW),
            }
        ],
    }


def test_invalid_even_if_a_stale_entry_of_that_name_is_indexed() -> None:
    status = status_of(config(make_entry("x", ACCOUNT)), "x", problems=("spec: broken",))
    assert conditions(status) == {"Effective": ("False", "Invalid")}


# lastTransitionTime ------------------------------------------------------------------------------


def old_condition(type_: str, status: str, reason: str = "Whatever") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "old",
        "lastTransitionTime": EARLIER,
        "observedGeneration": 1,
    }


@pytest.mark.parametrize(
    ("old_conditions", "expected_times"),
    [
        ([], {"Effective": NOW, "Blocked": NOW}),
        (
            [old_condition("Effective", "True"), old_condition("Blocked", "False")],
            {"Effective": EARLIER, "Blocked": EARLIER},
        ),
        # Same status, different reason or message: the transition time stays.
        (
            [old_condition("Effective", "True", "Other"), old_condition("Blocked", "False", "X")],
            {"Effective": EARLIER, "Blocked": EARLIER},
        ),
        (
            [old_condition("Effective", "False"), old_condition("Blocked", "True")],
            {"Effective": NOW, "Blocked": NOW},
        ),
        (
            [old_condition("Effective", "True"), old_condition("Blocked", "True")],
            {"Effective": EARLIER, "Blocked": NOW},
        ),
    ],
)
def test_last_transition_time_is_kept_while_the_status_holds(
    old_conditions: list[dict[str, Any]], expected_times: dict[str, Any]
) -> None:
    status = status_of(config(make_entry("a", ACCOUNT)), "a", status={"conditions": old_conditions})
    times = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
    for type_, expected in expected_times.items():
        assert times[type_] == (format_time(expected) if isinstance(expected, datetime) else expected)


def test_desired_status_is_stable_once_written() -> None:
    compiled = config(make_entry("a", ACCOUNT), make_entry("o", ORG))
    first = status_of(compiled, "o", generation=2)
    later = desired_status(compiled, Record("o", 2, first), sources(), datetime(2030, 1, 1, tzinfo=UTC))
    assert later == first
    assert status_patch(first, later) is None


def test_desired_statuses_covers_every_record() -> None:
    compiled = config(make_entry("a", ACCOUNT), make_entry("o", ORG))
    records = [Record("a"), Record("o"), Record("bad", problems=("spec: bad",))]
    statuses = desired_statuses(compiled, records, sources(), NOW)
    assert {name: conditions(s)["Effective"] for name, s in statuses.items()} == {
        "a": ("True", "Applied"),
        "o": ("False", "Blocked"),
        "bad": ("False", "Invalid"),
    }


# Patches and Events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "desired", "patch"),
    [
        ({}, {"level": "Account"}, {"level": "Account"}),
        ({"level": "Account"}, {"level": "Account"}, None),
        (
            {"level": "Account", "scope": "acme"},
            {"observedGeneration": 2},
            {"level": None, "scope": None, "observedGeneration": 2},
        ),
        # Fields the writer does not own are never touched.
        ({"level": "Account", "somethingElse": 1}, {"level": "Account"}, None),
        ({"conditions": [{"type": "Effective"}]}, {"conditions": []}, {"conditions": []}),
    ],
)
def test_status_patch(current: dict[str, Any], desired: dict[str, Any], patch: dict[str, Any] | None) -> None:
    assert status_patch(current, desired) == patch


def cond(type_: str, status: str, reason: str = "R", message: str = "m") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], [cond("Blocked", "True", message="locked")], [("Blocked", "locked")]),
        ([cond("Blocked", "True")], [cond("Blocked", "True")], []),
        (
            [cond("Blocked", "False")],
            [cond("Blocked", "True", message="b"), cond("Conflicting", "True", message="c")],
            [("Blocked", "b"), ("Conflicting", "c")],
        ),
        ([], [cond("SecretMissing", "True", message="s")], [("SecretMissing", "s")]),
        ([cond("SecretMissing", "True")], [cond("SecretMissing", "False")], []),
        ([], [cond("Effective", "False", "Invalid", "bad")], [("Invalid", "bad")]),
        ([cond("Effective", "False", "Invalid")], [cond("Effective", "False", "Invalid", "worse")], []),
        ([], [cond("Effective", "True", "Applied")], []),
        ([], [cond("Effective", "False", "Blocked")], []),
    ],
)
def test_attention_needed_when_a_condition_turns_true(
    old: list[dict[str, Any]], new: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    assert attention_needed({"conditions": old}, {"conditions": new}) == expected


# Secret copies -----------------------------------------------------------------------------------


def ns(*scope: str, **extra: str) -> dict[str, str]:
    keys = LEVELS
    labels = {f"chaosregistry.io/{k}": v for k, v in zip(keys, scope, strict=False)}
    labels.update({k.replace("_", "/"): v for k, v in extra.items()})
    return labels


PRIVATE_ACCOUNT = make_entry("a", ACCOUNT, allow_overrides=True, type="Private", secret_name="pull")
OPTED_OUT = {"chaosregistry.io/account": "acme", "chaosregistry.io/inject": "false"}

COPY_CASES = [
    (
        "bound namespace of a Private scope",
        [PRIVATE_ACCOUNT],
        {"team": ns("acme")},
        {},
        [("team", "pull", WEBHOOK_NS, "pull")],
    ),
    (
        "deeper namespaces inherit",
        [PRIVATE_ACCOUNT],
        {"t1": ns("acme", "retail"), "t2": ns("acme", "retail", "payments", "prod")},
        {},
        [("t1", "pull", WEBHOOK_NS, "pull"), ("t2", "pull", WEBHOOK_NS, "pull")],
    ),
    ("other account's namespaces get nothing", [PRIVATE_ACCOUNT], {"team": ns("globex")}, {}, []),
    ("opted-out namespace", [PRIVATE_ACCOUNT], {"team": OPTED_OUT}, {}, []),
    ("Public scope", [make_entry("a", ACCOUNT)], {"team": ns("acme")}, {}, []),
    (
        "project turns Public",
        [PRIVATE_ACCOUNT, make_entry("p", PROJECT, type="Public")],
        {"pub": ns("acme", "retail", "payments"), "priv": ns("acme", "retail")},
        {},
        [("priv", "pull", WEBHOOK_NS, "pull")],
    ),
    (
        "org overrides the secret",
        [PRIVATE_ACCOUNT, make_entry("o", ORG, secret_name="retail-pull")],
        {"team": ns("acme", "retail")},
        {},
        [("team", "retail-pull", WEBHOOK_NS, "retail-pull")],
    ),
    (
        "source in an allowed namespace",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace="shared-secrets")],
        {"team": ns("acme")},
        {},
        [("team", "pull", "shared-secrets", "pull")],
    ),
    (
        "the webhook namespace is never a target",
        [PRIVATE_ACCOUNT],
        {WEBHOOK_NS: ns("acme"), "kube-system": ns("acme")},
        {},
        [],
    ),
    (
        "the source namespace itself is not a target",
        [make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace="shared-secrets")],
        {"shared-secrets": ns("acme")},
        {"excluded": ()},
        [],
    ),
    (
        "no account label: not injected, no copy",
        [make_entry("d", "default", type="Private", secret_name="pull")],
        {"plain": {}},
        {},
        [],
    ),
    (
        "no account label with all namespaces selected: default account",
        [make_entry("d", "default", type="Private", secret_name="pull")],
        {"plain": {}},
        {"bound_only": False},
        [("plain", "pull", WEBHOOK_NS, "pull")],
    ),
    (
        "broken chain uses the valid prefix",
        [PRIVATE_ACCOUNT],
        {"team": ns("acme", **{"chaosregistry.io_project": "payments"})},
        {},
        [("team", "pull", WEBHOOK_NS, "pull")],
    ),
]


@pytest.mark.parametrize(
    ("entries", "namespaces", "options", "expected"),
    [case[1:] for case in COPY_CASES],
    ids=[case[0] for case in COPY_CASES],
)
def test_desired_copies(
    entries: list[RegistryEntry],
    namespaces: dict[str, dict[str, str]],
    options: dict[str, Any],
    expected: list[tuple[str, str, str, str]],
) -> None:
    existing = sources(
        (WEBHOOK_NS, "pull"),
        (WEBHOOK_NS, "retail-pull"),
        ("shared-secrets", "pull"),
        allowed=("shared-secrets",),
    )
    kwargs: dict[str, Any] = {"excluded": {"kube-system", WEBHOOK_NS}, **options}
    plan = desired_copies(config(*entries), namespaces, existing, **kwargs)
    assert plan.copies == tuple(SecretCopy(*copy) for copy in expected)
    assert plan.skipped == ()


def test_private_defaults_copy_only_where_a_registry_covers_the_scope() -> None:
    private_defaults = load_defaults({"registry": {"type": "Private", "secretName": "pull"}})
    namespaces = {"covered": ns("acme"), "uncovered": ns("globex")}
    existing = sources((WEBHOOK_NS, "pull"))
    plan = desired_copies(
        config(make_entry("a", ACCOUNT, server="m.acme.corp"), defaults=private_defaults),
        namespaces,
        existing,
    )
    assert [c.namespace for c in plan.copies] == ["covered"]
    everywhere = load_defaults(
        {"registry": {"type": "Private", "secretName": "pull"}, "rewriteUnconfiguredScopes": True}
    )
    plan = desired_copies(config(defaults=everywhere), namespaces, existing)
    assert [c.namespace for c in plan.copies] == ["covered", "uncovered"]


@pytest.mark.parametrize(
    ("entry", "existing", "reason"),
    [
        (PRIVATE_ACCOUNT, (), f"Secret {WEBHOOK_NS}/pull does not exist"),
        (
            make_entry("a", ACCOUNT, type="Private", secret_name="pull", secret_namespace="vault"),
            (("vault", "pull"),),
            "secretNamespace vault is not allowed: add it to secretSourceNamespaces",
        ),
    ],
)
def test_copies_without_a_usable_source_are_skipped_with_the_reason(
    entry: RegistryEntry, existing: tuple[tuple[str, str], ...], reason: str
) -> None:
    plan = desired_copies(config(entry), {"team": ns("acme")}, sources(*existing))
    assert plan.copies == ()
    assert len(plan.skipped) == 1
    namespace, message = plan.skipped[0]
    assert namespace == "team"
    assert reason in message


def test_copy_plan_defaults_and_secret_copy_keys() -> None:
    copy = SecretCopy("team", "pull", WEBHOOK_NS, "pull")
    assert (copy.target, copy.source) == (("team", "pull"), (WEBHOOK_NS, "pull"))
    assert CopyPlan(()).skipped == ()


# Writer helpers that are pure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "configmap"),
    [("chaos-registry-webhook-leader", "chaos-registry-webhook-copies"), ("my-lease", "my-lease-copies")],
)
def test_copies_configmap_follows_the_lease(lease: str, configmap: str) -> None:
    assert copies_configmap_name(lease) == configmap


def test_source_label_value_fits_a_label() -> None:
    assert source_label_value("chaos-system", "acme-pull") == "chaos-system.acme-pull"
    long = source_label_value("chaos-system", "x" * 200)
    assert len(long) <= 63
    assert long != source_label_value("chaos-system", "x" * 199)
    assert long[0].isalnum() and long[-1].isalnum()


def test_data_hash_changes_with_data_and_type_only() -> None:
    base = data_hash("Opaque", {"a": "MQ==", "b": "Mg=="})
    assert base == data_hash("Opaque", {"b": "Mg==", "a": "MQ=="})
    assert base != data_hash("Opaque", {"a": "MQ==", "b": "Mw=="})
    assert base != data_hash("kubernetes.io/dockerconfigjson", {"a": "MQ==", "b": "Mg=="})

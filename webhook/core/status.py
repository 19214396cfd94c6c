"""What the write side should make true: the status of every ChaosImageRegistry and the pull-secret
copies (docs/contract.md#the-chaosimageregistry-resource, #pull-secret-copies). Pure: no kopf, no
kubernetes client, no clock (callers pass `now`).

The service's writer compares these desired states with what the API holds and writes the
difference; keeping the decisions here makes them table-testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from webhook.core.availability import (
    IMAGES_AVAILABLE,
    IMAGES_UNAVAILABLE_EVENT,
    UNAVAILABLE_FIELD,
    Availability,
    images_condition,
    unavailable_status,
)
from webhook.core.classifier import opted_out, scope_from_labels
from webhook.core.models import SCOPE_LABELS
from webhook.core.resolver import Effective, RegistryEntry
from webhook.core.snapshot import CompiledConfig

EFFECTIVE, BLOCKED, CONFLICTING, SECRET_MISSING = "Effective", "Blocked", "Conflicting", "SecretMissing"
INVALID = "Invalid"
# Conditions (and the Invalid reason of Effective) that need a person: the writer posts an Event when
# one turns True. Their names double as the Events' reasons.
ATTENTION_CONDITIONS = (BLOCKED, CONFLICTING, SECRET_MISSING)
# The status fields the writer owns; anything else under `status` is left alone.
OWNED_STATUS_FIELDS = (
    "observedGeneration",
    "level",
    "scope",
    "effectiveServer",
    "effectiveType",
    "conditions",
    UNAVAILABLE_FIELD,
)
SECRET_SOURCE_OPTION = "secretSourceNamespaces"


class RegistryRecord(Protocol):
    """What the status needs of a watched ChaosImageRegistry (service.state.RegistryObject fits)."""

    @property
    def name(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def status(self) -> Mapping[str, Any]: ...
    @property
    def problems(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class SecretSources:
    """Where pull secrets may be copied from, and which of those Secrets exist.

    `allowed` is the webhook's namespace plus the Helm value secretSourceNamespaces; `existing` holds
    (namespace, name) of the Secrets seen in those namespaces (names only, never contents).
    """

    webhook_namespace: str
    allowed: frozenset[str]
    existing: frozenset[tuple[str, str]]

    @classmethod
    def of(
        cls, webhook_namespace: str, allowed: Iterable[str], existing: Iterable[tuple[str, str]] = ()
    ) -> SecretSources:
        return cls(webhook_namespace, frozenset({webhook_namespace, *allowed}), frozenset(existing))

    def source_of(self, effective: Effective) -> tuple[str, str] | None:
        """(namespace, name) of the source Secret of a Private registry; None without a secretName."""
        if not effective.private or not effective.secret_name:
            return None
        return (effective.secret_namespace or self.webhook_namespace, effective.secret_name)

    def problem(self, effective: Effective) -> tuple[str, str] | None:
        """(reason, message) when a Private registry's pull secret cannot be had; None when it can."""
        if not effective.private:
            return None
        source = self.source_of(effective)
        if source is None:
            message = (
                effective.problems[0] if effective.problems else "registry.type Private has no secretName"
            )
            return "NoSecretName", message
        namespace, name = source
        if namespace not in self.allowed:
            return (
                "SecretNamespaceNotAllowed",
                f"secretNamespace {namespace} is not allowed: add it to {SECRET_SOURCE_OPTION}",
            )
        if source not in self.existing:
            origin = effective.provenance.get("registry.secretName", "")
            return (
                "SecretNotFound",
                f"Secret {namespace}/{name} does not exist (registry.secretName from {origin}): create it, "
                f"pods of scope {effective.scope} need it to pull from the Private registry",
            )
        return None


# Status -----------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, true: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if true else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _conditions_of(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = status.get("conditions")
    if not isinstance(conditions, Sequence) or isinstance(conditions, str):
        return {}
    return {c["type"]: c for c in conditions if isinstance(c, Mapping) and isinstance(c.get("type"), str)}


def with_transition_times(
    conditions: Iterable[dict[str, Any]], old_status: Mapping[str, Any], now: datetime
) -> list[dict[str, Any]]:
    """Set lastTransitionTime: kept from the old condition when its status did not change, else now."""
    old = _conditions_of(old_status)
    stamped = []
    for condition in conditions:
        previous = old.get(condition["type"])
        if (
            previous is not None
            and previous.get("status") == condition["status"]
            and isinstance(previous.get("lastTransitionTime"), str)
        ):
            moment = previous["lastTransitionTime"]
        else:
            moment = format_time(now)
        stamped.append({**condition, "lastTransitionTime": moment})
    return stamped


def registry_conditions(
    config: CompiledConfig, entry: RegistryEntry, sources: SecretSources, generation: int
) -> list[dict[str, Any]]:
    """Effective, Blocked, Conflicting and SecretMissing of a valid resource (without times)."""
    index = config.index
    blocked = index.blocked(entry)
    conflict = index.conflict(entry)
    effective = config.effective(entry.scope)

    if blocked is not None:
        state = _condition(EFFECTIVE, False, BLOCKED, f"not applied: {blocked.message()}", generation)
    elif conflict is not None:
        state = _condition(EFFECTIVE, False, CONFLICTING, f"not applied: {conflict.message()}", generation)
    else:
        state = _condition(
            EFFECTIVE, True, "Applied", f"applies to scope {entry.scope} and the scopes below it", generation
        )
    conditions = [state]

    if blocked is not None:
        conditions.append(_condition(BLOCKED, True, "HigherScopeLocked", blocked.message(), generation))
    else:
        conditions.append(
            _condition(BLOCKED, False, "NotBlocked", "no higher scope locks this configuration", generation)
        )

    if conflict is not None:
        conditions.append(_condition(CONFLICTING, True, "OlderResourceWins", conflict.message(), generation))
    else:
        conditions.append(
            _condition(
                CONFLICTING, False, "NoConflict", f"the only winner at scope {entry.scope}", generation
            )
        )

    problem = sources.problem(effective)
    if problem is not None:
        conditions.append(_condition(SECRET_MISSING, True, problem[0], problem[1], generation))
    elif effective.private:
        namespace, name = sources.source_of(effective) or ("", "")
        conditions.append(
            _condition(SECRET_MISSING, False, "SecretFound", f"Secret {namespace}/{name} exists", generation)
        )
    else:
        conditions.append(
            _condition(
                SECRET_MISSING,
                False,
                "NotPrivate",
                "the registry in effect is Public: no pull secret",
                generation,
            )
        )
    return conditions


def desired_status(
    config: CompiledConfig,
    record: RegistryRecord,
    sources: SecretSources,
    now: datetime,
    availability: Availability | None = None,
) -> dict[str, Any]:
    """The owned part of `record`'s status (OWNED_STATUS_FIELDS), given its current status.

    A record with problems, or missing from the index, is reported Invalid.
    """
    entry = None
    if not record.problems:
        entry = config.index.by_name().get(record.name)
    generation = record.generation
    if entry is None:
        problems = "; ".join(record.problems) or "the resource could not be read"
        conditions = [
            _condition(
                EFFECTIVE, False, INVALID, f"the resource is invalid and ignored: {problems}", generation
            )
        ]
        return {
            "observedGeneration": generation,
            "conditions": with_transition_times(conditions, record.status, now),
        }
    effective = config.effective(entry.scope)
    conditions = registry_conditions(config, entry, sources, generation)
    # ImagesAvailable only once the (opt-in) registry check has looked at this scope.
    checked = availability.scopes.get(str(entry.scope)) if availability is not None else None
    if checked is not None:
        conditions.append(images_condition(checked, generation))
    status = {
        "observedGeneration": generation,
        "level": entry.scope.level,
        "scope": str(entry.scope),
        "effectiveServer": effective.server,
        "effectiveType": effective.type,
        "conditions": with_transition_times(conditions, record.status, now),
    }
    if checked is not None and not checked.ok:
        status[UNAVAILABLE_FIELD] = unavailable_status(checked)
    return status


def desired_statuses(
    config: CompiledConfig,
    records: Iterable[RegistryRecord],
    sources: SecretSources,
    now: datetime,
    availability: Availability | None = None,
) -> dict[str, dict[str, Any]]:
    """Name -> desired owned status, for every record."""
    return {record.name: desired_status(config, record, sources, now, availability) for record in records}


def owned(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: status[key] for key in OWNED_STATUS_FIELDS if key in status}


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch of `status` that turns `current` into `desired` (owned fields only).

    None when nothing differs. Owned fields that `desired` lacks are removed (null); conditions are
    a list, so a merge patch replaces it whole.
    """
    patch: dict[str, Any] = {}
    for key in OWNED_STATUS_FIELDS:
        if key in desired:
            if current.get(key) != desired[key]:
                patch[key] = desired[key]
        elif key in current:
            patch[key] = None
    return patch or None


def attention_needed(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) for each condition needing a person that turns True from `current` to `desired`.

    Invalid is Effective=False with reason Invalid. Messages come from the conditions, which never
    carry Secret contents.
    """
    old, new = _conditions_of(current), _conditions_of(desired)
    needed = []
    for type_ in ATTENTION_CONDITIONS:
        condition = new.get(type_)
        if condition and condition.get("status") == "True" and old.get(type_, {}).get("status") != "True":
            needed.append((type_, str(condition.get("message", ""))))
    images = new.get(IMAGES_AVAILABLE)
    if images and images.get("status") == "False" and old.get(IMAGES_AVAILABLE, {}).get("status") != "False":
        needed.append((IMAGES_UNAVAILABLE_EVENT, str(images.get("message", ""))))
    state = new.get(EFFECTIVE)
    if state and state.get("reason") == INVALID and old.get(EFFECTIVE, {}).get("reason") != INVALID:
        needed.append((INVALID, str(state.get("message", ""))))
    return needed


# Secret copies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class SecretCopy:
    """Copy Secret source_namespace/source_name into namespace/name."""

    namespace: str
    name: str
    source_namespace: str
    source_name: str

    @property
    def target(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def source(self) -> tuple[str, str]:
        return (self.source_namespace, self.source_name)


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """The copies that should exist, and the bound namespaces that get none, with the reason."""

    copies: tuple[SecretCopy, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def desired_copies(
    config: CompiledConfig,
    namespaces: Mapping[str, Mapping[str, str]],
    sources: SecretSources,
    *,
    bound_only: bool = True,
    excluded: Collection[str] = (),
) -> CopyPlan:
    """Which namespaces need a copy of which pull secret (docs/contract.md#pull-secret-copies).

    A namespace gets a copy when the webhook could inject into it (not opted out, not in `excluded`,
    and with an account label when `bound_only`, mirroring the webhook's namespaceSelector), its
    effective registry is Private with a secretName, a ChaosImageRegistry covers its scope (or
    rewriteUnconfiguredScopes is on), and the source is allowed and exists. A missing source means
    no copy: copies follow the source, so deleting the source revokes them.
    """
    defaults = config.defaults
    copies: list[SecretCopy] = []
    skipped: list[tuple[str, str]] = []
    for namespace in sorted(namespaces):
        labels = namespaces[namespace]
        if namespace in excluded or opted_out(labels):
            continue
        if bound_only and not labels.get(SCOPE_LABELS[0]):
            continue
        scope = scope_from_labels(labels, defaults.default_account).scope
        effective = config.effective(scope)
        if not effective.private:
            continue
        if not effective.layers and not defaults.rewrite_unconfigured_scopes:
            continue
        problem = sources.problem(effective)
        source = sources.source_of(effective)
        if problem is not None or source is None:
            skipped.append((namespace, problem[1] if problem else "no secretName"))
            continue
        if source == (namespace, source[1]):
            continue  # the source itself: nothing to copy
        copies.append(SecretCopy(namespace, source[1], source[0], source[1]))
    return CopyPlan(tuple(copies), tuple(skipped))

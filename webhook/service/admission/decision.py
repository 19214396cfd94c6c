"""The admission decision: one decoded request and the current snapshot in, one Decision out.

The only place that says which operations are handled, what an unsynced cache or an unknown
namespace means, and how the failure policy is applied. Pure: no I/O, no clock, no metrics; the
transports (review.py for the direct engine, kopf_engine.py for kopf's) only translate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.mutator import JsonPatch
from webhook.core.snapshot import Mutation, Snapshot

logger = logging.getLogger("webhook.admission")

WARNING_PREFIX = "chaos-registry: "
# The apiserver truncates longer warnings; keep ours readable instead.
MAX_WARNING_LENGTH = 250
FAIL, IGNORE = "Fail", "Ignore"

# Outcomes, as counted by the chaos_registry_admission_requests metric.
MUTATED, UNCHANGED, SKIPPED, IGNORED = "mutated", "unchanged", "skipped", "ignored"
NOT_READY, NAMESPACE_UNKNOWN, ERROR, BAD_REQUEST = "not_ready", "namespace_unknown", "error", "bad_request"


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of an admission request the decision reads, whichever transport decoded it."""

    uid: str
    namespace: str
    operation: str
    sub_resource: str
    pod: Mapping[str, Any]
    old_pod: Mapping[str, Any] | None
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request: allowed or refused (`refusal`, answered with code 500), the JSON
    Patch and warnings to send, and the outcome the metrics count."""

    outcome: str
    allowed: bool = True
    patch: JsonPatch | None = None
    warnings: Sequence[str] = ()
    refusal: str | None = None
    mutation: Mutation | None = None


# Answers that do not depend on the request: shared, not built per request.
_IGNORED = Decision(IGNORED)


def decide(request: AdmissionRequest, snapshot: Snapshot | None, failure_policy: str) -> Decision:
    """What to answer `request` with, from `snapshot` (None: the caches are not synced yet).

    Pods are mutated on CREATE; an UPDATE of pods/ephemeralcontainers is mutated too (only the
    containers it adds change). Anything else is admitted untouched."""
    is_create = request.operation == "CREATE" and request.sub_resource == ""
    is_ephemeral = request.operation == "UPDATE" and request.sub_resource == "ephemeralcontainers"
    if not (is_create or is_ephemeral):
        return _IGNORED
    if snapshot is None:
        return unavailable(NOT_READY, "configuration caches are not synced yet", failure_policy)
    if request.namespace not in snapshot.namespaces:
        # The namespace selector matched, so the namespace exists; our watch has not seen it yet.
        # Never guess its scope: an unknown namespace would fall back to the default account.
        reason = f"namespace {request.namespace!r} is not in the webhook's cache yet"
        return unavailable(NAMESPACE_UNKNOWN, reason, failure_policy)
    mutation = snapshot.admit(request.pod, request.namespace, request.old_pod if is_ephemeral else None)
    if logger.isEnabledFor(logging.DEBUG):
        _log_decision(request, mutation)
    if not mutation.chaos:
        outcome = SKIPPED
    elif mutation.patch:
        outcome = MUTATED
    else:
        outcome = UNCHANGED
    return Decision(
        outcome,
        patch=mutation.patch or None,
        warnings=warning_texts(mutation.warnings) if mutation.warnings else (),
        mutation=mutation,
    )


def unavailable(outcome: str, reason: str, failure_policy: str) -> Decision:
    """The webhook cannot decide (`reason`): refused under failurePolicy Fail, so the apiserver's
    client retries; admitted unchanged with a warning under Ignore."""
    if failure_policy == IGNORE:
        warning = f"{WARNING_PREFIX}{reason}: pod admitted unchanged (failurePolicy Ignore)"
        return Decision(outcome, warnings=(warning,))
    return Decision(outcome, allowed=False, refusal=f"chaos-registry-webhook: {reason}; retry")


def warning_texts(warnings: Sequence[str]) -> list[str]:
    """The core's warnings as sent to the client: prefixed, and cut to a readable length."""
    result = []
    for warning in warnings:
        text = WARNING_PREFIX + warning
        if len(text) > MAX_WARNING_LENGTH:
            text = text[: MAX_WARNING_LENGTH - 3] + "..."
        result.append(text)
    return result


def _log_decision(request: AdmissionRequest, mutation: Mutation) -> None:
    metadata = request.pod.get("metadata")
    if not isinstance(metadata, Mapping):  # any JSON value: a bad pod must not fail the request
        metadata = {}
    logger.debug(
        "admission uid=%s namespace=%s pod=%s operation=%s chaos=%s reason=%s scope=%s rewrites=%d dryRun=%s",
        request.uid,
        request.namespace,
        metadata.get("name") or metadata.get("generateName"),
        request.operation,
        mutation.chaos,
        mutation.reason,
        mutation.scope,
        len(mutation.rewrites),
        request.dry_run,
    )

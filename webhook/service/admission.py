"""The admission hot path: an AdmissionReview in, an AdmissionReview out.

Reads the current Snapshot (one reference, swapped by the watches) and asks the core for the
patch: no API call, no config parsing, no copy of the pod. Malformed reviews are refused with an
`AdmissionRequestError` (HTTP 400); anything unexpected is answered per the failure policy.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.core.snapshot import Mutation, Snapshot
from webhook.service import metrics

logger = logging.getLogger("webhook.admission")

ADMISSION_API_VERSION = "admission.k8s.io/v1"
WARNING_PREFIX = "chaos-registry: "
# The apiserver truncates longer warnings; keep ours readable instead.
MAX_WARNING_LENGTH = 250


class AdmissionRequestError(ValueError):
    """The request is not a well-formed AdmissionReview: answered with HTTP 400 and this message."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    uid: str
    namespace: str
    operation: str
    sub_resource: str
    pod: Mapping[str, Any]
    old_pod: Mapping[str, Any] | None
    dry_run: bool
    api_version: str


def parse_review(body: bytes) -> AdmissionRequest:
    """Validate the parts of an AdmissionReview the webhook relies on; raise with a one-line reason."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise AdmissionRequestError(f"request body is not JSON: {error}") from None
    if not isinstance(review, dict):
        raise AdmissionRequestError("request body is not a JSON object")
    if review.get("kind") != "AdmissionReview":
        raise AdmissionRequestError(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    api_version = review.get("apiVersion")
    if api_version != ADMISSION_API_VERSION:
        raise AdmissionRequestError(f"apiVersion must be {ADMISSION_API_VERSION}, got {api_version!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise AdmissionRequestError("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise AdmissionRequestError("request.uid is missing")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise AdmissionRequestError(f"request {uid}: request.operation is missing")
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise AdmissionRequestError(f"request {uid}: request.object is missing")
    old_pod = request.get("oldObject")
    if old_pod is not None and not isinstance(old_pod, dict):
        raise AdmissionRequestError(f"request {uid}: request.oldObject is not an object")
    namespace = request.get("namespace")
    if not isinstance(namespace, str):
        metadata = pod.get("metadata")
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if not isinstance(namespace, str) or not namespace:
        raise AdmissionRequestError(f"request {uid}: request.namespace is missing")
    sub_resource = request.get("subResource") or ""
    return AdmissionRequest(
        uid=uid,
        namespace=namespace,
        operation=operation,
        sub_resource=sub_resource if isinstance(sub_resource, str) else "",
        pod=pod,
        old_pod=old_pod,
        dry_run=bool(request.get("dryRun")),
        api_version=api_version,
    )


def _response(uid: str, allowed: bool = True, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": allowed, **fields},
    }


def _warnings(mutation: Mutation) -> list[str]:
    result = []
    for warning in mutation.warnings:
        text = WARNING_PREFIX + warning
        if len(text) > MAX_WARNING_LENGTH:
            text = text[: MAX_WARNING_LENGTH - 3] + "..."
        result.append(text)
    return result


class AdmissionHandler:
    """Answers reviews from whatever snapshot `current_snapshot()` returns at that moment."""

    def __init__(
        self,
        current_snapshot: Callable[[], Snapshot | None],
        failure_policy: str = "Fail",
        wait_for_namespace: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._current = current_snapshot
        self.failure_policy = failure_policy
        self._wait_for_namespace = wait_for_namespace

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """HTTP status and body for one request. Never raises."""
        started = time.perf_counter()
        try:
            request = parse_review(body)
        except AdmissionRequestError as error:
            metrics.record_request("bad_request", time.perf_counter() - started)
            logger.warning("malformed admission request: %s", error)
            return 400, orjson.dumps({"error": str(error)})
        try:
            response, outcome = self._review(request)
            # A namespace created a moment ago: give the watch a moment to deliver it.
            if (
                outcome == "namespace_unknown"
                and self._wait_for_namespace is not None
                and await self._wait_for_namespace(request.namespace)
            ):
                response, outcome = self._review(request)
        except Exception:
            logger.exception("admission handler failed for request uid=%s", request.uid)
            metrics.record_request("error", time.perf_counter() - started)
            return 200, orjson.dumps(self._failure(request.uid, "internal error in the webhook"))
        metrics.record_request(outcome, time.perf_counter() - started)
        return 200, orjson.dumps(response)

    def _failure(self, uid: str, reason: str) -> dict[str, Any]:
        if self.failure_policy == "Ignore":
            return _response(
                uid, warnings=[f"{WARNING_PREFIX}{reason}: pod admitted unchanged (failurePolicy Ignore)"]
            )
        return _response(
            uid, allowed=False, status={"code": 500, "message": f"chaos-registry-webhook: {reason}; retry"}
        )

    def _review(self, request: AdmissionRequest) -> tuple[dict[str, Any], str]:
        is_create = request.operation == "CREATE" and request.sub_resource == ""
        is_ephemeral = request.operation == "UPDATE" and request.sub_resource == "ephemeralcontainers"
        if not (is_create or is_ephemeral):
            return _response(request.uid), "ignored"
        snapshot = self._current()
        if snapshot is None:
            return self._failure(request.uid, "configuration caches are not synced yet"), "not_ready"
        if request.namespace not in snapshot.namespaces:
            # The namespace selector matched, so the namespace exists; our watch has not seen it yet.
            return (
                self._failure(
                    request.uid, f"namespace {request.namespace!r} is not in the webhook's cache yet"
                ),
                "namespace_unknown",
            )
        mutation = snapshot.admit(request.pod, request.namespace, request.old_pod if is_ephemeral else None)
        fields: dict[str, Any] = {}
        if mutation.patch:
            fields["patchType"] = "JSONPatch"
            fields["patch"] = base64.b64encode(orjson.dumps(mutation.patch)).decode("ascii")
        if mutation.warnings:
            fields["warnings"] = _warnings(mutation)
        for rewrite in mutation.rewrites:
            metrics.record_rewrite(rewrite.component)
        if logger.isEnabledFor(logging.DEBUG):
            metadata = request.pod.get("metadata")
            if not isinstance(metadata, Mapping):  # any JSON value: a bad pod must not fail the request
                metadata = {}
            logger.debug(
                "admission uid=%s namespace=%s pod=%s operation=%s chaos=%s reason=%s scope=%s rewrites=%d "
                "dryRun=%s",
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
        if not mutation.chaos:
            outcome = "skipped"
        elif mutation.patch:
            outcome = "mutated"
        else:
            outcome = "unchanged"
        return _response(request.uid, **fields), outcome

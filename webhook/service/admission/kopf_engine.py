"""`--engine kopf`: the same decision as the direct engine, reached through kopf's own admission
machinery (`kopf.on.mutate`), which deep-copies and diffs the pod to build its patch.

Kept as a second, slower transport so the two can be compared (bench/RESULTS.md) and so the
product works the way a kopf operator is expected to. This module only translates: kopf's
keyword arguments to an AdmissionRequest, and a Decision to kopf's patch, warnings and
AdmissionError. Only kopf's public API is used.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp.web
import kopf
import orjson

from webhook.core.jsonpatch import apply_patch_in_place
from webhook.service import metrics
from webhook.service.admission.decision import BAD_REQUEST, AdmissionRequest
from webhook.service.admission.handler import AdmissionHandler
from webhook.service.admission.review import AdmissionRequestError, encode_error, parse_review

logger = logging.getLogger("webhook.admission")


def register_mutation(registry: kopf.OperatorRegistry, handler: AdmissionHandler, handler_id: str) -> None:
    """One `kopf.on.mutate` handler for pods that answers through `handler.answer`."""

    # subresource="*": kopf matches a handler's subresource exactly (None is the pod itself), and
    # ephemeral containers arrive as an UPDATE of pods/ephemeralcontainers.
    @kopf.on.mutate("", "v1", "pods", id=handler_id, subresource="*", registry=registry)
    async def mutate_through_kopf(
        body: kopf.Body,
        patch: kopf.Patch,
        warnings: list[str],
        subresource: str | None,
        old: kopf.Body | None = None,
        operation: str | None = None,
        dryrun: bool = False,
        **_: Any,
    ) -> None:
        started = time.perf_counter()
        metadata = body.get("metadata", {})
        request = AdmissionRequest(
            uid=str(metadata.get("uid") or ""),  # kopf does not pass the request's uid to handlers
            namespace=metadata.get("namespace") or "",
            operation=operation or "",
            sub_resource=subresource or "",
            pod=body,
            old_pod=old,
            dry_run=dryrun,
        )
        decision = await handler.answer(request, started)
        if not decision.allowed:
            raise kopf.AdmissionError(decision.refusal, code=500)
        if decision.patch:
            operations = decision.patch
            patch.fns.append(lambda raw: apply_patch_in_place(raw, operations))
        warnings.extend(decision.warnings)


async def serve_through_kopf(kopf_fn: Any, request: aiohttp.web.Request, body: bytes) -> aiohttp.web.Response:
    """Answer one HTTP request with kopf's admission function (`kopf_fn`, given to the server)."""
    try:
        # The direct engine's checks first: kopf accepts a wrong kind, apiVersion, uid or operation,
        # and crashes (HTTP 500) on a body that is not an object or has no request.resource.
        admission_request = parse_review(body)
    except AdmissionRequestError as error:
        return _bad_request(str(error))
    try:
        response = await kopf_fn(
            orjson.loads(body), webhook=request.match_info.get("id"), headers=dict(request.headers)
        )
    except Exception as error:
        # Raised by kopf while reading the review: a review it cannot serve (handler errors are
        # kopf's outcomes, answered in the response, not raised).
        logger.warning("malformed admission request uid=%s: %r", admission_request.uid, error)
        return _bad_request(f"request {admission_request.uid}: malformed AdmissionReview: {error!r}")
    return aiohttp.web.Response(body=orjson.dumps(response), content_type="application/json")


def _bad_request(message: str) -> aiohttp.web.Response:
    metrics.REQUESTS.labels(outcome=BAD_REQUEST).inc()
    return aiohttp.web.Response(status=400, body=encode_error(message), content_type="application/json")

"""One admission request from decoded to decided, whichever transport brought it.

`AdmissionHandler.answer` is the only path both engines take: the decision from the current
snapshot, one short wait for a namespace the watch has not delivered yet, the failure policy for
anything unexpected, and the request metrics. `handle` is the direct engine: bytes in, bytes out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from webhook.core.snapshot import Snapshot
from webhook.service import metrics
from webhook.service.admission.decision import (
    BAD_REQUEST,
    ERROR,
    FAIL,
    NAMESPACE_UNKNOWN,
    AdmissionRequest,
    Decision,
    decide,
    unavailable,
)
from webhook.service.admission.review import (
    AdmissionRequestError,
    encode_error,
    encode_response,
    parse_review,
)

logger = logging.getLogger("webhook.admission")


class AdmissionHandler:
    """Answers requests from whatever snapshot `current_snapshot()` returns at that moment."""

    def __init__(
        self,
        current_snapshot: Callable[[], Snapshot | None],
        failure_policy: str = FAIL,
        wait_for_namespace: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._current = current_snapshot
        self.failure_policy = failure_policy
        self._wait_for_namespace = wait_for_namespace

    async def answer(self, request: AdmissionRequest, started: float) -> Decision:
        """The decision for `request` (received at perf_counter() `started`). Never raises."""
        try:
            decision = decide(request, self._current(), self.failure_policy)
            # A namespace created a moment ago: give the watch a moment to deliver it.
            if (
                decision.outcome == NAMESPACE_UNKNOWN
                and self._wait_for_namespace is not None
                and await self._wait_for_namespace(request.namespace)
            ):
                decision = decide(request, self._current(), self.failure_policy)
        except Exception:
            logger.exception(
                "admission handler failed for request uid=%s in namespace %s", request.uid, request.namespace
            )
            decision = unavailable(ERROR, "internal error in the webhook", self.failure_policy)
        metrics.record_request(decision.outcome, time.perf_counter() - started)
        if decision.mutation is not None:
            for rewrite in decision.mutation.rewrites:
                metrics.record_rewrite(rewrite.component)
        return decision

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """The direct engine: HTTP status and body for one request body. Never raises."""
        started = time.perf_counter()
        try:
            request = parse_review(body)
        except AdmissionRequestError as error:
            metrics.record_request(BAD_REQUEST, time.perf_counter() - started)
            logger.warning("malformed admission request: %s", error)
            return 400, encode_error(str(error))
        decision = await self.answer(request, started)
        try:
            return 200, encode_response(request.uid, decision)
        except Exception:  # a patch that does not serialise: a bug, answered per failure policy
            logger.exception("cannot encode the answer to request uid=%s", request.uid)
            return 200, encode_response(
                request.uid, unavailable(ERROR, "internal error in the webhook", self.failure_policy)
            )

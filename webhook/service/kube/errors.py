"""API errors as the service reports them: the HTTP status, and one line for a log or a status."""

from __future__ import annotations

import json

from kubernetes import client


def status_of(error: BaseException) -> int | None:
    """The HTTP status of an API error, None for anything else."""
    return error.status if isinstance(error, client.ApiException) else None


def describe(error: BaseException, detail: bool = True) -> str:
    """One line about an API error. `detail=False` leaves out the server's message (Secret writes:
    an admission webhook's message could quote the object)."""
    if not isinstance(error, client.ApiException):
        return f"{type(error).__name__}: {error}"
    reason, message = error.reason, ""
    try:
        body = json.loads(error.body or "{}")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    except (ValueError, AttributeError):
        pass
    text = f"{error.status} {reason}"
    if detail and message:
        text += f": {message[:300]}"
    return text

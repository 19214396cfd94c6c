"""API errors as the service reports them: the HTTP status, and one line for a log or a status.

Errors of the client library (`describe`) and of the lean watches' own requests
(`describe_response`) are both said here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from kubernetes import client

from webhook.service.kube import protobuf


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


def describe_response(status: int, data: bytes) -> str:
    """One line about an HTTP answer that is not 200: the Status object's message (in JSON or in
    protobuf, as the request asked), else the body."""
    body: Any = protobuf.decode_status(data)
    if body is None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
    if isinstance(body, dict) and body.get("message"):
        return f"HTTP {status}: {status_text(body)}"
    text = one_line(data[:200].decode(errors="replace"))
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def status_text(body: Mapping[str, Any]) -> str:
    """The message of a Status object (an error response, or an ERROR watch event)."""
    return one_line(str(body.get("message") or body.get("reason") or "unknown error"))


def one_line(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        error = str(error) or type(error).__name__
    return " ".join(error.split())

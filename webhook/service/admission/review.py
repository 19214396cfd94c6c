"""The direct engine's wire format: an AdmissionReview's bytes to an AdmissionRequest, a Decision
to the response's bytes.

Decoding checks only what the decision relies on and refuses anything else with an
`AdmissionRequestError` (answered with HTTP 400); the pod itself is passed on as decoded, not
copied.
"""

from __future__ import annotations

import base64

import orjson

from webhook.service.admission.decision import AdmissionRequest, Decision

ADMISSION_API_VERSION = "admission.k8s.io/v1"


class AdmissionRequestError(ValueError):
    """The request is not a well-formed AdmissionReview: answered with HTTP 400 and this message."""


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
    )


def encode_response(uid: str, decision: Decision) -> bytes:
    """The AdmissionReview answering request `uid` with `decision`."""
    response: dict[str, object] = {"uid": uid, "allowed": decision.allowed}
    if decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(decision.patch)).decode("ascii")
    if decision.warnings:
        response["warnings"] = decision.warnings
    if decision.refusal is not None:
        response["status"] = {"code": 500, "message": decision.refusal}
    review = {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}
    return orjson.dumps(review)


def encode_error(message: str) -> bytes:
    """The body of an HTTP 400 answer to a request that is not a well-formed AdmissionReview."""
    return orjson.dumps({"error": message})

"""AdmissionHandler without a server: failures are answered per failurePolicy and logged with the
request uid (an exception inside the mutation cannot be provoked through the real apiserver, so a
snapshot whose admit raises is injected here)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

import orjson
import pytest

from webhook.core.models import load_defaults
from webhook.core.snapshot import CompiledConfig, Mutation, Snapshot
from webhook.service.admission.handler import AdmissionHandler

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "runner", "namespace": "chaos", "labels": {"chaosUID": "x"}},
    "spec": {"containers": [{"name": "c", "image": "litmuschaos/go-runner:1.0"}]},
}


def review(uid: str = "uid-123", namespace: str = "chaos", **request: Any) -> bytes:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "operation": "CREATE",
            "namespace": namespace,
            "object": POD,
            **request,
        },
    }
    return orjson.dumps(body)


class ExplodingSnapshot:
    """Knows the namespace, then fails inside the mutation."""

    namespaces: Mapping[str, Mapping[str, str]] = MappingProxyType({"chaos": {}})

    def admit(
        self, pod: Mapping[str, Any], namespace: str, old_pod: Mapping[str, Any] | None = None
    ) -> Mutation:
        raise RuntimeError("boom in the mutator")


def exploding() -> Snapshot:
    return cast(Snapshot, ExplodingSnapshot())


def answer(handler: AdmissionHandler, body: bytes) -> tuple[int, dict[str, Any]]:
    status, payload = asyncio.run(handler.handle(body))
    result: dict[str, Any] = orjson.loads(payload)
    return status, result


def test_handler_error_with_fail_refuses_and_logs_the_uid(caplog: pytest.LogCaptureFixture) -> None:
    handler = AdmissionHandler(exploding, failure_policy="Fail")
    with caplog.at_level(logging.ERROR, logger="webhook.admission"):
        status, result = answer(handler, review(uid="uid-fail-1"))
    assert status == 200
    response = result["response"]
    assert response["uid"] == "uid-fail-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "chaos-registry-webhook" in response["status"]["message"]
    assert "patch" not in response
    records = [r for r in caplog.records if "uid=uid-fail-1" in r.getMessage()]
    assert records and records[0].exc_info is not None  # the traceback is in the log
    assert "boom in the mutator" in caplog.text


def test_handler_error_with_ignore_admits_unchanged_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    handler = AdmissionHandler(exploding, failure_policy="Ignore")
    with caplog.at_level(logging.ERROR, logger="webhook.admission"):
        status, result = answer(handler, review(uid="uid-ignore-1"))
    assert status == 200
    response = result["response"]
    assert response["uid"] == "uid-ignore-1"
    assert response["allowed"] is True
    assert "patch" not in response
    assert any("failurePolicy Ignore" in warning for warning in response["warnings"])
    assert "uid=uid-ignore-1" in caplog.text


def test_not_synced_is_answered_per_failure_policy() -> None:
    status, result = answer(AdmissionHandler(lambda: None, failure_policy="Fail"), review())
    assert status == 200 and result["response"]["allowed"] is False
    assert "not synced" in result["response"]["status"]["message"]
    status, result = answer(AdmissionHandler(lambda: None, failure_policy="Ignore"), review())
    assert status == 200 and result["response"]["allowed"] is True


def test_namespace_seen_while_waiting_is_mutated() -> None:
    """A namespace created a moment ago: the handler waits for the watch, then mutates."""
    config = CompiledConfig(load_defaults({"rewriteUnconfiguredScopes": True}))
    current: list[Snapshot] = [Snapshot(config, MappingProxyType({}))]

    async def wait_for_namespace(name: str) -> bool:
        await asyncio.sleep(0.01)
        current[0] = Snapshot(config, MappingProxyType({name: {"chaosregistry.io/account": "acme"}}))
        return True

    handler = AdmissionHandler(lambda: current[0], "Fail", wait_for_namespace)
    status, result = answer(handler, review(namespace="fresh"))
    assert status == 200
    response = result["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patch = orjson.loads(base64.b64decode(response["patch"]))
    assert {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": "docker.io/harness/go-runner:1.0",
    } in patch


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff not json", "not JSON"),
        (
            orjson.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}),
            "request is missing",
        ),
        (review(uid=""), "request.uid is missing"),
    ],
)
def test_malformed_review_is_a_400_never_an_exception(body: bytes, message: str) -> None:
    status, result = answer(AdmissionHandler(exploding), body)
    assert status == 400
    assert message in result["error"]

"""`chaos-registry check-admission` (the Helm chart's test) without a cluster: what counts as
rewritten, which failures are asked again, and the one-line errors. tests/e2e/chart runs it against
a real API server and webhook, and tests/node runs it as `helm test` in a pod."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from webhook.cli.admission_check import (
    CHECK_CONTAINER,
    CHECK_IMAGE,
    CheckFailed,
    check_pod,
    expected_image,
    problem_with,
    run_check,
)
from webhook.cli.main import EXIT_BAD_INPUT, main
from webhook.core.models import ORIGINAL_IMAGES_ANNOTATION

REGISTRY = "registry.helm-test.invalid/chaos"
REWRITTEN = f"{REGISTRY}/chaos-runner:3.11.0"


def admitted(image: str, originals: Any = None) -> dict[str, Any]:
    pod = check_pod("ns")
    pod["spec"]["containers"][0]["image"] = image
    if originals is not None:
        pod["metadata"]["annotations"] = {ORIGINAL_IMAGES_ANNOTATION: json.dumps(originals)}
    return pod


def test_expected_image_keeps_the_last_path_segment_and_tag() -> None:
    assert expected_image(REGISTRY) == REWRITTEN
    assert expected_image("127.0.0.1:5000/") == "127.0.0.1:5000/chaos-runner:3.11.0"


def test_rewritten_pod_with_its_original_recorded_passes() -> None:
    assert problem_with(admitted(REWRITTEN, {CHECK_CONTAINER: CHECK_IMAGE}), REGISTRY) is None


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (admitted(CHECK_IMAGE), "came back unchanged (litmuschaos/chaos-runner:3.11.0), not rewritten to"),
        (
            admitted("docker.io/harness/chaos-runner:3.11.0", {CHECK_CONTAINER: CHECK_IMAGE}),
            f"came back with image docker.io/harness/chaos-runner:3.11.0, expected {REWRITTEN}",
        ),
        (admitted(REWRITTEN), f"annotation {ORIGINAL_IMAGES_ANNOTATION} does not record the original"),
        (admitted(REWRITTEN, ["not", "a", "map"]), "does not record the original image"),
    ],
)
def test_problems_say_what_came_back(pod: dict[str, Any], message: str) -> None:
    problem = problem_with(pod, REGISTRY)
    assert problem is not None and message in problem


class Clock:
    """A fake clock that `sleep` advances: the retry loop runs instantly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


def test_unchanged_and_unreachable_answers_are_asked_again_until_rewritten() -> None:
    answers: list[Any] = [
        api_error(
            500, 'Internal error occurred: failed calling webhook "pods.chaosregistry.io": connection refused'
        ),
        api_error(403, 'pods "p" is forbidden: error looking up service account ns/default: not found'),
        admitted(CHECK_IMAGE),
        admitted(REWRITTEN, {CHECK_CONTAINER: CHECK_IMAGE}),
    ]
    sent: list[dict[str, Any]] = []

    def create(pod: dict[str, Any]) -> dict[str, Any]:
        sent.append(pod)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    clock = Clock()
    result = run_check(create, "ns", REGISTRY, timeout=60, clock=clock, sleep=clock.sleep)
    assert (result.image, result.attempts, result.seconds) == (REWRITTEN, 4, 3.0)
    assert all(pod["metadata"]["namespace"] == "ns" for pod in sent)
    assert result.summary("ns") == (
        f"ok: a chaos pod in namespace ns was admitted as {REWRITTEN} (from {CHECK_IMAGE}) "
        "after 4 attempt(s), 3.0 s"
    )


def test_timeout_reports_the_last_answer() -> None:
    clock = Clock()
    with pytest.raises(CheckFailed) as failed:
        run_check(
            lambda pod: admitted(CHECK_IMAGE), "ns", REGISTRY, timeout=5, clock=clock, sleep=clock.sleep
        )
    assert str(failed.value) == (
        f"after 6 attempt(s) in 5 s: the chaos pod came back unchanged ({CHECK_IMAGE}), "
        f"not rewritten to {REWRITTEN}"
    )


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, 'pods is forbidden: User "system:serviceaccount:x:y" cannot create resource "pods"'),
        (404, 'namespaces "gone" not found'),
        (400, 'pods "p" is forbidden: violates PodSecurity "restricted:latest"'),
    ],
)
def test_refusals_that_cannot_get_better_end_the_check_at_once(status: int, message: str) -> None:
    calls = 0

    def create(pod: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise api_error(status, message)

    clock = Clock()
    with pytest.raises(CheckFailed) as failed:
        run_check(create, "ns", REGISTRY, timeout=60, clock=clock, sleep=clock.sleep)
    assert calls == 1
    assert str(failed.value) == f"the API server refused the chaos pod: HTTP {status}: {message}"


def test_check_pod_is_a_restricted_litmus_runner() -> None:
    pod = check_pod("chaos-test")
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/component": "chaos-runner"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_cli_without_a_cluster_fails_in_one_line(tmp_path: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "missing.kubeconfig"
    code = main(
        ["check-admission", "--namespace", "ns", "--expect-registry", REGISTRY, "--kubeconfig", str(missing)],
        out,
        err,
    )
    assert code == EXIT_BAD_INPUT
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "chaos-registry check-admission: error: no cluster to ask with"
    )
    assert str(missing) in lines[0]

"""`chaos-registry check-admission`: ask the API server to admit a chaos pod and check the answer.

The Helm chart's test hook (`helm test`) runs it in a pod of the installed release, so one command
checks the whole path a real chaos pod takes: the API server, the chart's MutatingWebhookConfiguration
and Service, a webhook replica with its configuration loaded, and the JSON patch coming back. The pod
is created with dryRun=All: nothing is stored and nothing runs.

A freshly installed webhook may not have seen the ChaosImageRegistry or the namespace labels yet, and
the API server may not reach a replica that is still starting: until the deadline, an unchanged pod or
a failed webhook call is asked again, and so is the refusal a namespace gets in its first seconds, before
the controller manager made its `default` ServiceAccount; what cannot get better (forbidden, no such
namespace, a pod the API server refuses) ends the check at once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook.core.models import ORIGINAL_IMAGES_ANNOTATION

# A LitmusChaos runner: the built-in rule litmus-runner recognises it by this label, and the catalog
# knows its repository (chaos-runner). Its image's last path segment and tag survive the rewrite.
CHECK_CONTAINER = "chaos-runner"
CHECK_IMAGE = "litmuschaos/chaos-runner:3.11.0"
CHECK_LABELS = {"app.kubernetes.io/component": "chaos-runner"}
CHECK_POD_NAME = "chaos-registry-admission-check"

# Statuses worth asking again: the webhook is not reachable yet, or the API server is busy.
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Seconds to connect and to read the answer of one dry-run create: the apiserver waits for the
# webhook's answer (its timeoutSeconds, at most 30) before it answers.
REQUEST_SECONDS = (5.0, 35.0)


class CheckFailed(Exception):
    """The check failed; the message is one line saying what came back or went wrong."""


@dataclass(frozen=True)
class CheckResult:
    image: str
    attempts: int
    seconds: float

    def summary(self, namespace: str) -> str:
        return (
            f"ok: a chaos pod in namespace {namespace} was admitted as {self.image} "
            f"(from {CHECK_IMAGE}) after {self.attempts} attempt(s), {self.seconds:.1f} s"
        )


def check_pod(namespace: str) -> dict[str, Any]:
    """A chaos pod that Pod Security `restricted` admits, so the check runs in namespaces enforcing it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": CHECK_POD_NAME, "namespace": namespace, "labels": dict(CHECK_LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": CHECK_CONTAINER,
                    "image": CHECK_IMAGE,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                    },
                }
            ],
        },
    }


def expected_image(registry: str) -> str:
    """`registry` is what the ChaosImageRegistry sets: server[/account]."""
    return f"{registry.rstrip('/')}/{CHECK_IMAGE.rsplit('/', 1)[-1]}"


def problem_with(admitted: dict[str, Any], registry: str) -> str | None:
    """Why the admitted pod is not the chaos pod rewritten to `registry`, or None when it is."""
    containers = admitted.get("spec", {}).get("containers") or []
    image = next((c.get("image") for c in containers if c.get("name") == CHECK_CONTAINER), None)
    want = expected_image(registry)
    if image == CHECK_IMAGE:
        return f"the chaos pod came back unchanged ({CHECK_IMAGE}), not rewritten to {want}"
    if image != want:
        return f"the chaos pod came back with image {image}, expected {want}"
    annotations = admitted.get("metadata", {}).get("annotations") or {}
    try:
        originals = json.loads(annotations.get(ORIGINAL_IMAGES_ANNOTATION, "null"))
    except ValueError:
        originals = None
    if not isinstance(originals, dict) or originals.get(CHECK_CONTAINER) != CHECK_IMAGE:
        return (
            f"the chaos pod was rewritten to {image} but its annotation {ORIGINAL_IMAGES_ANNOTATION} "
            f"does not record the original image: {annotations.get(ORIGINAL_IMAGES_ANNOTATION)!r}"
        )
    return None


def _api_error_message(error: Any) -> str:
    """The API server's Status message of an ApiException, else the exception's text; one line."""
    try:
        message = str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(getattr(error, "reason", "") or error)
    return " ".join(f"HTTP {getattr(error, 'status', '?')}: {message}".split())


def run_check(
    create: Callable[[dict[str, Any]], dict[str, Any]],
    namespace: str,
    registry: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 1.0,
) -> CheckResult:
    """Create the check pod through `create` (a dry-run create returning the admitted pod) until it
    comes back rewritten to `registry` or `timeout` seconds have passed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    started = clock()
    attempts = 0
    while True:
        attempts += 1
        try:
            problem = problem_with(create(check_pod(namespace)), registry)
        except ApiException as error:
            problem = _api_error_message(error)
            # A namespace just created has no `default` ServiceAccount until the controller manager
            # makes it, and ServiceAccount admission refuses pods until then.
            waiting_for_account = error.status == 403 and "error looking up service account" in problem
            if error.status not in _RETRYABLE_STATUSES and not waiting_for_account:
                raise CheckFailed(f"the API server refused the chaos pod: {problem}") from None
        except (HTTPError, OSError) as error:
            problem = " ".join(f"cannot reach the API server: {error}".split())
        if problem is None:
            return CheckResult(expected_image(registry), attempts, clock() - started)
        if clock() - started >= timeout:
            raise CheckFailed(f"after {attempts} attempt(s) in {timeout:g} s: {problem}")
        sleep(interval)


def dry_run_creator(kubeconfig: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A dry-run pod create with the in-cluster configuration (in a pod) or the kubeconfig."""
    from kubernetes.config import ConfigException

    from webhook.service.kube import client as kube_client
    from webhook.service.kube.resources import Resources, core_path

    try:
        configuration = kube_client.load_client_configuration(kubeconfig)
    except (ConfigException, OSError) as error:
        source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config (no in-cluster configuration)"
        raise CheckFailed(" ".join(f"no cluster to ask with {source}: {error}".split())) from None
    resources = Resources(kube_client.api_client(configuration), timeout=REQUEST_SECONDS)

    def create(pod: dict[str, Any]) -> dict[str, Any]:
        path = core_path("pods", pod["metadata"]["namespace"])
        admitted: dict[str, Any] = resources.request("POST", path, "object", pod, query={"dryRun": "All"})
        return admitted

    return create

"""A webhook that does not answer: failurePolicy decides, and the apiserver's message names it.

A `serve` process of its own registers a MutatingWebhookConfiguration of its own, proves the
apiserver calls it, and is stopped. With failurePolicy Fail a chaos pod is refused (a pod labelled
chaosregistry.io/inject=false is the escape hatch: never sent); switched to Ignore, the pod is
admitted. The configuration is deleted at the end whatever happens, so later tests are not blocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes
import pytest

from controlplane import ControlPlane
from tests.e2e.service.admission_support import (
    extra_webhook,
    image_of,
    load_pod,
    total_requests,
    unique_pod,
    wait_admitted,
)
from tests.e2e.service.conftest import Cluster, images, wait_for
from webhook.service.tls.webhook_configuration import WEBHOOK_NAME

RUNNER = "examples/pods/litmus-runner.yaml"
TARGET = "registry.acme.corp/chaos"


def test_stopped_webhook_is_answered_per_failure_policy(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster.registry("root", {"registry": {"server": "registry.acme.corp", "account": "chaos"}})
    namespace = cluster.namespace()
    wait_admitted(cluster, namespace, RUNNER, image_of("chaos-runner", TARGET), what="the registry")
    admission = kubernetes.client.AdmissionregistrationV1Api(cluster.api)

    with extra_webhook(control_plane, tmp_path, failure_policy="Fail", prefix="chaos-registry-down") as down:
        configuration = admission.read_mutating_webhook_configuration(down.config_name)
        assert configuration.webhooks[0].failure_policy == "Fail"

        def called() -> bool:
            cluster.create_pod(namespace, RUNNER, dry_run=True)
            return total_requests(down) > 0

        wait_for(called, timeout=20, what="the apiserver to call the second webhook")
        down.stop()

        # failurePolicy Fail: refused, and the message says which webhook and where.
        with pytest.raises(kubernetes.client.ApiException) as refused:
            cluster.create_pod(namespace, unique_pod(load_pod(RUNNER)))
        assert refused.value.status == 500
        message = json.loads(refused.value.body)["message"]
        assert f'failed calling webhook "{WEBHOOK_NAME}"' in message
        assert f"{down.url}/mutate-pods" in message
        # The escape hatch: a pod opted out by label is never sent, so it is admitted.
        opted_out = unique_pod(load_pod(RUNNER))
        opted_out["metadata"]["labels"]["chaosregistry.io/inject"] = "false"
        assert images(cluster.create_pod(namespace, opted_out)) == {
            "chaos-runner": "litmuschaos/chaos-runner:3.11.0"
        }

        # failurePolicy Ignore: admitted (and still rewritten by the running webhook).
        admission.patch_mutating_webhook_configuration(
            down.config_name, [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]
        )

        def admitted() -> dict[str, object] | None:
            try:
                return cluster.create_pod(namespace, unique_pod(load_pod(RUNNER)))
            except kubernetes.client.ApiException as error:
                assert error.status == 500, error.body
                return None

        stored = wait_for(admitted, timeout=20, what="failurePolicy Ignore to admit the pod")
        assert images(stored) == {"chaos-runner": f"{TARGET}/chaos-runner:3.11.0"}

    # The configuration of the stopped webhook is gone: nothing is left to block later tests.
    with pytest.raises(kubernetes.client.ApiException) as gone:
        admission.read_mutating_webhook_configuration(down.config_name)
    assert gone.value.status == 404

"""Pods that carry hostile records, through the real apiserver, under both failure policies.

A pod author writes `chaosregistry.io/original-images` (and every other annotation) as they like.
A record the webhook cannot read (a thousand `[`, deep objects, an integer of thousands of digits,
not JSON at all) must be ignored with a warning and the pod rewritten anyway: if reading it raised,
failurePolicy Fail would refuse the pod forever and Ignore would admit it unrewritten, an opt-out
for anyone who can create pods in a bound namespace.

A `serve` process of its own registers a configuration that sorts before the shared webhook's
(the apiserver calls mutating webhooks in name order), so it sees each pod exactly as the author
wrote it. Its own metrics prove it answered with a mutation, never its internal-error answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane import ControlPlane
from tests.e2e.service.admission_support import (
    admission_requests,
    extra_webhook,
    image_of,
    load_pod,
    total_requests,
    unique_pod,
    wait_admitted,
)
from tests.e2e.service.conftest import Cluster, images, wait_for

RUNNER = "examples/pods/litmus-runner.yaml"
TARGET = "registry.acme.corp/chaos"
RECORD = "chaosregistry.io/original-images"
HOSTILE_RECORDS = {
    "a thousand brackets": "[" * 1000 + "]" * 1000,
    "100,000 brackets": "[" * 100_000 + "]" * 100_000,
    "deep objects": '{"a":' * 20_000 + "1" + "}" * 20_000,
    "deep inside a record": '{"chaos-runner":' + "[" * 5000 + "]" * 5000 + "}",
    "5,000 digits": "9" * 5000,
    "not JSON": "{chaos-runner: litmuschaos/chaos-runner}",
    "a record of numbers": json.dumps({"chaos-runner": 1}),
}


@pytest.mark.parametrize("failure_policy", ["Fail", "Ignore"])
def test_unreadable_records_never_stop_the_rewrite(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path, failure_policy: str
) -> None:
    cluster.registry("root", {"registry": {"server": "registry.acme.corp", "account": "chaos"}})
    namespace = cluster.namespace()
    wait_admitted(cluster, namespace, RUNNER, image_of("chaos-runner", TARGET), what="the registry")
    with extra_webhook(
        control_plane, tmp_path, failure_policy=failure_policy, prefix="chaos-registry-a-hostile"
    ) as first:

        def called() -> bool:
            cluster.create_pod(namespace, RUNNER, dry_run=True)
            return admission_requests(first).get("mutated", 0) > 0

        wait_for(called, timeout=30, what="the apiserver to call the hostile-record webhook")
        before = admission_requests(first)
        for name, record in HOSTILE_RECORDS.items():
            pod = unique_pod(load_pod(RUNNER))
            pod["metadata"].setdefault("annotations", {})[RECORD] = record
            stored = cluster.create_pod(namespace, pod)
            assert images(stored) == {"chaos-runner": f"{TARGET}/chaos-runner:3.11.0"}, name
            # The unreadable record was replaced by a true one.
            assert json.loads(stored["metadata"]["annotations"][RECORD]) == {
                "chaos-runner": "litmuschaos/chaos-runner:3.11.0"
            }, name
        after = admission_requests(first)
        assert after.get("error", 0) == before.get("error", 0) == 0, after
        assert after.get("mutated", 0) - before.get("mutated", 0) == len(HOSTILE_RECORDS), after
        assert total_requests(first) > 0
        assert "admission handler failed" not in first.log_file.read_text(errors="replace")

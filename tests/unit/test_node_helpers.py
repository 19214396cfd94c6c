"""The real node's host lock and pod-status helpers, without a node."""

from __future__ import annotations

import pytest

from controlplane.node import NodeError, _HostLock, pod_summary, waiting_reasons


def test_a_second_holder_of_the_host_lock_waits_then_fails_naming_the_first(tmp_path):
    first, second = _HostLock(tmp_path / "node.lock"), _HostLock(tmp_path / "node.lock")
    first.acquire(timeout=1, on_wait="unused")
    try:
        with pytest.raises(NodeError, match=r"still in use after 0s .*held by pid \d+"):
            second.acquire(timeout=0.2, on_wait="another real node runs on this machine")
    finally:
        first.release()
    second.acquire(timeout=1, on_wait="unused")  # released: the next one gets it at once
    second.release()


def test_waiting_reasons_cover_init_containers_and_the_summary_names_them():
    pod = {
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "init",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "x.io/a:1 not found"}},
                }
            ],
            "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}],
        }
    }

    assert waiting_reasons(pod) == ["ErrImagePull", "PodInitializing"]
    assert pod_summary(pod) == (
        "phase=Pending; init=waiting:ErrImagePull x.io/a:1 not found; main=waiting:PodInitializing"
    )

"""`make bench-node` end to end, small: 4 pods a side on the session's node, outputs in a temp folder.

Proves the tool measures what it says: both sides ran, every pod with the webhook was rewritten
by it and none without, and the figures and the RESULTS.md part come from those pods.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import node_startup
from controlplane.node import NodeCluster
from controlplane.webhook import WebhookProcess
from tests.node.conftest import ACCOUNT, PULLER


def test_the_node_bench_times_both_sides_and_only_the_webhook_side_is_rewritten(
    node_cluster: NodeCluster, node_webhook: WebhookProcess, tmp_path: Path
):
    result = node_startup.measure(node_cluster, account=ACCOUNT, user=PULLER, pods=4, warmup=1, max_pods=4)
    node_startup.write_outputs(result, tmp_path)

    written = json.loads((tmp_path / "node-results.json").read_text())
    assert written == json.loads(json.dumps(result))
    sides = written["sides"]
    assert {side: sides[side]["pods"] for side in ("with", "without")} == {"with": 4, "without": 4}
    assert sides["with"]["rewritten"] == 4
    assert sides["without"]["rewritten"] == 0
    samples = written["samples"]
    assert len(samples) == 8 and {s["pair"] for s in samples} == {1, 2, 3, 4}  # pair 0 warmed up
    for sample in samples:
        # Each stage after the create's answer began, Running last.
        assert 0 < sample["post_ms"] <= sample["running_ms"] < 120_000
        assert sample["bound_ms"] is not None and sample["bound_ms"] <= sample["running_ms"]
    with_ms = sides["with"]["create_to_running_ms"]
    running = sorted(s["running_ms"] for s in samples if s["side"] == "with")
    assert with_ms["max"] == running[-1] and with_ms["count"] == 4
    share = written["webhook_share"]
    assert share["median_difference_ms"] == round(
        with_ms["median"] - sides["without"]["create_to_running_ms"]["median"], 2
    )
    assert len(written["run"]["load_average_at_start"]) == 3

    section = (tmp_path / "RESULTS.md").read_text()
    assert section.count(node_startup.BEGIN) == 1 and section.count(node_startup.END) == 1
    assert f"| with the webhook (rewritten) | 4 | {with_ms['median']:.1f} |" in section

    # Both namespaces are left for deletion and no bench pod remains.
    left = node_cluster.kubectl(
        "get", "pods", "-A", "-l", node_startup.RUN_LABEL, "-o", "name", check=False
    ).stdout.split()
    assert left == []

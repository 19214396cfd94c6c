"""Load held: AdmissionReviews at a steady rate straight to one `serve` process over HTTPS.

500 requests per second (30 s in the full run, 5 s in the CI share) after a warm-up at the same
rate: no error (every answer 200, allowed, with the patch expected for its pod), the schedule kept,
and no growth of the process's resident memory (VmRSS) beyond 10% of what it was after warm-up.
"""

from __future__ import annotations

import base64
import collections
import copy
import statistics
import threading
import time
from pathlib import Path

import orjson
import yaml

from controlplane import ControlPlane
from tests.e2e.service.conftest import REPO, Cluster
from tests.reliability import figures
from tests.reliability.scale import Scale
from tests.reliability.support import (
    Answer,
    rewritten_to,
    rss_kib,
    running_webhook,
    steady_load,
    wait_admitted,
)

SECTION = "load held over HTTPS (one serve process)"
RATE = 500.0
EXAMPLES = (
    "hce-ddcr-runner",
    "hce-fault",
    "hce-helper",
    "litmus-runner",
    "litmus-experiment",
    "litmus-helper",
    "litmus-probe",
    "argo-step",
    "not-chaos",
)


def _bodies(namespace: str) -> list[tuple[bytes, bool]]:
    """Reviews of the example pods (a chaos pod expects a patch), 20 variants of each."""
    bodies = []
    for name in EXAMPLES:
        pod = yaml.safe_load((REPO / "examples" / "pods" / f"{name}.yaml").read_text())
        for variant in range(20):
            body = copy.deepcopy(pod)
            body["metadata"]["name"] = f"{name}-{variant}"
            body["metadata"]["namespace"] = namespace
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": f"load-{name}-{variant}",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "operation": "CREATE",
                    "namespace": namespace,
                    "object": body,
                },
            }
            bodies.append((orjson.dumps(review), name != "not-chaos"))
    return bodies


def test_steady_load_without_errors_or_memory_growth(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path, reliability_scale: Scale
) -> None:
    seconds = reliability_scale.pick(5.0, 30.0)
    warmup = reliability_scale.pick(3.0, 10.0)
    cluster.registry("root", {"registry": {"server": "load.mirror.example", "account": "chaos"}})
    namespace = cluster.namespace()
    bodies = _bodies(namespace)
    # Answers come back in any order under load: each is judged by the uid it answers.
    expects_patch = {orjson.loads(body)["request"]["uid"]: chaos for body, chaos in bodies}
    lock = threading.Lock()
    problems: list[str] = []
    latencies: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    last_answer = 0.0

    def judge(index: int, answer: Answer, measured: bool) -> None:
        nonlocal last_answer
        problem = None
        chaos = False
        if answer.error is not None or answer.status != 200:
            problem = f"HTTP {answer.status} {answer.error or answer.body[:200]!r}"
        else:
            response = orjson.loads(answer.body)["response"]
            chaos = expects_patch.get(response.get("uid"), False)
            if response.get("uid") not in expects_patch:
                problem = f"answer to an unknown uid: {response.get('uid')!r}"
            elif response.get("allowed") is not True:
                problem = f"refused: {response}"
            elif chaos and "patch" not in response:
                problem = f"chaos pod without a patch: {response['uid']}"
            elif chaos:
                patch = orjson.loads(base64.b64decode(response["patch"]))
                if not any(op["path"].endswith("/image") for op in patch):
                    problem = "patch without an image"
        with lock:
            if problem:
                problems.append(problem)
            outcomes["error" if problem else ("patched" if chaos else "admitted")] += 1
            if measured:
                latencies.append(answer.seconds)

    with running_webhook(control_plane, log_dir) as webhook:
        wait_admitted(cluster, namespace, rewritten_to("load.mirror.example/chaos/"), what="the webhook")
        bundle = webhook.ca_bundle()
        pid = webhook.pid
        counter = iter(range(10**9))

        def body_for(_index: int) -> bytes:
            return bodies[next(counter) % len(bodies)][0]

        answered: list[int] = []

        def on_warmup(_elapsed: float, answer: Answer) -> None:
            judge(len(answered), answer, measured=False)
            answered.append(1)

        steady_load(webhook.admission_url, bundle, body_for, rate=RATE, seconds=warmup, on_answer=on_warmup)
        rss_after_warmup = rss_kib(pid)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(rss_kib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        index_base = len(answered)
        measured_answers: list[float] = []

        def on_answer(elapsed: float, answer: Answer) -> None:
            nonlocal last_answer
            judge(index_base + len(measured_answers), answer, measured=True)
            measured_answers.append(elapsed)
            last_answer = max(last_answer, elapsed)

        began = time.monotonic()
        sent = steady_load(
            webhook.admission_url, bundle, body_for, rate=RATE, seconds=seconds, on_answer=on_answer
        )
        wall = time.monotonic() - began
        stop.set()
        sampler.join(5)
        rss_end = rss_kib(pid)
        assert webhook.alive()
    peak = max([*samples, rss_end])
    growth = (peak - rss_after_warmup) / rss_after_warmup
    latencies.sort()
    figures.record(SECTION, "inputs_tried", sent + len(answered))
    figures.record(SECTION, "target rate (req/s)", RATE)
    figures.record(SECTION, "achieved rate (req/s)", round(len(measured_answers) / wall))
    figures.record(SECTION, "seconds held", seconds)
    figures.record(SECTION, "errors", len(problems))
    figures.record(SECTION, "latency p50 (ms)", round(statistics.median(latencies) * 1000, 2))
    figures.record(SECTION, "latency p99 (ms)", round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2))
    figures.record(SECTION, "RSS after warm-up (MiB)", round(rss_after_warmup / 1024, 1))
    figures.record(SECTION, "RSS peak (MiB)", round(peak / 1024, 1))
    figures.record(SECTION, "RSS growth (%)", round(growth * 100, 2))
    assert not problems, f"{len(problems)} errors under load, first: {problems[:5]}"
    assert len(measured_answers) == sent
    # The schedule was kept: the last request went out on time and was answered soon after.
    assert wall <= seconds * 1.2 + 2, f"{sent} requests took {wall:.1f}s instead of {seconds}s"
    assert growth <= 0.10, f"RSS grew {growth:.1%} after warm-up ({rss_after_warmup} -> {peak} KiB)"

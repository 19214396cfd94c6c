"""`make bench-node`: pod start-up through the apiserver on the real node, with and without the webhook.

What a user waits for: the time from a chaos pod's create request to the pod Running, when the
webhook admits it (its image moved to the organisation's registry, the pull secret added) and
when it does not. Both sides run the same containers from the same registry with the same pull
secret; the only difference is the admission call.

- **Cluster**: a `NodeCluster` (etcd, kube-apiserver, containerd, kubelet, scheduler, controller
  manager, a TLS + htpasswd registry holding the test images) and `chaos-registry serve` as a local
  process with one Private ChaosImageRegistry at that registry (`controlplane.node_webhook`, as the
  node tests run it).
- **Pods**: the HCE fault pod of examples/pods/hce-fault.yaml (a log watcher and the fault; both
  images idle until stopped, so the pod stays Running). *With*: as the example has it (docker.io
  images) in a namespace bound to the registry's account; the webhook rewrites both images and the
  image env var and adds the pull secret (checked on every pod). *Without*: the same pod already in
  the form the webhook gives it (taken from a dry-run create), with the pull secret, in a namespace
  the webhook's namespaceSelector leaves out, so the apiserver never calls it.
- **Order**: pairs, one pod of each side, the order flipped every pair, so drift hits both sides
  alike; one pod starts at a time. Warm: the first warm-up pairs pull the images (the example's
  imagePullPolicy, IfNotPresent by its tags) and are not measured.
- **Time**: client monotonic clock, from just before the create POST to the moment a watch on the
  bench's pods sees the pod Running; the same watch stamps when the pod was first seen bound to the
  node, acknowledged by the kubelet (hostIP) and given its IP (the sandbox is up). Pods are deleted
  once Running, in the background; the next create waits while `--max-pods` of them still exist
  (the kubelet holds at most 110).

Writes `<out>/node-results.json` and the part of `<out>/RESULTS.md` between its own markers.

    python -m bench.node_startup                      # 200 pods a side, bench/
    python -m bench.node_startup --pods 10 --out /tmp/node-bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import corpus, procstat
from bench.apiserver import NAMESPACES, Api, ApiError, percentile
from controlplane import ControlPlaneError
from controlplane.node import NodeCluster, pod_summary, waiting_reasons
from controlplane.node_webhook import ACCOUNT_LABEL, PULL_SECRET, create_namespace, node_webhook, wait_until
from controlplane.registry import RegistryError
from controlplane.webhook import WebhookProcessError

BENCH = Path(__file__).resolve().parent
BEGIN = "<!-- BEGIN GENERATED: make bench-node rewrites this part -->"
END = "<!-- END GENERATED: make bench-node -->"
SECTION = "## Pod start-up on the real node (issue 15)"
EXAMPLE = "hce-fault"
RUN_LABEL = "node-startup-bench/run"
ORIGINAL_IMAGES = "chaosregistry.io/original-images"
ACCOUNT = "bench"
PULLER = "puller"
SIDES = ("with", "without")
#: A pod that is not Running after this long is a failure of the run, not a slow sample.
RUNNING_TIMEOUT = 120.0


class BenchError(RuntimeError):
    """The run cannot go on: the message names the pod or request and why."""


@dataclass
class Sample:
    """One pod: milliseconds from just before its create POST to each stage the watch saw."""

    side: str
    pair: int
    name: str
    post_ms: float
    bound_ms: float | None
    kubelet_ms: float | None
    ip_ms: float | None
    running_ms: float
    rewritten: bool


@dataclass
class _Tracked:
    began: float
    stages: dict[str, float] = field(default_factory=dict)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None
    gone: bool = False


class PodWatch:
    """One watch on every pod of the run (all namespaces, by label): the first sighting of each stage.

    Stages: `bound` (spec.nodeName), `kubelet` (status.hostIP), `ip` (status.podIP), `running`
    (phase Running). A pod that ends, or whose container waits for a pull failure, fails its waiter.
    """

    def __init__(self, api: Api, selector: str) -> None:
        self._api = api
        self._selector = selector
        self._pods: dict[tuple[str, str], _Tracked] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def start(self) -> None:
        status, listing = await self._api.request("GET", f"/api/v1/pods?labelSelector={self._selector}")
        if status != 200:
            raise BenchError(f"listing pods: {status} {(listing or {}).get('message')}")
        self._task = asyncio.create_task(self._run(listing["metadata"]["resourceVersion"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def expect(self, namespace: str, name: str) -> _Tracked:
        """Track a pod about to be created (before its POST: the watch may see it first)."""
        tracked = _Tracked(began=time.monotonic())
        self._pods[(namespace, name)] = tracked
        return tracked

    def existing(self) -> int:
        return sum(1 for tracked in self._pods.values() if not tracked.gone)

    async def wait_running(self, tracked: _Tracked, what: str, timeout: float = RUNNING_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(tracked.running.wait(), timeout)
        except TimeoutError:
            raise BenchError(f"{what} not Running after {timeout:.0f}s") from None
        if self._error is not None:
            raise BenchError(f"the pod watch failed: {self._error}")
        if tracked.failure is not None:
            raise BenchError(f"{what} did not start: {tracked.failure}")

    async def wait_fewer_than(self, limit: int, timeout: float = RUNNING_TIMEOUT) -> None:
        """Until fewer than `limit` tracked pods exist (deleted ones are gone once the watch says so)."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._error is not None or self.existing() < limit),
                    timeout,
                )
            except TimeoutError:
                raise BenchError(f"{self.existing()} bench pods still exist after {timeout:.0f}s") from None
        if self._error is not None:
            raise BenchError(f"the pod watch failed: {self._error}")

    async def _run(self, resource_version: str) -> None:
        try:
            while True:
                resource_version = await self._watch(resource_version)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # surfaced to the waiters: none may hang
            self._error = error
            for tracked in self._pods.values():
                tracked.running.set()
            async with self._changed:
                self._changed.notify_all()
            raise

    async def _watch(self, resource_version: str) -> str:
        path = (
            f"/api/v1/pods?watch=1&labelSelector={self._selector}"
            f"&resourceVersion={resource_version}&timeoutSeconds=1800"
        )
        async with self._api.session.get(
            self._api.base + path, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as response:
            if response.status != 200:
                raise BenchError(f"watching pods: {response.status} {await response.text()}")
            async for line in response.content:
                event = orjson.loads(line)
                if event["type"] == "ERROR":
                    raise BenchError(f"the pod watch ended: {event['object'].get('message')}")
                pod = event["object"]
                resource_version = pod["metadata"]["resourceVersion"]
                await self._observe(event["type"], pod, time.monotonic())
        return resource_version

    async def _observe(self, kind: str, pod: dict[str, Any], now: float) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        tracked = self._pods.get(key)
        if tracked is None:
            return
        status = pod.get("status", {})
        marks = {
            "bound": bool(pod["spec"].get("nodeName")),
            "kubelet": bool(status.get("hostIP")),
            "ip": bool(status.get("podIP")),
            "running": status.get("phase") == "Running",
        }
        for stage, reached in marks.items():
            if reached:
                tracked.stages.setdefault(stage, now)
        if not tracked.running.is_set():
            failed = status.get("phase") in ("Succeeded", "Failed") or any(
                reason in ("ErrImagePull", "ImagePullBackOff", "CreateContainerError", "CrashLoopBackOff")
                for reason in waiting_reasons(pod)
            )
            if failed or kind == "DELETED":
                tracked.failure = pod_summary(pod)
            if marks["running"] or tracked.failure is not None:
                tracked.running.set()
        if kind == "DELETED":
            tracked.gone = True
            async with self._changed:
                self._changed.notify_all()


def _ms(tracked: _Tracked, stage: str) -> float | None:
    at = tracked.stages.get(stage)
    return None if at is None else round((at - tracked.began) * 1000, 2)


@dataclass
class Setup:
    """The two namespaces and the two forms of the pod."""

    with_namespace: str
    without_namespace: str
    with_pod: dict[str, Any]
    without_pod: dict[str, Any]
    registry_prefix: str


def prepare(cluster: NodeCluster, *, account: str, user: str, run_id: str) -> Setup:
    """Namespaces for both sides, the pull secret where the webhook does not copy it, both pod forms."""
    example = copy.deepcopy(corpus.pods()[EXAMPLE])
    example["metadata"] = {"name": EXAMPLE, "labels": {RUN_LABEL: run_id}}
    selected = create_namespace(cluster, "startup-with", {ACCOUNT_LABEL: account})
    unselected = create_namespace(cluster, "startup-without", {})
    # The webhook's writer copies the pull secret into namespaces of its account; the other side
    # gets the same credentials by hand, as a cluster without the webhook would need.
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(cluster.registry.pull_secret(PULL_SECRET, unselected, user=user))
    )
    wait_until(
        lambda: cluster.kubectl("get", "secret", PULL_SECRET, "-n", selected, check=False).returncode == 0,
        timeout=60,
        what=f"the webhook to copy {PULL_SECRET} into {selected}",
    )
    admitted = json.loads(
        cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-n", selected, "-f", "-", input=json.dumps(example)
        ).stdout
    )
    prefix = f"{cluster.registry.host}/{cluster.account}/"
    if ORIGINAL_IMAGES not in admitted["metadata"].get("annotations", {}):
        raise BenchError(f"the webhook did not rewrite {EXAMPLE} in namespace {selected}: {admitted['spec']}")
    # The other side's pod: the example with exactly the containers and pull secret the webhook
    # gives it (the apiserver's defaults are added again on create).
    without = copy.deepcopy(example)
    by_name = {c["name"]: c for c in admitted["spec"]["containers"]}
    for container in without["spec"]["containers"]:
        container["image"] = by_name[container["name"]]["image"]
        if "env" in container:
            container["env"] = by_name[container["name"]]["env"]
    without["spec"]["imagePullSecrets"] = admitted["spec"]["imagePullSecrets"]
    return Setup(selected, unselected, example, without, prefix)


def _rewritten(stored: dict[str, Any], setup: Setup) -> bool:
    spec = stored["spec"]
    return (
        all(c["image"].startswith(setup.registry_prefix) for c in spec["containers"])
        and {"name": PULL_SECRET} in (spec.get("imagePullSecrets") or [])
        and ORIGINAL_IMAGES in (stored["metadata"].get("annotations") or {})
    )


async def _start_pod(
    api: Api, watch: PodWatch, setup: Setup, side: str, pair: int, deletions: list[asyncio.Task[Any]]
) -> Sample:
    namespace = setup.with_namespace if side == "with" else setup.without_namespace
    body = copy.deepcopy(setup.with_pod if side == "with" else setup.without_pod)
    name = f"{EXAMPLE}-{pair:04d}-{side}"
    body["metadata"]["name"] = name
    tracked = watch.expect(namespace, name)
    status, stored = await api.request("POST", f"{NAMESPACES}/{namespace}/pods", body)
    posted = time.monotonic()
    if status != 201:
        raise BenchError(f"creating pod {namespace}/{name}: {status} {(stored or {}).get('message')}")
    rewritten = _rewritten(stored, setup)
    if side == "with" and not rewritten:
        raise BenchError(f"pod {namespace}/{name} was not rewritten by the webhook: {stored['spec']}")
    if side == "without" and ORIGINAL_IMAGES in (stored["metadata"].get("annotations") or {}):
        raise BenchError(
            f"pod {namespace}/{name} went through the webhook though its namespace is not selected"
        )
    await watch.wait_running(tracked, f"pod {namespace}/{name}")
    running = _ms(tracked, "running")
    assert running is not None
    deletions.append(asyncio.create_task(api.request("DELETE", f"{NAMESPACES}/{namespace}/pods/{name}")))
    return Sample(
        side=side, pair=pair, name=name, post_ms=round((posted - tracked.began) * 1000, 2),
        bound_ms=_ms(tracked, "bound"), kubelet_ms=_ms(tracked, "kubelet"), ip_ms=_ms(tracked, "ip"),
        running_ms=running, rewritten=rewritten,
    )  # fmt: skip


async def _measure(
    cluster: NodeCluster, setup: Setup, *, pods: int, warmup: int, max_pods: int, run_id: str, progress: bool
) -> list[Sample]:
    samples: list[Sample] = []
    deletions: list[asyncio.Task[Any]] = []
    async with Api(cluster.control_plane, connections=8) as api:
        watch = PodWatch(api, f"{RUN_LABEL}%3D{run_id}")
        await watch.start()
        try:
            for pair in range(warmup + pods):
                order = SIDES if pair % 2 == 0 else SIDES[::-1]
                for side in order:
                    await watch.wait_fewer_than(max_pods)
                    sample = await _start_pod(api, watch, setup, side, pair, deletions)
                    if pair >= warmup:
                        samples.append(sample)
                if progress and (pair + 1) % 20 == 0:
                    say(f"{pair + 1}/{warmup + pods} pairs")
            for status, answer in await asyncio.gather(*deletions):
                if status >= 300:
                    raise BenchError(f"deleting a pod: {status} {(answer or {}).get('message')}")
            await watch.wait_fewer_than(1)
        finally:
            await watch.stop()
            for task in deletions:
                task.cancel()
    return samples


def measure(
    cluster: NodeCluster,
    *,
    account: str,
    user: str,
    pods: int = 200,
    warmup: int = 5,
    max_pods: int = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """Start `pods` pods a side on a running node cluster whose webhook serves `account`; the report.

    `user` is the registry user of the webhook's pull secret (the side without the webhook gets a
    copy). `warmup` pairs first, not measured (the first pulls the images).
    """
    if pods < 1 or warmup < 1 or max_pods < 1:
        raise BenchError("--pods, --warmup and --max-pods must be at least 1")
    run_id = secrets.token_hex(4)
    load_at_start = procstat.loadavg()
    began = time.monotonic()
    setup = prepare(cluster, account=account, user=user, run_id=run_id)
    samples = asyncio.run(
        _measure(
            cluster, setup, pods=pods, warmup=warmup, max_pods=max_pods, run_id=run_id, progress=progress
        )
    )
    for namespace in (setup.with_namespace, setup.without_namespace):
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return report(samples, setup, pods=pods, warmup=warmup, max_pods=max_pods, load_at_start=load_at_start,
                  load_at_end=procstat.loadavg(), seconds=time.monotonic() - began)  # fmt: skip


# Figures ----------------------------------------------------------------------------------------


def distribution(values: Sequence[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "median": round(statistics.median(values), 2),
        "p90": round(percentile(values, 0.90), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def _stage_medians(samples: Sequence[Sample]) -> dict[str, float | None]:
    """Median ms of each step: create POST, then bound, kubelet, pod IP, Running (each after the last)."""
    steps: dict[str, list[float]] = {
        "post": [],
        "to_bound": [],
        "to_kubelet": [],
        "to_ip": [],
        "to_running": [],
    }
    for sample in samples:
        steps["post"].append(sample.post_ms)
        marks = [sample.post_ms, sample.bound_ms, sample.kubelet_ms, sample.ip_ms, sample.running_ms]
        for step, (before, after) in zip(list(steps)[1:], itertools.pairwise(marks), strict=True):
            if before is not None and after is not None:
                steps[step].append(max(0.0, after - before))
    return {step: round(statistics.median(values), 2) if values else None for step, values in steps.items()}


def report(
    samples: Sequence[Sample],
    setup: Setup,
    *,
    pods: int,
    warmup: int,
    max_pods: int,
    load_at_start: tuple[float, float, float],
    load_at_end: tuple[float, float, float],
    seconds: float,
) -> dict[str, Any]:
    sides: dict[str, Any] = {}
    for side in SIDES:
        mine = [s for s in samples if s.side == side]
        sides[side] = {
            "pods": len(mine),
            "rewritten": sum(s.rewritten for s in mine),
            "create_to_running_ms": distribution([s.running_ms for s in mine]),
            "create_post_ms": distribution([s.post_ms for s in mine]),
            "step_medians_ms": _stage_medians(mine),
        }
    with_ms, without_ms = sides["with"]["create_to_running_ms"], sides["without"]["create_to_running_ms"]
    by_pair = {(s.pair, s.side): s.running_ms for s in samples}
    pair_differences = [
        by_pair[(p, "with")] - by_pair[(p, "without")] for p in sorted({s.pair for s in samples})
    ]
    post_with, post_without = sides["with"]["create_post_ms"], sides["without"]["create_post_ms"]
    share = {
        "median_difference_ms": round(with_ms["median"] - without_ms["median"], 2),
        "p99_difference_ms": round(with_ms["p99"] - without_ms["p99"], 2),
        "median_difference_percent_of_with_median": round(
            100 * (with_ms["median"] - without_ms["median"]) / with_ms["median"], 2
        ),
        "p99_difference_percent_of_with_median": round(
            100 * (with_ms["p99"] - without_ms["p99"]) / with_ms["median"], 2
        ),
        "median_of_pair_differences_ms": round(statistics.median(pair_differences), 2),
        "create_post_median_difference_ms": round(post_with["median"] - post_without["median"], 2),
        "create_post_p99_difference_ms": round(post_with["p99"] - post_without["p99"], 2),
    }
    return {
        "run": {
            "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(seconds, 1),
            "pods_per_side": pods,
            "warmup_pairs": warmup,
            "max_pods": max_pods,
            "example": f"examples/pods/{EXAMPLE}.yaml",
            "image_pull_policy": "IfNotPresent (default for tagged images), warm after the warm-up",
            "load_average_at_start": list(load_at_start),
            "load_average_at_end": list(load_at_end),
            "namespaces": {"with": setup.with_namespace, "without": setup.without_namespace},
        },
        "sides": sides,
        "webhook_share": share,
        "samples": [asdict(s) for s in samples],
    }


# Output -----------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    run, sides, share = result["run"], result["sides"], result["webhook_share"]
    load_start = " / ".join(f"{x:.2f}" for x in run["load_average_at_start"])
    load_end = " / ".join(f"{x:.2f}" for x in run["load_average_at_end"])
    w, wo = sides["with"]["create_to_running_ms"], sides["without"]["create_to_running_ms"]
    out = [
        f"Run {run['finished_utc']}, {run['seconds']:.0f} s, command `make bench-node`: "
        f"{run['pods_per_side']} pods a side after {run['warmup_pairs']} warm-up pairs, at most "
        f"{run['max_pods']} of them on the node at once. Load average at start {load_start}, "
        f"at the end {load_end}.",
        "",
        "| pod create to Running, ms | pods | median | p90 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side, label in (("with", "with the webhook (rewritten)"), ("without", "without (not selected)")):
        d = sides[side]["create_to_running_ms"]
        cells = " | ".join(f"{d[k]:.1f}" for k in ("median", "p90", "p99", "max"))
        out.append(f"| {label} | {sides[side]['pods']} | {cells} |")
    out.append(
        f"| **difference** | | **{share['median_difference_ms']:+.1f}** | {w['p90'] - wo['p90']:+.1f} "
        f"| **{share['p99_difference_ms']:+.1f}** | {w['max'] - wo['max']:+.1f} |"
    )
    out += [
        "",
        f"The webhook's share: difference of the medians {share['median_difference_ms']:+.1f} ms, "
        f"{share['median_difference_percent_of_with_median']:+.2f}% of the median with the webhook; "
        f"difference of the p99s {share['p99_difference_ms']:+.1f} ms "
        f"({share['p99_difference_percent_of_with_median']:+.2f}% of that median). Median of the "
        f"per-pair differences {share['median_of_pair_differences_ms']:+.1f} ms. The create POST "
        f"alone (admission included): {share['create_post_median_difference_ms']:+.2f} ms at the "
        f"median, {share['create_post_p99_difference_ms']:+.2f} ms at p99.",
        "",
        "Median of each step (ms; each from the step before, as the watch saw them):",
        "",
        "| side | create POST | to bound | to kubelet (hostIP) | to pod IP | to Running |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side in SIDES:
        steps = sides[side]["step_medians_ms"]
        keys = ("post", "to_bound", "to_kubelet", "to_ip", "to_running")
        cells = " | ".join("-" if steps[k] is None else f"{steps[k]:.1f}" for k in keys)
        out.append(f"| {side} | {cells} |")
    return "\n".join(out)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """`out/node-results.json`, and this run's part of `out/RESULTS.md` (created when missing)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "node-results.json").write_text(json.dumps(result, indent=2) + "\n")
    path = out / "RESULTS.md"
    generated = f"{BEGIN}\n{markdown(result)}\n{END}"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    elif "\n## Results" in text:  # a section of its own before the results of `make bench`
        head, tail = text.split("\n## Results", 1)
        text = f"{head.rstrip()}\n\n{SECTION}\n\n{generated}\n\n## Results{tail}"
    else:
        text = f"{text.rstrip()}\n\n{SECTION}\n\n{generated}\n".lstrip()
    path.write_text(text)


def say(text: str) -> None:
    print(f"bench-node: {text}", flush=True)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=_at_least_one, default=200, help="measured pods a side (default 200)")
    parser.add_argument("--warmup", type=_at_least_one, default=5, help="unmeasured pairs first (default 5)")
    parser.add_argument(
        "--max-pods", type=_at_least_one, default=4, help="bench pods on the node at once (default 4)"
    )
    parser.add_argument("--out", type=Path, default=BENCH, help="where node-results.json and RESULTS.md go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Before minutes of measuring: the results must have somewhere to go.
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as error:
        print(f"bench-node: --out {args.out}: cannot write there ({error.strerror})", file=sys.stderr)
        return 2
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-node-") as scratch,
            NodeCluster(registry_users={PULLER: secrets.token_urlsafe(12)}) as cluster,
        ):
            say(f"node cluster up in {cluster.startup_seconds:.1f}s")
            with node_webhook(cluster, Path(scratch) / "serve.log", account=ACCOUNT, user=PULLER):
                say(f"webhook serving; {args.warmup} warm-up pairs, then {args.pods} pairs")
                result = measure(
                    cluster, account=ACCOUNT, user=PULLER, pods=args.pods, warmup=args.warmup,
                    max_pods=args.max_pods, progress=True,
                )  # fmt: skip
    except KeyboardInterrupt:
        print("bench-node: interrupted; the node was torn down", file=sys.stderr)
        return 130
    except (BenchError, ApiError, ControlPlaneError, RegistryError, WebhookProcessError) as error:
        # The first line says what failed; a process's log tail follows it in some errors.
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"bench-node: {lines[0]}", file=sys.stderr)
        return 1
    write_outputs(result, args.out)
    print(markdown(result))
    say(f"wrote {args.out / 'node-results.json'} and {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

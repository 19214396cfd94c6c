"""`make bench`: the admission webhook under load, run as users run it, on the local control plane.

For each configuration size K (ChaosImageRegistry resources and as many bound namespaces, created
in a fresh local control plane, plus the pull Secrets the Private ones name) a fresh
`chaos-registry serve` process (TLS, writer on, log level info) is started pinned to CPU 1; the
load generator (this process), etcd and kube-apiserver are pinned to CPU 0, so the figures are
about one server core. Once the process has settled (its writer has written the status of every
registry and the Secret copies, and it idles), per concurrency: a warm-up run whose answers are
checked, then a measured run (requests/s, latency percentiles, server CPU per 1,000 requests); per
K the server's peak RSS (VmHWM). At the largest K, the latency the webhook adds to a pod create
through the apiserver (dry run, interleaved with a namespace the webhook does not select), and
readiness as the median of the first start and two restarts (`--ready-starts`), and its p99
against the smallest K's, measured side by side in pairs (`--growth-pairs`, bench/growth.py). At
the smallest K, `--engine kopf` once at concurrency 8 for comparison.

Writes bench/results.json and the generated part of bench/RESULTS.md (the rest of that file is
kept as written).

    python -m bench.service_bench                 # the full sweep (waits for a quiet machine)
    python -m bench.service_bench --quick --no-wait --out /tmp/bench   # K=10,100, short runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import ssl
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import charts, corpus, growth, procstat, versus_go
from bench.apiserver import NAMESPACES, REGISTRIES, Api, added_latency
from bench.loadgen import LoadResult, client_ssl_context, run_load
from controlplane import ControlPlane, ensure_binaries
from controlplane.webhook import WebhookProcess, WebhookProcessError

BENCH = Path(__file__).resolve().parent
CRD_FILE = corpus.REPO / "charts/chaos-registry-webhook/crds/chaosimageregistries.chaosregistry.io.yaml"
WEBHOOK_NAMESPACE = corpus.WEBHOOK_NAMESPACE
CONFIG_NAME = "chaos-registry-webhook"
UNSELECTED = "bench-unselected"
HANDLER_PATH = "/mutate-pods"
SERVER_CPU, CLIENT_CPU = 1, 0
ALL_CPUS = set(range(os.cpu_count() or 1))
BEGIN, END = "<!-- BEGIN GENERATED: make bench rewrites this part -->", "<!-- END GENERATED -->"

# Issue 6 targets on the 2-core machine.
TARGET_RPS_C8 = 2000.0
TARGET_P99_C1_MS = 5.0
TARGET_P99_C8_MS = 15.0
TARGET_P99_GROWTH = 0.10
TARGET_RSS_MIB = 150.0
TARGET_ADDED_P50_MS = 2.0
# Issue 15 targets: at or above the Go reference per core; the largest configuration.
TARGET_RATIO_VS_GO = 1.0
TARGET_RSS_LARGEST_MIB = 300.0
TARGET_READY_LARGEST_S = 10.0
LARGEST_SCOPES = 100_000
# A cell during which other processes took more of the server's CPU than this is measured again.
MAX_OTHERS_SHARE = 0.05
# A run during which etcd, kube-apiserver and the kernel took more of the load generator's CPU than
# this is measured again: idle they take 0-4% of it, but at K = 100,000 they have taken most of it
# for a minute at times, and the client then measures its own waiting (a run at 30% client and 60%
# server busy measured p99 5.4 ms where 1.5 ms was usual).
MAX_CONTROL_PLANE_SHARE = 0.10
# The longest wait, before measuring a disturbed run again, for both cores to be quiet.
QUIET_WAIT_LIMIT = 120.0


@dataclass
class Cell:
    """One measured run: an engine, a concurrency, a configuration size."""

    engine: str
    concurrency: int
    scopes: int
    result: LoadResult
    window: float  # wall seconds over which the CPU figures were taken
    cpu_seconds: float
    client_cpu_seconds: float
    others_cpu_seconds: float  # what other processes (and the kernel) took on the server's core
    control_plane_cpu_seconds: float = 0.0  # what etcd, kube-apiserver and the kernel took on the client's
    rss_mib: float = 0.0
    attempts: int = 1
    p99_repeats: tuple[float, ...] = ()  # p99 (ms) of each measured repeat; this cell is the median one

    @property
    def others_share(self) -> float:
        return self.others_cpu_seconds / self.window if self.window else 0.0

    @property
    def control_plane_share(self) -> float:
        return self.control_plane_cpu_seconds / self.window if self.window else 0.0

    def disturbance(self) -> str | None:
        """What spoiled this run, if anything did."""
        if self.others_share > MAX_OTHERS_SHARE:
            return f"other processes took {self.others_share:.0%} of CPU {SERVER_CPU}"
        if self.control_plane_share > MAX_CONTROL_PLANE_SHARE:
            return (
                f"etcd, kube-apiserver and the kernel took {self.control_plane_share:.0%} of CPU "
                f"{CLIENT_CPU}, the load generator's"
            )
        return None

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "concurrency": self.concurrency,
            "scopes": self.scopes,
            "rps": round(r.rps, 1),
            "p50_ms": round(r.percentile_ms(0.50), 3),
            "p90_ms": round(r.percentile_ms(0.90), 3),
            "p99_ms": round(r.percentile_ms(0.99), 3),
            "max_ms": round(r.max_ms(), 3),
            "cpu_ms_per_1k": round(self.cpu_seconds * 1e6 / r.count, 1) if r.count else None,
            "rss_mib": round(self.rss_mib, 1),
        }

    def share(self, seconds: float) -> str:
        return f"{seconds / self.window:.0%}" if self.window else "-"


@dataclass
class Start:
    """How one serve process started: readiness, then settling (writer done, idle)."""

    writer: bool
    engine: str
    scopes: int
    ready_seconds: float
    settle_seconds: float
    cpu_seconds: float
    statuses: int
    copies: int
    rss_ready_mib: float
    rss_settled_mib: float
    rss_end_mib: float = 0.0
    peak_rss_mib: float = 0.0
    # Every start's readiness where the process was started more than once (--ready-starts): the
    # first start's, then each restart's; ready_seconds is then their median.
    ready_runs: tuple[float, ...] = ()

    def add_restarts(self, restarts: Sequence[float]) -> None:
        """Readiness becomes the median of this start's and the restarts' (of an even number of
        starts, the higher middle one: always one of the starts, and not flattering)."""
        self.ready_runs = (self.ready_seconds, *restarts)
        self.ready_seconds = statistics.median_high(self.ready_runs)

    def ready_text(self) -> str:
        runs = ", ".join(f"{seconds:.1f}" for seconds in self.ready_runs)
        return f"{self.ready_seconds:.1f} ({runs})" if len(self.ready_runs) > 1 else f"{self.ready_seconds}"


@dataclass
class Report:
    started: str
    load_at_start: tuple[float, float, float]
    waited_for_quiet: float
    command: str
    cells: list[Cell] = field(default_factory=list)
    engine_cells: list[Cell] = field(default_factory=list)
    setup: list[dict[str, Any]] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    versus: list[versus_go.VersusCell] = field(default_factory=list)
    growth: list[growth.GrowthCell] = field(default_factory=list)
    charts_dir: Path = BENCH / "charts"
    go_reference_rss_mib: float = 0.0
    checks: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    apiserver: dict[str, float] = field(default_factory=dict)
    apiserver_scopes: int = 0
    duration: float = 0.0
    load_at_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Taken before the bench pins itself to one CPU (nproc counts the CPUs a process may use).
    machine: dict[str, str] = field(default_factory=procstat.machine_description)


class PinnedWebhook(WebhookProcess):
    """`chaos-registry serve` pinned to one CPU from its first instruction (exec keeps the pid)."""

    def __init__(self, *args: Any, cpu: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cpu = cpu

    def command(self) -> list[str]:
        original = super().command()
        # `python -c CODE ARGS...` has sys.argv ["-c", ARGS...]: exec the interpreter with ARGS.
        launcher = (
            f"import os, sys; os.sched_setaffinity(0, {{{self.cpu}}}); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        return [original[0], "-c", launcher, *original[1:]]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# Set-up -----------------------------------------------------------------------------------------


def pin_control_plane(control_plane: ControlPlane, cpus: set[int]) -> None:
    for pid in control_plane.pids.values():
        procstat.pin(pid, cpus)


async def prepare_cluster(control_plane: ControlPlane, api: Api) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/chaosimageregistries.chaosregistry.io"
    )
    for name in (WEBHOOK_NAMESPACE, UNSELECTED):
        await api.create(NAMESPACES, {"metadata": {"name": name}})
    for name in corpus.PULL_SECRETS:
        await api.create(f"{NAMESPACES}/{WEBHOOK_NAMESPACE}/secrets", corpus.pull_secret(name))


async def build_templates(api: Api) -> dict[str, corpus.Template]:
    """Each pod defaulted by the apiserver (dry run where no webhook runs), as admission sees it."""
    templates = {}
    for kind, pod in corpus.pods().items():
        defaulted = await api.dry_run_pod(UNSELECTED, pod)
        templates[kind] = corpus.Template(kind, corpus.admission_object(defaulted, pod))
    return templates


async def grow_configuration(api: Api, have: int, want: int) -> dict[str, Any]:
    configuration = corpus.Configuration(want)
    namespaces = configuration.namespaces(start=have)
    registries = configuration.registries(start=have)
    ns_seconds = await api.create_many(NAMESPACES, namespaces)
    reg_seconds = await api.create_many(REGISTRIES, registries)
    return {
        "scopes": want,
        "created_namespaces": len(namespaces),
        "namespaces_seconds": round(ns_seconds, 1),
        "created_registries": len(registries),
        "registries_seconds": round(reg_seconds, 1),
    }


@contextlib.asynccontextmanager
async def serve(
    control_plane: ControlPlane,
    logs: Path,
    engine: str,
    scopes: int,
    settle_limit: float,
    writer: bool = True,
) -> AsyncIterator[tuple[PinnedWebhook, Start]]:
    """A fresh serve process, ready and settled: its writer done, its CPU idle for 2 s."""
    log = logs / f"serve-{engine}-{scopes}.log"
    process = _serve_process(control_plane, log, engine, writer)
    began = time.perf_counter()
    await asyncio.to_thread(process.start, 180.0)
    try:
        ready = time.perf_counter() - began
        rss_ready = procstat.rss_mib(process.pid)
        settle = await asyncio.to_thread(procstat.wait_idle, process.pid, 0.05, 2.0, settle_limit, log)
        text = log.read_text(errors="replace")
        start = Start(
            writer=writer,
            engine=engine,
            scopes=scopes,
            ready_seconds=round(ready, 1),
            settle_seconds=round(settle, 1),
            cpu_seconds=round(procstat.cpu_seconds(process.pid), 1),
            statuses=text.count("updated status of"),
            copies=text.count("created Secret copy"),
            rss_ready_mib=round(rss_ready, 1),
            rss_settled_mib=round(procstat.rss_mib(process.pid), 1),
        )
        say(
            f"serve ({engine}, K={scopes:,}) ready in {ready:.1f} s, settled {settle:.0f} s later "
            f"({start.cpu_seconds} CPU s, {start.statuses} statuses and {start.copies} Secret copies "
            f"written), RSS {start.rss_settled_mib} MiB"
        )
        yield process, start
        start.rss_end_mib = round(procstat.rss_mib(process.pid), 1)
        start.peak_rss_mib = round(procstat.peak_rss_mib(process.pid), 1)
    finally:
        await asyncio.to_thread(process.stop)


def _serve_process(control_plane: ControlPlane, log: Path, engine: str, writer: bool) -> PinnedWebhook:
    log.unlink(missing_ok=True)
    return PinnedWebhook(
        control_plane.kubeconfig,
        log,
        namespace=WEBHOOK_NAMESPACE,
        config_name=CONFIG_NAME,
        extra_args=["--engine", engine, *([] if writer else ["--no-writer"])],
        cpu=SERVER_CPU,
    )


async def restart_until_ready(control_plane: ControlPlane, logs: Path, start: Start, run: int) -> float:
    """Seconds from the start of one more serve process like `start`'s to its readyz, then stopped.

    Readiness at K = 100,000 is mostly the apiserver's stream of every object, whose cost moves by
    half from one listing to the next with its garbage collector (RESULTS.md): one start says
    little, the median of a few says what a restart costs."""
    log = logs / f"serve-{start.engine}-{start.scopes}-start-{run}.log"
    process = _serve_process(control_plane, log, start.engine, start.writer)
    began = time.perf_counter()
    try:
        await asyncio.to_thread(process.start, 180.0)
        ready = time.perf_counter() - began
    finally:
        await asyncio.to_thread(process.stop)
    say(f"serve ({start.engine}, K={start.scopes:,}) start {run}: ready in {ready:.1f} s")
    return round(ready, 1)


# Measuring --------------------------------------------------------------------------------------


def check_answer(tag: bytes, status: int, body: bytes) -> tuple[bool, bool]:
    """(carries a patch, refused) of one admission answer."""
    if status != 200:
        return False, True
    response = orjson.loads(body)["response"]
    return "patch" in response, not response.get("allowed", False)


async def measure(
    webhook: PinnedWebhook,
    ssl_context: ssl.SSLContext,
    stream: corpus.RequestStream,
    *,
    engine: str,
    scopes: int,
    concurrency: int,
    warmup: float,
    duration: float,
    checks: dict[str, list[int]],
) -> Cell:
    """A checked warm-up run, then the measured run.

    The warm-up sends the stream's whole cycle of (pod, namespace) picks once (at most `warmup`
    seconds), so the measured run sees the steady state of a webhook that has admitted these
    pods before: the core caches image targets per scope, and with K = 10,000 scopes a short
    warm-up would leave most pairs cold (the cold path is the first-touch sweep's figure).
    """
    common: dict[str, Any] = {"concurrency": concurrency, "ssl_context": ssl_context}
    if warmup > 0:
        warm = await run_load(
            webhook.port,
            HANDLER_PATH,
            stream,
            duration=warmup,
            max_requests=len(stream),
            check=check_answer,
            **common,
        )
        for tag, counts in warm.checked.items():
            total = checks.setdefault(tag.decode(), [0, 0, 0])
            for i, n in enumerate(counts):
                total[i] += n
    server_before = procstat.cpu_seconds(webhook.pid)
    core_before = procstat.cpu_busy_seconds(SERVER_CPU)
    client_core_before = procstat.cpu_busy_seconds(CLIENT_CPU)
    client_before = time.process_time()
    began = time.perf_counter()
    result = await run_load(
        webhook.port, HANDLER_PATH, stream, duration=duration, max_requests=10**7, **common
    )
    window = time.perf_counter() - began
    cpu = procstat.cpu_seconds(webhook.pid) - server_before
    client_cpu = time.process_time() - client_before
    cell = Cell(
        engine=engine,
        concurrency=concurrency,
        scopes=scopes,
        result=result,
        window=window,
        cpu_seconds=cpu,
        client_cpu_seconds=client_cpu,
        others_cpu_seconds=max(0.0, procstat.cpu_busy_seconds(SERVER_CPU) - core_before - cpu),
        control_plane_cpu_seconds=max(
            0.0, procstat.cpu_busy_seconds(CLIENT_CPU) - client_core_before - client_cpu
        ),
    )
    row = cell.row()
    say(
        f"{engine} K={scopes:,} c={concurrency}: {row['rps']:,.0f} req/s, p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms, max {row['max_ms']} ms, {row['cpu_ms_per_1k']} CPU ms/1k; server "
        f"busy {cell.share(cell.cpu_seconds)}, client {cell.share(cell.client_cpu_seconds)}, others on "
        f"CPU {SERVER_CPU} {cell.share(cell.others_cpu_seconds)}, control plane on CPU {CLIENT_CPU} "
        f"{cell.share(cell.control_plane_cpu_seconds)}"
    )
    if result.errors or set(result.statuses) != {200}:
        raise RuntimeError(f"the webhook failed requests: {result.errors} errors, statuses {result.statuses}")
    return cell


async def measure_undisturbed(attempts_allowed: int, *args: Any, warmup: float, **kwargs: Any) -> Cell:
    """`measure`, again while other processes on either core spoiled the run (at most
    `attempts_allowed` times in all, the warm-up only before the first): the least disturbed."""
    attempts: list[Cell] = []
    while len(attempts) < attempts_allowed:
        attempts.append(await measure(*args, warmup=warmup if not attempts else 0.0, **kwargs))
        disturbance = attempts[-1].disturbance()
        if disturbance is None:
            break
        if len(attempts) == attempts_allowed:
            say(f"{disturbance}: kept, the least disturbed of {attempts_allowed} attempts")
            break
        # A disturbance can last minutes (the control plane held CPU 0 at 70% through most of the
        # 14:00 run's c = 8 pairs): attempts made straight after each other all ran into it.
        waited = await asyncio.to_thread(
            procstat.wait_cpus_quiet,
            {SERVER_CPU: MAX_OTHERS_SHARE, CLIENT_CPU: MAX_CONTROL_PLANE_SHARE},
            limit=QUIET_WAIT_LIMIT,
        )
        say(f"{disturbance}: again, after {waited:.0f} s waiting for both cores to be quiet")
    run = min(attempts, key=lambda c: c.others_share + c.control_plane_share)
    run.attempts = len(attempts)
    return run


async def run(args: argparse.Namespace, report: Report) -> None:
    began = time.perf_counter()
    bin_dir = ensure_binaries(quiet=True)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    go_webhook, go_loadgen = versus_go.build() if args.versus_go else (None, None)
    procstat.pin(os.getpid(), {CLIENT_CPU})
    with contextlib.ExitStack() as stack:
        go_reference = None
        if go_webhook is not None and go_loadgen is not None:
            go_reference = stack.enter_context(versus_go.GoReference(go_webhook, logs / "goref", SERVER_CPU))
            args.go_loadgen = versus_go.LoadGenerator(go_loadgen, CLIENT_CPU)
        args.go_reference = go_reference
        await run_sweep(args, report, bin_dir, logs)
        if go_reference is not None:
            report.go_reference_rss_mib = round(go_reference.rss_mib(), 1)
    report.duration = time.perf_counter() - began


async def run_sweep(args: argparse.Namespace, report: Report, bin_dir: Path, logs: Path) -> None:
    with ControlPlane(bin_dir) as control_plane:
        async with Api(control_plane) as api:
            await prepare_cluster(control_plane, api)
            templates = await build_templates(api)
            have = 0
            for scopes in sorted(args.scopes):
                pin_control_plane(control_plane, ALL_CPUS)  # creation is the apiserver's work
                setup = await grow_configuration(api, have, scopes)
                have = scopes
                report.setup.append(setup)
                say(f"configuration K={scopes:,}: {setup}")
                pin_control_plane(control_plane, {CLIENT_CPU})
                namespaces = corpus.Configuration(scopes).namespace_names()
                engines = ["direct"]
                if scopes == min(args.scopes) and args.compare_engines:
                    engines.append("kopf")
                for engine in engines:
                    await run_engine(args, report, control_plane, api, logs, templates, namespaces, engine)


async def run_engine(
    args: argparse.Namespace,
    report: Report,
    control_plane: ControlPlane,
    api: Api,
    logs: Path,
    templates: dict[str, corpus.Template],
    namespaces: list[str],
    engine: str,
) -> None:
    scopes = len(namespaces)
    run_id = len(report.starts) + 1
    # The writer's settling at the largest K is a separate measurement (--writer-at-largest).
    writer = scopes < LARGEST_SCOPES or args.writer_at_largest
    async with serve(control_plane, logs, engine, scopes, args.settle_limit, writer) as (webhook, start):
        report.starts.append(start)
        ca_bundle = await api.webhook_ca_bundle(CONFIG_NAME)
        ssl_context = client_ssl_context(ca_bundle)
        checks = report.checks.setdefault(scopes, {}) if engine == "direct" else {}
        # First touch of every scope (the per-scope resolution is memoised), answers checked.
        sweep = corpus.RequestStream.sweep(templates, namespaces, run_id * 16)
        first = await run_load(
            webhook.port,
            HANDLER_PATH,
            sweep,
            concurrency=8,
            duration=60.0,
            max_requests=len(sweep),
            ssl_context=ssl_context,
            check=check_answer,
        )
        report.sweeps.append(
            {
                "engine": engine,
                "scopes": scopes,
                "requests": first.count,
                "seconds": round(first.elapsed, 2),
                "p99_ms": round(first.percentile_ms(0.99), 2),
                "patched": sum(c[1] for c in first.checked.values()),
                "refused": sum(c[2] for c in first.checked.values()),
            }
        )
        cells = []
        for offset, concurrency in enumerate([8] if engine == "kopf" else args.concurrency, start=1):
            stream = corpus.RequestStream.weighted(
                templates, namespaces, seed=scopes * 100 + concurrency, run=run_id * 16 + offset
            )
            # A p99 over 5 s moves by a tenth of a millisecond from run to run at c=1 (the same
            # process gave 0.43-0.58 ms in four runs in a row): the cell is the median of --repeats
            # measured runs, the first after the warm-up, the others straight after it.
            repeats: list[Cell] = []
            for _ in range(args.repeats):
                repeats.append(
                    await measure_undisturbed(
                        args.attempts,
                        webhook,
                        ssl_context,
                        stream,
                        engine=engine,
                        scopes=scopes,
                        concurrency=concurrency,
                        warmup=args.warmup if not repeats else 0.0,
                        duration=args.duration,
                        checks=checks,
                    )
                )
            by_p99 = sorted(repeats, key=lambda c: c.result.percentile_ms(0.99))
            cell = by_p99[len(by_p99) // 2]
            cell.p99_repeats = tuple(round(c.result.percentile_ms(0.99), 3) for c in repeats)
            cells.append(cell)
        if engine == "direct" and scopes == min(args.scopes) and args.go_reference is not None:
            report.versus = await versus(args, logs, webhook, ca_bundle, templates, run_id)
        if engine == "direct" and scopes == max(args.scopes) and args.pairs:
            report.apiserver = await apiserver_latency(api, namespaces, args.pairs)
            report.apiserver_scopes = scopes
            a = report.apiserver
            say(
                f"through the apiserver: with the webhook p50 {a['with_p50_ms']:.2f} ms, without "
                f"{a['without_p50_ms']:.2f} ms: added p50 {a['apiserver_added_ms_p50']:.2f} ms, "
                f"p99 {a['apiserver_added_ms_p99']:.2f} ms"
            )
        if engine == "direct" and scopes == max(args.scopes) > min(args.scopes) and args.growth_pairs:
            report.growth = await growth_pairs(
                args, logs, control_plane.bin_dir, templates, webhook, ssl_context, namespaces, run_id
            )
        peak = procstat.peak_rss_mib(webhook.pid)
        say(
            f"serve ({engine}, K={scopes:,}) peak RSS {peak:.1f} MiB, now {procstat.rss_mib(webhook.pid):.1f}"
        )
        for cell in cells:
            cell.rss_mib = peak
        (report.cells if engine == "direct" else report.engine_cells).extend(cells)
    if scopes == LARGEST_SCOPES and engine == "direct" and args.ready_starts > 1:
        restarts = []
        for number in range(2, args.ready_starts + 1):
            try:
                restarts.append(await restart_until_ready(control_plane, logs, start, number))
            except WebhookProcessError as error:  # keep the cells measured; say why a start is missing
                say(f"serve (K={scopes:,}) start {number} failed: {' '.join(str(error).split())[:300]}")
        start.add_restarts(restarts)


async def versus(
    args: argparse.Namespace,
    logs: Path,
    webhook: PinnedWebhook,
    ca_bundle: bytes | None,
    templates: dict[str, corpus.Template],
    run_id: int,
) -> list[versus_go.VersusCell]:
    """Ours against the Go reference, alternately, on the two chaos pod bodies."""
    if ca_bundle is None:
        raise RuntimeError(f"the webhook configuration {CONFIG_NAME} has no caBundle")
    work = logs / "versus"
    work.mkdir(parents=True, exist_ok=True)
    ours_ca = work / "ours-ca.pem"
    ours_ca.write_bytes(ca_bundle)
    go = args.go_reference
    targets = [
        versus_go.Target("go", go.port, go.pid, go.ca_file, SERVER_CPU),
        versus_go.Target("ours", webhook.port, webhook.pid, ours_ca, SERVER_CPU),
    ]
    namespaces = versus_go.private_namespaces()
    bodies = {
        kind: versus_go.write_bodies(templates[kind], namespaces, work / f"{kind}.jsonl", run_id * 16 + 15)
        for kind in versus_go.BODIES
    }
    return await asyncio.to_thread(
        versus_go.compare,
        args.go_loadgen,
        targets,
        bodies,
        scopes=min(args.scopes),
        concurrencies=args.concurrency,
        repeats=args.versus_repeats,
        duration=args.versus_duration,
        warmup=args.versus_warmup,
    )


async def apiserver_latency(api: Api, namespaces: list[str], pairs: int) -> dict[str, float]:
    pod = corpus.pods()["hce-fault"]
    # An infrastructure-level namespace (the deepest resolution). Every bench registry names an
    # example.com server, so a rewritten pod mentions it; the unselected namespace keeps docker.io.
    selected = next(n for n in namespaces if n.count("-") == 4)
    expect = ".example.com"
    deadline = time.monotonic() + 30
    while True:  # the apiserver loads a new webhook configuration asynchronously
        stored = await api.dry_run_pod(selected, pod)
        if expect in orjson.dumps(stored["spec"]).decode():
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the apiserver never called the webhook for {selected}")
        await asyncio.sleep(0.2)
    return await added_latency(api, pod, selected, UNSELECTED, pairs=pairs, warmup=30, expect=expect)


async def growth_pairs(
    args: argparse.Namespace,
    logs: Path,
    bin_dir: Path,
    templates: dict[str, corpus.Template],
    large: PinnedWebhook,
    large_ssl: ssl.SSLContext,
    large_namespaces: list[str],
    run_id: int,
) -> list[growth.GrowthCell]:
    """serve at the largest K against serve at the smallest, measured alternately (bench/growth.py)."""
    small_scopes, large_scopes = min(args.scopes), len(large_namespaces)
    small_namespaces = corpus.Configuration(small_scopes).namespace_names()
    folder = logs / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    with ControlPlane(bin_dir) as reference:
        pin_control_plane(reference, {CLIENT_CPU})
        async with Api(reference) as api:
            await prepare_cluster(reference, api)
            await grow_configuration(api, 0, small_scopes)
            async with serve(reference, folder, "direct", small_scopes, args.settle_limit) as (small, _):
                small_ssl = client_ssl_context(await api.webhook_ca_bundle(CONFIG_NAME))
                sides = [
                    (small, small_ssl, small_scopes, small_namespaces),
                    (large, large_ssl, large_scopes, large_namespaces),
                ]
                cells = []
                for offset, concurrency in enumerate(args.concurrency, start=9):
                    streams = [
                        corpus.RequestStream.weighted(
                            templates, names, seed=scopes * 100 + concurrency, run=run_id * 16 + offset
                        )
                        for _, _, scopes, names in sides
                    ]
                    cell = growth.GrowthCell(concurrency, small_scopes, large_scopes)
                    for number in range(args.growth_pairs):
                        rows: dict[int, dict[str, Any]] = {}
                        for side in (0, 1) if number % 2 == 0 else (1, 0):
                            webhook, context, scopes, _ = sides[side]
                            run = await measure_undisturbed(
                                args.attempts,
                                webhook,
                                context,
                                streams[side],
                                engine="direct",
                                scopes=scopes,
                                concurrency=concurrency,
                                warmup=args.warmup if number == 0 else 0.0,
                                duration=args.duration,
                                checks={},
                            )
                            rows[side] = run.row()
                        cell.pairs.append((rows[0], rows[1]))
                    row = cell.row()
                    say(
                        f"p99 growth K={small_scopes:,} -> {large_scopes:,}, c={concurrency}, in pairs: "
                        f"{row['reference_p99_ms']} -> {row['p99_ms']} ms, {row['p99_growth']:+.1%} "
                        f"(pairs {', '.join(f'{g:+.1%}' for g in row['p99_growth_runs'])})"
                    )
                    cells.append(cell)
                return cells


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


# Output -----------------------------------------------------------------------------------------


def write_results(report: Report, path: Path) -> None:
    rows: list[dict[str, Any]] = [cell.row() for cell in report.cells]
    rows += [cell.row() for cell in report.versus]
    rows += [cell.row() for cell in report.growth]
    if report.apiserver:
        rows.append(
            {
                "apiserver_added_ms_p50": round(report.apiserver["apiserver_added_ms_p50"], 3),
                "apiserver_added_ms_p99": round(report.apiserver["apiserver_added_ms_p99"], 3),
            }
        )
    path.write_text(json.dumps(rows, indent=2) + "\n")


def _row(report: Report, scopes: int, concurrency: int) -> dict[str, Any] | None:
    for cell in report.cells:
        if cell.scopes == scopes and cell.concurrency == concurrency:
            return cell.row()
    return None


def sequential_growth(report: Report, small: int, large: int) -> list[tuple[float, int, float, float]]:
    """(growth, concurrency, p99 at `small`, p99 at `large`) from the sweep's cells, minutes apart."""
    found = []
    for concurrency in sorted({c.concurrency for c in report.cells}):
        a, b = _row(report, small, concurrency), _row(report, large, concurrency)
        if a and b:
            found.append((b["p99_ms"] / a["p99_ms"] - 1, concurrency, a["p99_ms"], b["p99_ms"]))
    return found


def growth_text(growths: Sequence[tuple[float, int, float, float]]) -> str:
    """(growth, concurrency, p99 before, p99 after) as the targets and RESULTS.md say it."""
    return "; ".join(f"c={c}: {a:.2f} -> {b:.2f} ms ({g:+.1%})" for g, c, a, b in growths)


def paired_growth_target(cells: Sequence[growth.GrowthCell]) -> tuple[str, str, str, bool]:
    """The target row of p99 growth: met when the pairs' median at c=8 is within +10% (issue 15's
    bound; the other concurrencies are shown beside it)."""
    first = cells[0]
    rows = [c.row() for c in cells]
    text = growth_text(
        [(r["p99_growth"], r["concurrency"], r["reference_p99_ms"], r["p99_ms"]) for r in rows]
    )
    at_c8 = [c.growth for c in cells if c.concurrency == 8]
    name = (
        f"p99 at c=8, K={first.large:,} vs K={first.small:,}, measured in pairs (median of "
        f"{len(first.pairs)})"
    )
    return name, "<= +10%", text, bool(at_c8) and at_c8[0] <= TARGET_P99_GROWTH


def targets(report: Report) -> list[tuple[str, str, str, bool]]:
    """(target, limit, measured, met) for each target of issue 6 that this run measured."""
    rows: list[tuple[str, str, str, bool]] = []
    if not report.cells:
        return rows
    small, large = min(c.scopes for c in report.cells), max(c.scopes for c in report.cells)
    c8 = [c.row() for c in report.cells if c.concurrency == 8]
    if c8:
        worst = min(c8, key=lambda r: r["rps"])
        measured = f"{worst['rps']:,.0f} (lowest over K, at K={worst['scopes']:,})"
        rows.append(("requests/s at c=8, TLS, one server core", ">= 2,000", measured, worst["rps"] >= 2000))
    for concurrency, limit in ((1, TARGET_P99_C1_MS), (8, TARGET_P99_C8_MS)):
        cells = [c.row() for c in report.cells if c.concurrency == concurrency]
        if cells:
            worst = max(cells, key=lambda r: r["p99_ms"])
            measured = f"{worst['p99_ms']:.2f} ms (highest over K, at K={worst['scopes']:,})"
            rows.append((f"p99 at c={concurrency}", f"<= {limit:g} ms", measured, worst["p99_ms"] <= limit))
    if report.growth:
        rows.append(paired_growth_target(report.growth))
    elif small != large:
        sequential = sequential_growth(report, small, large)
        if sequential:
            text = growth_text(sequential)
            met = all(g <= TARGET_P99_GROWTH for g, *_ in sequential)
            rows.append((f"p99 at K={large:,} vs K={small:,}", "<= +10%", text, met))
    if small != large:
        for scopes, limit in ((10_000, TARGET_RSS_MIB), (LARGEST_SCOPES, TARGET_RSS_LARGEST_MIB)):
            peaks = [c.rss_mib for c in report.cells if c.scopes == scopes]
            if peaks:
                rows.append(
                    (
                        f"peak RSS (VmHWM) at K={scopes:,}",
                        f"<= {limit:g} MiB",
                        f"{peaks[0]:.1f} MiB",
                        peaks[0] <= limit,
                    )
                )
        for start in report.starts:
            if start.scopes == LARGEST_SCOPES and start.engine == "direct":
                rows.append(
                    (
                        f"ready (readyz) after start at K={LARGEST_SCOPES:,}"
                        + (
                            f", median of {len(start.ready_runs)} starts" if len(start.ready_runs) > 1 else ""
                        ),
                        f"<= {TARGET_READY_LARGEST_S:g} s",
                        f"{start.ready_text()} s",
                        start.ready_seconds <= TARGET_READY_LARGEST_S,
                    )
                )
    for cell in report.versus:
        if cell.concurrency in (1, 8):
            r = cell.row()
            rows.append(
                (
                    f"ratio vs the Go reference, {cell.body}, c={cell.concurrency}",
                    f">= {TARGET_RATIO_VS_GO:g}",
                    f"{r['ratio_vs_go']:.2f} ({r['rps']:,.0f} / {r['go_reference_rps']:,.0f} req/s)",
                    r["ratio_vs_go"] >= TARGET_RATIO_VS_GO,
                )
            )
    if report.apiserver:
        added = report.apiserver["apiserver_added_ms_p50"]
        measured = f"{added:.2f} ms (p99 {report.apiserver['apiserver_added_ms_p99']:.2f} ms)"
        rows.append(("latency added through the apiserver, median", "<= 2 ms", measured, added <= 2.0))
    return rows


def markdown(report: Report) -> str:
    machine = report.machine
    out: list[str] = []
    w = out.append
    load, end = report.load_at_start, report.load_at_end
    w(
        f"Run {report.started}, {report.duration:.0f} s in all, command `{report.command}`. Load average "
        f"at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (waited {report.waited_for_quiet:.0f} s "
        f"for the 1-minute figure to fall below 0.7); at the end {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f}."
    )
    w("")
    w("### Machine")
    w("")
    w("```")
    w(f"nproc: {machine['nproc']}   kernel: {machine['kernel']}   python: {sys.version.split()[0]}")
    w(machine["lscpu"])
    w(machine["free"])
    w("```")
    w("")
    w(
        f"Pinning: `chaos-registry serve` on CPU {SERVER_CPU}; the load generator, etcd and kube-apiserver "
        f'on CPU {CLIENT_CPU}. Every figure below is about one server core. "others" is the share of CPU '
        f"{SERVER_CPU} that other processes (other engineers' test runs) took during the measured run; "
        f'a run where they took over {MAX_OTHERS_SHARE:.0%} is measured again ("attempts"), as is one '
        f"where etcd, kube-apiserver and the kernel took over {MAX_CONTROL_PLANE_SHARE:.0%} of CPU "
        f'{CLIENT_CPU} ("control plane"; the load generator then measures its own waiting), once both '
        f"cores have been quiet for a second (at most {QUIET_WAIT_LIMIT:.0f} s of waiting), and the "
        'attempt they disturbed least is kept. Each cell is measured several times in a row ("p99 of '
        'each run"); the row shows the run of median p99.'
    )
    w("")
    w("### Targets")
    w("")
    w("| target | limit | measured | met |")
    w("| --- | --- | --- | --- |")
    for name, limit, measured, met in targets(report):
        w(f"| {name} | {limit} | {measured} | {'yes' if met else '**no**'} |")
    w("")
    w("### Admission requests straight to the webhook over TLS (keep-alive, one connection per client)")
    w("")
    w(
        "| K | c | req/s | p50 ms | p90 ms | p99 ms | p99 of each run ms | max ms | server CPU ms / 1k | "
        "server busy | client busy | others | control plane | attempts | peak RSS MiB | requests |"
    )
    w("|" + " ---: |" * 16)
    for cell in [*report.cells, *report.engine_cells]:
        r = cell.row()
        label = f"{r['scopes']:,}" + (" (engine kopf)" if cell.engine == "kopf" else "")
        w(
            f"| {label} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {', '.join(f'{p:.2f}' for p in cell.p99_repeats) or '-'} | "
            f"{r['max_ms']:.2f} | {r['cpu_ms_per_1k']:.0f} | "
            f"{cell.share(cell.cpu_seconds)} | {cell.share(cell.client_cpu_seconds)} | "
            f"{cell.share(cell.others_cpu_seconds)} | {cell.share(cell.control_plane_cpu_seconds)} | "
            f"{cell.attempts} | {r['rss_mib']:.1f} | "
            f"{cell.result.count:,} |"
        )
    w("")
    if report.growth:
        w(growth_markdown(report))
    if report.versus:
        w(versus_markdown(report))
    if report.engine_cells:
        kopf = report.engine_cells[0].row()
        direct = _row(report, report.engine_cells[0].scopes, 8)
        if direct:
            w(
                f"Engines at K={kopf['scopes']:,}, c=8: direct {direct['rps']:,.0f} req/s, p99 "
                f"{direct['p99_ms']:.2f} ms, {direct['cpu_ms_per_1k']:.0f} CPU ms per 1k; kopf "
                f"{kopf['rps']:,.0f} req/s, p99 {kopf['p99_ms']:.2f} ms, {kopf['cpu_ms_per_1k']:.0f} CPU ms "
                f"per 1k ({kopf['cpu_ms_per_1k'] / direct['cpu_ms_per_1k']:.1f}x the CPU per request)."
            )
            w("")
    if report.apiserver:
        a = report.apiserver
        w(
            f"### Through the apiserver (K={report.apiserver_scopes:,}; dry-run creates of the HCE fault "
            f"pod, {int(a['pairs'])} interleaved pairs, one request at a time)"
        )
        w("")
        w("| namespace | p50 ms | p99 ms |")
        w("| --- | ---: | ---: |")
        w(f"| selected by the webhook (pod rewritten) | {a['with_p50_ms']:.2f} | {a['with_p99_ms']:.2f} |")
        w(f"| not selected | {a['without_p50_ms']:.2f} | {a['without_p99_ms']:.2f} |")
        added_p50, added_p99 = a["apiserver_added_ms_p50"], a["apiserver_added_ms_p99"]
        w(f"| **added by the webhook** | **{added_p50:.2f}** | **{added_p99:.2f}** |")
        w("")
    if report.cells:
        w("### Charts")
        w("")
        for name, title in charts.CHARTS:
            if (report.charts_dir / name).exists():
                w(f"![{title}](charts/{name})")
                w("")
    w("### Start-up of each serve process")
    w("")
    w(
        "| engine | writer | K | ready s | settled after s | CPU s until settled | statuses written | "
        "Secret copies made | RSS at ready MiB | RSS settled MiB | RSS at end MiB | peak RSS MiB |"
    )
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in report.starts:
        w(
            f"| {s.engine} | {'on' if s.writer else 'off'} | {s.scopes:,} | {s.ready_text()} | "
            f"{s.settle_seconds} | {s.cpu_seconds} | "
            f"{s.statuses:,} | {s.copies:,} | {s.rss_ready_mib} | {s.rss_settled_mib} | {s.rss_end_mib} | "
            f"{s.peak_rss_mib} |"
        )
    w("")
    w("### Configuration set-up (bulk creation, 32 requests in flight, both CPUs)")
    w("")
    w("| K | namespaces created | seconds | registries created | seconds |")
    w("| ---: | ---: | ---: | ---: | ---: |")
    for setup in report.setup:
        w(
            f"| {setup['scopes']:,} | {setup['created_namespaces']:,} | {setup['namespaces_seconds']} | "
            f"{setup['created_registries']:,} | {setup['registries_seconds']} |"
        )
    w("")
    w("First touch of every scope after the start (one chaos pod per namespace, c=8, answers checked):")
    w("")
    for sweep in report.sweeps:
        w(
            f"- {sweep['engine']} K={sweep['scopes']:,}: {sweep['requests']:,} requests in "
            f"{sweep['seconds']} s, p99 {sweep['p99_ms']} ms; {sweep['patched']:,} carried a patch, "
            f"{sweep['refused']} refused"
        )
    w("")
    w("Warm-up answers checked (pod kind: answers / with a patch / refused), all concurrencies:")
    w("")
    for scopes, checks in sorted(report.checks.items()):
        text = ", ".join(f"{kind} {n}/{p}/{r}" for kind, (n, p, r) in sorted(checks.items()))
        w(f"- K={scopes:,}: {text}")
    return "\n".join(out)


def growth_markdown(report: Report) -> str:
    out: list[str] = []
    w = out.append
    first = report.growth[0]
    w(f"### p99 at K={first.large:,} against K={first.small:,}, measured in pairs")
    w("")
    w(
        f"serve at K={first.large:,} (the process of the cells above) and serve at K={first.small:,} "
        f"(in a second, small control plane), both on CPU {SERVER_CPU}, measured alternately by this "
        f"load generator on CPU {CLIENT_CPU} ({len(first.pairs)} pairs of runs per concurrency, "
        "order flipped each pair): the cells above are minutes apart, and this machine's speed moves "
        "between such moments (bench/growth.py). The growth is the median of the pairs' ratios of p99; "
        "the other figures are medians."
    )
    w("")
    w(
        f"| c | p99 ms at K={first.small:,} | p99 ms at K={first.large:,} | **growth** | growth of each "
        f"pair | CPU ms / 1k at K={first.small:,} | CPU ms / 1k at K={first.large:,} |"
    )
    w("| ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for cell in report.growth:
        r = cell.row()
        w(
            f"| {r['concurrency']} | {r['reference_p99_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"**{r['p99_growth']:+.1%}** | {', '.join(f'{g:+.1%}' for g in r['p99_growth_runs'])} | "
            f"{r['reference_cpu_ms_per_1k']:.0f} | {r['cpu_ms_per_1k']:.0f} |"
        )
    w("")
    sequential = sequential_growth(report, first.small, first.large)
    if sequential:
        w(f"The same growth from the sweep's cells, minutes apart: {growth_text(sequential)}.")
        w("")
    return "\n".join(out)


def versus_markdown(report: Report) -> str:
    out: list[str] = []
    w = out.append
    scopes = report.versus[0].scopes
    repeats = len(report.versus[0].of("ours"))
    w(f"### Against the Go reference (bench/goref: controller-runtime's admission package; K={scopes:,})")
    w("")
    w(
        f"Both servers pinned to CPU {SERVER_CPU}, TLS, keep-alive, measured alternately by one Go "
        f"closed-loop client on CPU {CLIENT_CPU} ({repeats} pairs of runs per cell, order flipped "
        "each pair). Bodies: the pod of examples/pods, defaulted by the apiserver, in a namespace "
        "bound to a Private registry (ours moves every image and adds a pull secret, plus its "
        "annotations and environment variables; Go moves every image and adds a pull secret). The ratio "
        "is the median of the pairs' ratios of requests/s (ours / Go); the other figures are medians."
        + (
            f" Go reference peak RSS {report.go_reference_rss_mib} MiB."
            if report.go_reference_rss_mib
            else ""
        )
    )
    w("")
    w(
        "| body | c | ours req/s | Go req/s | **ratio** | ratio of each pair | side of 1.0 | ours p50 ms | "
        "Go p50 ms | ours p99 ms | Go p99 ms | ours CPU ms / 1k | Go CPU ms / 1k | Go handler alone us |"
    )
    w("| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cell in report.versus:
        r = cell.row()
        side = "above" if r["ratio_vs_go"] >= TARGET_RATIO_VS_GO else "below"
        w(
            f"| {r['body']} | {r['concurrency']} | {r['rps']:,.0f} | {r['go_reference_rps']:,.0f} | "
            f"**{r['ratio_vs_go']:.2f}** | {', '.join(f'{x:.2f}' for x in r['ratio_runs'])} | {side} | "
            f"{r['p50_ms']:.2f} | {r['go_reference_p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['go_reference_p99_ms']:.2f} | {r['cpu_ms_per_1k']:.0f} | "
            f"{r['go_reference_cpu_ms_per_1k']:.0f} | {r['go_reference_handler_us']:.0f} |"
        )
    w("")
    w(
        "Go handler alone: the reference's `Handle` in process, without HTTP or TLS (`go test -bench` "
        "of bench/goref/webhook/handler_test.go on the same core and bodies), microseconds per request: "
        "most of the Go reference's CPU per request is its handler (decoding, marshalling, the diff), "
        "not the transport or this harness."
    )
    w("")
    return "\n".join(out)


def write_markdown(report: Report, path: Path) -> None:
    generated = f"{BEGIN}\n{markdown(report)}\n{END}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + generated + tail
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    path.write_text(text)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scopes", type=_ints, default=None, help="K values (default 10,1000,10000)")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="at most this many warm-up seconds per cell (one cycle)"
    )
    parser.add_argument("--pairs", type=int, default=400, help="apiserver latency pairs (0: skip)")
    parser.add_argument(
        "--ready-starts",
        type=int,
        default=3,
        help=f"starts of serve at K={LARGEST_SCOPES:,} whose median readiness is reported (1: one)",
    )
    parser.add_argument("--settle-limit", type=float, default=420.0, help="longest wait for serve to idle")
    parser.add_argument(
        "--attempts", type=int, default=3, help="measure a cell up to this often while others disturb it"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="measured runs per cell; the cell is the one of median p99"
    )
    # Five pairs' median moved from +9% to +31% between runs of the same code (RESULTS.md).
    parser.add_argument(
        "--growth-pairs",
        type=int,
        default=9,
        help="pairs of runs per concurrency, largest K against smallest side by side (0: skip)",
    )
    parser.add_argument("--no-engine-compare", dest="compare_engines", action="store_false")
    parser.add_argument(
        "--no-versus-go", dest="versus_go", action="store_false", help="skip the Go reference"
    )
    parser.add_argument("--versus-repeats", type=int, default=5, help="pairs of runs per cell against Go")
    parser.add_argument(
        "--versus-duration", type=float, default=4.0, help="measured seconds per run against Go"
    )
    parser.add_argument("--versus-warmup", type=float, default=1.0, help="checked warm-up seconds per run")
    parser.add_argument(
        "--writer-at-largest",
        action="store_true",
        help=f"keep the writer on at K={LARGEST_SCOPES:,} too (a first pass of 20 min: raise --settle-limit)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="K=10,100, 1 s cells, one pair per cell against Go: checks the tooling (BENCH_QUICK=1)",
    )
    parser.add_argument("--no-wait", dest="wait", action="store_false", help="start at any load average")
    parser.add_argument("--out", default=str(BENCH), help="folder of results.json and RESULTS.md")
    parser.add_argument("--logs", default=str(corpus.REPO / ".cache" / "bench"), help="serve logs")
    args = parser.parse_args(argv)
    if args.growth_pairs < 0:
        parser.error(f"--growth-pairs: {args.growth_pairs} is below 0 (0 skips the pairs)")
    if args.quick:
        args.scopes, args.duration, args.warmup, args.pairs = args.scopes or [10, 100], 1.0, 0.5, 60
        args.repeats, args.growth_pairs = 1, 2
        args.versus_repeats, args.versus_duration, args.versus_warmup = 1, 1.0, 0.3
    args.scopes = args.scopes or [10, 1000, 10000, LARGEST_SCOPES]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    waited = 0.0
    if args.wait:
        _, waited = procstat.wait_quiet()
    given = list(sys.argv[1:] if argv is None else argv)
    report = Report(
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_at_start=procstat.loadavg(),
        waited_for_quiet=waited,
        command=" ".join(["python -m bench.service_bench", *given]) if given else "make bench",
    )
    say(f"load average at start {report.load_at_start}")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(run(args, report))
    report.load_at_end = procstat.loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(report, out / "results.json")
    report.charts_dir = out / "charts"
    charts.draw(report.charts_dir, [c.row() for c in report.cells], [c.row() for c in report.versus])
    write_markdown(report, out / "RESULTS.md")
    say(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'} ({report.duration:.0f} s)")
    for name, limit, measured, met in targets(report):
        say(f"{'met   ' if met else 'MISSED'} {name}: {measured} (target {limit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

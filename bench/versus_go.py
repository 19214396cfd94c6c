"""Ours against the Go way, side by side: the Go reference webhook (bench/goref/webhook) and
`chaos-registry serve`, measured ALTERNATELY by one Go load generator (bench/goref/loadgen).

Both servers run at the same time, pinned to the same server CPU (the one not measured idles); the
load generator is pinned to the other CPU. Per body and concurrency, each repeat measures both
servers back to back (order flipped every repeat) over the same request bodies, after a short
checked warm-up (every answer must allow the pod and carry a patch). A cell's ratio is the median of
the repeats' ratios (ours / Go requests per second): a neighbour's build that slows both servers for
a minute moves both sides of a ratio.

The Go programs are built from the Go module proxy into .cache/bench/go (git-ignored) by `go build`,
which does nothing when they are up to date.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import corpus, procstat
from webhook import pki

GOREF = Path(__file__).resolve().parent / "goref"
GO_CACHE = corpus.REPO / ".cache" / "bench" / "go"
HANDLER_BENCH = GO_CACHE / "webhook.test"  # the reference's handler alone (handler_test.go)
HANDLER_PATH = "/mutate-pods"
# The two chaos pods whose bodies both servers answer (examples/pods).
BODIES = ("litmus-experiment", "hce-fault")
# Namespaces (of the bench configuration's first 10 scopes) bound to a Private registry: ours moves
# every image and adds one pull secret there, as the Go reference does everywhere.
PRIVATE_SCOPE_INDEXES = (1, 5)
BODY_VARIANTS = 2048  # distinct uids per body file, taken in turn


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def build() -> tuple[Path, Path]:
    """`go build` the reference webhook and the load generator (a no-op when up to date)."""
    GO_CACHE.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    subprocess.run(
        ["go", "build", "-trimpath", "-o", str(GO_CACHE) + "/", "./webhook", "./loadgen"],
        cwd=GOREF,
        check=True,
    )
    test_build = ["go", "test", "-c", "-trimpath", "-o", str(HANDLER_BENCH), "./webhook"]
    subprocess.run(test_build, cwd=GOREF, check=True)
    say(f"Go reference and load generator built in {time.perf_counter() - began:.0f} s")
    return GO_CACHE / "webhook", GO_CACHE / "loadgen"


def handler_cost_us(bodies: Path, cpu: int, requests: int = 5000) -> float:
    """The Go reference's handler alone, in process, without HTTP or TLS (`go test -bench`, pinned
    to `cpu`): microseconds per request. Tells a slow handler from a slow transport."""
    command = [
        "taskset", "-c", str(cpu), str(HANDLER_BENCH), "-test.run", "^$", "-test.bench", "Handle",
        "-test.benchtime", f"{requests}x",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env={**os.environ, "GOREF_BODIES": str(bodies)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    found = re.search(r"BenchmarkHandle\S*\s+\d+\s+([\d.]+) ns/op", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the Go handler benchmark failed: {(done.stdout + done.stderr).strip()[-300:]}")
    return float(found.group(1)) / 1000


def private_namespaces() -> list[str]:
    names = corpus.Configuration(max(PRIVATE_SCOPE_INDEXES) + 1).namespace_names()
    return [names[i] for i in PRIVATE_SCOPE_INDEXES]


def write_bodies(template: corpus.Template, namespaces: list[str], path: Path, run: int) -> Path:
    """BODY_VARIANTS AdmissionReviews of one pod, one a line: own uids, namespaces in turn."""
    picks = [(template, namespaces[i % len(namespaces)]) for i in range(BODY_VARIANTS)]
    stream = corpus.RequestStream(picks, run)
    path.write_bytes(b"".join(stream()[0] + b"\n" for _ in range(BODY_VARIANTS)))
    return path


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Go reference webhook exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the Go reference webhook did not listen on {port} within {timeout:.0f} s")


class GoReference:
    """The Go reference webhook as a process pinned to `cpu`, with its own CA and certificate."""

    def __init__(self, binary: Path, work: Path, cpu: int) -> None:
        self.binary, self.work, self.cpu = binary, work, cpu
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_file = work / "goref-ca.pem"

    def __enter__(self) -> GoReference:
        from controlplane.webhook import free_port

        self.work.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority.generate("bench go reference CA")
        ca.write(self.ca_file)
        cert, key = ca.issue_server("127.0.0.1").write(self.work / "goref.crt", self.work / "goref.key")
        self.port = free_port()
        command = [
            "taskset", "-c", str(self.cpu), str(self.binary), "-port", str(self.port),
            "-tls-cert-file", str(cert), "-tls-key-file", str(key), "-path", HANDLER_PATH,
            "-registry", "registry-a0-o0-p0-i2.example.com:5000/mirror", "-pull-secret", "pull-5",
        ]  # fmt: skip
        log = (self.work / "goref.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid  # taskset execs the program: same pid

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss_mib(self) -> float:
        return procstat.peak_rss_mib(self.pid)


@dataclass
class Target:
    """A server the load generator measures: where it listens, its pid and the CA it is checked with."""

    name: str  # "go" or "ours"
    port: int
    pid: int
    ca_file: Path
    cpu: int  # the CPU it is pinned to


@dataclass
class Run:
    server: str
    result: dict[str, Any]
    cpu_seconds: float

    @property
    def rps(self) -> float:
        return float(self.result["rps"])

    @property
    def cpu_ms_per_1k(self) -> float:
        count = self.result["count"]
        return self.cpu_seconds * 1e6 / count if count else float("nan")


@dataclass
class VersusCell:
    body: str
    concurrency: int
    scopes: int
    runs: list[Run] = field(default_factory=list)
    go_handler_us: float = float("nan")  # the Go handler alone, in process (handler_cost_us)

    def of(self, server: str) -> list[Run]:
        return [r for r in self.runs if r.server == server]

    def median(self, server: str, key: str) -> float:
        values = [float(r.result[key]) for r in self.of(server)]
        return statistics.median(values) if values else float("nan")

    def median_cpu(self, server: str) -> float:
        return statistics.median(r.cpu_ms_per_1k for r in self.of(server))

    def ratios(self) -> list[float]:
        return [o.rps / g.rps for o, g in zip(self.of("ours"), self.of("go"), strict=True) if g.rps]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())

    def row(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "concurrency": self.concurrency,
            "scopes": self.scopes,
            "rps": round(self.median("ours", "rps"), 1),
            "p50_ms": round(self.median("ours", "p50_ms"), 3),
            "p99_ms": round(self.median("ours", "p99_ms"), 3),
            "cpu_ms_per_1k": round(self.median_cpu("ours"), 1),
            "go_reference_rps": round(self.median("go", "rps"), 1),
            "go_reference_p50_ms": round(self.median("go", "p50_ms"), 3),
            "go_reference_p99_ms": round(self.median("go", "p99_ms"), 3),
            "go_reference_cpu_ms_per_1k": round(self.median_cpu("go"), 1),
            "go_reference_handler_us": round(self.go_handler_us, 1),
            "ratio_vs_go": round(self.ratio, 3),
            "ratio_runs": [round(r, 3) for r in self.ratios()],
        }


class LoadGenerator:
    """The Go closed-loop client, pinned to `cpu`."""

    def __init__(self, binary: Path, cpu: int) -> None:
        self.binary, self.cpu = binary, cpu

    def run(
        self,
        target: Target,
        bodies: Path,
        concurrency: int,
        duration: float,
        *,
        check: bool = False,
        max_requests: int | None = None,
    ) -> Run:
        command = [
            "taskset", "-c", str(self.cpu), str(self.binary),
            "-url", f"https://127.0.0.1:{target.port}{HANDLER_PATH}", "-bodies", str(bodies),
            "-ca", str(target.ca_file), "-c", str(concurrency), "-duration", f"{duration}s",
        ]  # fmt: skip
        if check:
            command.append("-check")
        if max_requests is not None:
            command += ["-max", str(max_requests)]
        before = procstat.cpu_seconds(target.pid)
        done = subprocess.run(command, capture_output=True, check=False, timeout=duration + 60)
        cpu = procstat.cpu_seconds(target.pid) - before
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace').strip()}")
        result: dict[str, Any] = json.loads(done.stdout)
        if result["errors"] or set(result["statuses"]) != {"200"}:
            raise RuntimeError(
                f"{target.name} failed requests: {result['errors']} errors ({result.get('first_error')}), "
                f"statuses {result['statuses']}"
            )
        if check and (result["refused"] or result["patched"] != result["count"]):
            raise RuntimeError(
                f"{target.name}: of {result['count']} answers {result['patched']} carried a patch and "
                f"{result['refused']} refused the pod; every one should carry a patch"
            )
        return Run(target.name, result, cpu)


def compare(
    loadgen: LoadGenerator,
    targets: list[Target],
    bodies: dict[str, Path],
    *,
    scopes: int,
    concurrencies: list[int],
    repeats: int,
    duration: float,
    warmup: float,
) -> list[VersusCell]:
    """Per body and concurrency, `repeats` back-to-back pairs of runs, order flipped each repeat."""
    cells = []
    go_cpu = next(t.cpu for t in targets if t.name == "go")
    for body, path in bodies.items():
        handler_us = handler_cost_us(path, go_cpu)
        say(f"the Go handler alone, in process, on {body}: {handler_us:.0f} us per request")
        for concurrency in concurrencies:
            cell = VersusCell(body, concurrency, scopes, go_handler_us=handler_us)
            for repeat in range(repeats):
                order = targets if repeat % 2 == 0 else targets[::-1]
                for target in order:
                    loadgen.run(target, path, concurrency, warmup, check=True)
                    cell.runs.append(loadgen.run(target, path, concurrency, duration))
            row = cell.row()
            say(
                f"versus Go, {body} c={concurrency}: ours {row['rps']:,.0f} req/s (p99 {row['p99_ms']} ms, "
                f"{row['cpu_ms_per_1k']} CPU ms/1k), Go {row['go_reference_rps']:,.0f} req/s (p99 "
                f"{row['go_reference_p99_ms']} ms, {row['go_reference_cpu_ms_per_1k']} CPU ms/1k): "
                f"ratio {row['ratio_vs_go']:.2f} (runs {row['ratio_runs']})"
            )
            cells.append(cell)
    return cells

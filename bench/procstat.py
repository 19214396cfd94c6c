"""Linux /proc readings for the benchmark: CPU time and peak RSS of a process, CPU pinning, load.

Read straight from /proc (no psutil): `utime + stime` of /proc/PID/stat covers every thread of the
process; VmHWM of /proc/PID/status is its peak resident set since it started.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # After the ")" of comm: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the peak resident set size of `pid` since it started, in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    """VmRSS: the current resident set size of `pid`, in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of `pid` to `cpus` (threads started later inherit it from their parent)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def wait_quiet(threshold: float = 0.7, poll: float = 30.0, limit: float = 1200.0) -> tuple[float, float]:
    """Wait until the 1-minute load average is below `threshold`, polling every `poll` s up to
    `limit` s. Returns (the load average seen last, seconds waited)."""
    began = time.monotonic()
    while True:
        load = loadavg()[0]
        waited = time.monotonic() - began
        if load < threshold or waited >= limit:
            return load, waited
        print(f"bench: waiting for a quiet machine: load average {load:.2f} >= {threshold}", flush=True)
        time.sleep(poll)


def wait_idle(
    pid: int,
    max_share: float = 0.05,
    window: float = 1.0,
    limit: float = 120.0,
    log: Path | None = None,
) -> float:
    """Wait until process `pid` uses under `max_share` of a core over `window` s, and its `log`
    (if given) stays the same size over that window; returns seconds waited.

    The log matters where the process waits on others: at 100,000 registries the writer's status
    patches, one a log line, are the apiserver's work, and serve idled for 2 s between two of them
    12,000 statuses into 100,000."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before, size = cpu_seconds(pid), _size(log)
        time.sleep(window)
        if cpu_seconds(pid) - before < max_share * window and _size(log) == size:
            break
    return time.monotonic() - began


def wait_cpus_quiet(limits: Mapping[int, float], window: float = 1.0, limit: float = 120.0) -> float:
    """Wait until each CPU of `limits` is busy under its share of `window` s (any process, the
    kernel included), at most `limit` s; returns seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = {cpu: cpu_busy_seconds(cpu) for cpu in limits}
        time.sleep(window)
        if all(cpu_busy_seconds(cpu) - before[cpu] < share * window for cpu, share in limits.items()):
            break
    return time.monotonic() - began


def _size(path: Path | None) -> int:
    return path.stat().st_size if path is not None and path.exists() else 0


def machine_description() -> dict[str, str]:
    """nproc, the interesting lines of lscpu, free -m, the kernel and Python."""

    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "(not available)"

    keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "CPU MHz",
            "Hypervisor vendor", "L2 cache", "L3 cache", "Flags")  # fmt: skip
    lscpu = "\n".join(
        line
        for line in run("lscpu").splitlines()
        if line.split(":")[0].strip() in keep and not line.startswith("Flags")
    )
    return {
        "nproc": run("nproc"),
        "lscpu": lscpu,
        "free": run("free", "-m"),
        "kernel": run("uname", "-sr"),
    }


def cpu_busy_seconds(cpu: int) -> float:
    """Seconds CPU `cpu` spent not idle (any process, the kernel included) since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            return (sum(values[:8]) - idle) / _TICKS
    raise KeyError(f"cpu{cpu} not in /proc/stat")

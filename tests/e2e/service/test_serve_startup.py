"""`chaos-registry serve` that cannot start ends with one line and exit code 1 (2 for bad flags).

What a user does by hand: run the image or the command without a kubeconfig, against a cluster
that is not there, with certificate files that cannot be read or are not certificates, on a port
already in use. Each must end with `chaos-registry serve: error: ...` as the last line of stderr,
never a Python traceback. Log lines before it are allowed (they are the service's log).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import ControlPlane
from tests.reliability import figures

REPO = Path(__file__).resolve().parents[3]
SECTION = "serve start-up failures"
UNREACHABLE = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def bound_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--address", "127.0.0.1",
         "--health-address", "127.0.0.1", "--health-port", str(free_port()), *argv],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    figures.add(SECTION, "inputs_tried", 1)
    figures.record(SECTION, "tracebacks", 0)
    figures.record(
        SECTION,
        "slowest case seconds",
        max(seconds, figures.collected().get(SECTION, {}).get("slowest case seconds", 0)),
    )
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines, "no message"
    assert lines[-1].startswith("chaos-registry serve: error: "), result.stderr[-2000:]
    return lines[-1]


def test_no_kubeconfig(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""}
    result = serve("--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert "no usable cluster configuration" in last_line(result)


def test_unreachable_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE)
    result = serve("--kubeconfig", str(kubeconfig), "--port", str(free_port()))
    assert result.returncode == 1
    assert "cannot reach the cluster" in last_line(result)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "70000"], "--port must be 1-65535, got 70000"),
        (["--port", "0x"], "argument --port: invalid int value"),
        (["--tls-mode", "files"], "--tls-mode files needs --tls-cert-file and --tls-key-file"),
        (["--webhook-url", "http://x"], "--webhook-url must start with https://"),
    ],
)  # fmt: skip
def test_bad_flag_values(argv: list[str], fragment: str) -> None:
    result = serve(*argv)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--kubeconfig", "/nonexistent/kubeconfig"], ["--kubeconfig /nonexistent/kubeconfig: cannot read"]),
        (["--tls-mode", "files", "--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "/nonexistent.key"],
         ["--tls-cert-file /nonexistent.pem: cannot read: No such file or directory",
          "--tls-key-file /nonexistent.key: cannot read: No such file or directory"]),
    ],
)  # fmt: skip
def test_unreadable_files(argv: list[str], fragments: list[str]) -> None:
    result = serve(*argv)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(fragments), result.stderr
    for line, fragment in zip(lines, fragments, strict=True):
        assert line.startswith("chaos-registry serve: error: ") and fragment in line, line


def test_certificate_files_that_are_not_certificates(control_plane: ControlPlane, tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate\n")
    (tmp_path / "tls.key").write_text("not a key\n")
    result = serve(
        "--kubeconfig", str(control_plane.kubeconfig), "--port", str(free_port()),
        "--tls-mode", "files", "--tls-cert-file", str(tmp_path / "tls.crt"),
        "--tls-key-file", str(tmp_path / "tls.key"), "--no-writer",
        "--webhook-config-name", "chaos-registry-startup-test",
    )  # fmt: skip
    assert result.returncode == 1
    assert "not a PEM certificate and its key" in last_line(result)


def test_port_in_use(control_plane: ControlPlane, crd: None, bound_port: int) -> None:
    result = serve(
        "--kubeconfig", str(control_plane.kubeconfig), "--port", str(bound_port), "--tls-san", "127.0.0.1",
        "--webhook-url", f"https://127.0.0.1:{bound_port}", "--no-writer",
        "--webhook-config-name", "chaos-registry-startup-test",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"--port {bound_port}: cannot listen on 127.0.0.1: Address already in use" in last_line(result)

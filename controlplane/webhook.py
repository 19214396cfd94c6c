"""`chaos-registry serve` as a local process against the local control plane (tests, demo, benchmarks).

The apiserver calls it at https://127.0.0.1:PORT; its self-managed certificate gets the SAN
127.0.0.1 and `--webhook-url` makes it register its own MutatingWebhookConfiguration.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WebhookProcessError(RuntimeError):
    """The webhook process did not become ready; the message carries the end of its log."""


class WebhookProcess:
    """One `chaos-registry serve` process; a context manager that stops it (and only it) on exit."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        *,
        namespace: str = "chaos-system",
        config_name: str = "chaos-registry-webhook",
        failure_policy: str = "Fail",
        extra_args: Sequence[str] = (),
        port: int | None = None,
        health_port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.namespace = namespace
        self.config_name = config_name
        self.failure_policy = failure_policy
        self.extra_args = tuple(extra_args)
        self.port = port or free_port()
        self.health_port = health_port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "webhook", "serve",
            "--kubeconfig", str(self.kubeconfig),
            "--namespace", self.namespace,
            "--address", "127.0.0.1",
            "--port", str(self.port),
            "--health-address", "127.0.0.1",
            "--health-port", str(self.health_port),
            "--tls-san", "127.0.0.1",
            "--webhook-url", self.url,
            "--webhook-config-name", self.config_name,
            "--failure-policy", self.failure_policy,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> Self:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.wait_ready(timeout)
        return self

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.health_url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise WebhookProcessError(
                    f"chaos-registry serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise WebhookProcessError(f"chaos-registry serve not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

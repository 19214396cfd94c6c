"""Helpers of the reliability tests: webhook processes that always clean up, an HTTPS admission client,
pod creators that retry like controllers, and readings of a process (RSS, log).

Every webhook started here has its own MutatingWebhookConfiguration name, deleted on exit whatever
happened: a stopped process behind failurePolicy Fail would otherwise block every chaos pod of the
tests that follow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import yaml

from controlplane import ControlPlane
from controlplane.webhook import WebhookProcess
from tests.e2e.service.conftest import Cluster, images, wait_for
from webhook.service.tls.webhook_configuration import HANDLER_ID

SCOPE_ANNOTATION = "chaosregistry.io/scope"
ORIGINAL_IMAGES = "chaosregistry.io/original-images"


# --- webhook processes --------------------------------------------------------------------------------


class ManagedWebhook:
    """One `chaos-registry serve` that can be killed (-9) and restarted on the same ports.

    Its configuration name, TLS Secret and Lease are its own unless given, so that several run side
    by side in one control plane without disturbing each other.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        log_dir: Path,
        *,
        name: str | None = None,
        failure_policy: str = "Fail",
        extra_args: Sequence[str] = (),
        writer: bool = False,
        log_level: str = "info",
        kubeconfig: Path | None = None,
    ) -> None:
        self.control_plane = control_plane
        # The webhook's own way to the apiserver (a proxy's, to cut it); the tests use the admin's.
        self.kubeconfig = kubeconfig or control_plane.kubeconfig
        self.name = name or f"chaos-registry-rel-{secrets.token_hex(3)}"
        self.failure_policy = failure_policy
        self.log_dir = log_dir
        args = ["--log-level", log_level, "--lease-name", f"{self.name}-leader", *extra_args]
        if not writer:
            args.append("--no-writer")
        self.extra_args = args
        self.starts = 0
        self.kills = 0
        self.process: WebhookProcess | None = None
        self._port: int | None = None
        self._health_port: int | None = None

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    @property
    def admission_url(self) -> str:
        return f"{self.url}/{HANDLER_ID}"

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.process is not None
        return self.process.process.pid

    def alive(self) -> bool:
        return (
            self.process is not None
            and self.process.process is not None
            and self.process.process.poll() is None
        )

    def start(self, timeout: float = 90.0) -> ManagedWebhook:
        self.process = WebhookProcess(
            self.kubeconfig,
            self.log_file,
            config_name=self.name,
            failure_policy=self.failure_policy,
            extra_args=self.extra_args,
            port=self._port,
            health_port=self._health_port,
        )
        self._port, self._health_port = self.process.port, self.process.health_port
        self.process.start(timeout=timeout)
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a node crash or an OOM kill would."""
        assert self.process is not None
        self.process.kill()
        self.kills += 1

    def restart(self, timeout: float = 90.0) -> None:
        self.start(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def get(self, path: str) -> tuple[int, str]:
        assert self.process is not None
        return self.process.get(path, timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def delete_configuration(self) -> None:
        api = kubernetes.config.new_client_from_config(config_file=str(self.control_plane.kubeconfig))
        try:
            with contextlib.suppress(kubernetes.client.ApiException):
                kubernetes.client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(
                    self.name
                )
        finally:
            api.close()

    def ca_bundle(self) -> bytes:
        """The caBundle the apiserver trusts for this webhook (from its configuration)."""
        api = kubernetes.config.new_client_from_config(config_file=str(self.control_plane.kubeconfig))
        try:
            configuration = kubernetes.client.AdmissionregistrationV1Api(
                api
            ).read_mutating_webhook_configuration(self.name)
        finally:
            api.close()
        return base64.b64decode(configuration.webhooks[0].client_config.ca_bundle)


@contextlib.contextmanager
def running_webhook(control_plane: ControlPlane, log_dir: Path, **kwargs: Any) -> Iterator[ManagedWebhook]:
    """A started ManagedWebhook; stopped, and its configuration deleted, on exit."""
    webhook = ManagedWebhook(control_plane, log_dir, **kwargs)
    try:
        webhook.start()
        yield webhook
    finally:
        webhook.stop()
        webhook.delete_configuration()


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def metric_total(webhook: ManagedWebhook, family: str, **labels: str) -> float:
    """Sum of the samples of `family` (a counter's `_total`) whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = webhook.get("/metrics")
    assert status == 200, text
    total = 0.0
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            if all(sample.labels.get(key) == value for key, value in labels.items()):
                total += sample.value
    return total


# --- direct HTTPS admission requests ------------------------------------------------------------------


def client_context(ca_bundle: bytes) -> ssl.SSLContext:
    """Trusts exactly what the apiserver trusts for the webhook (its caBundle)."""
    context = ssl.create_default_context(cadata=ca_bundle.decode())
    return context


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float
    error: str | None = None


async def _post_all(
    url: str,
    context: ssl.SSLContext,
    bodies: Iterable[bytes],
    on_answer: Callable[[int, Answer], None],
    concurrency: int,
    timeout: float,
) -> None:
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    iterator = iter(enumerate(bodies))
    lock = asyncio.Lock()

    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:

        async def worker() -> None:
            while True:
                async with lock:
                    item = next(iterator, None)
                if item is None:
                    return
                index, body = item
                started = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as response:
                        payload = await response.read()
                        answer = Answer(response.status, payload, time.perf_counter() - started)
                except (aiohttp.ClientError, TimeoutError, OSError) as error:
                    answer = Answer(0, b"", time.perf_counter() - started, f"{type(error).__name__}: {error}")
                on_answer(index, answer)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def post_reviews(
    url: str,
    ca_bundle: bytes,
    bodies: Iterable[bytes],
    on_answer: Callable[[int, Answer], None],
    *,
    concurrency: int = 8,
    timeout: float = 30.0,
) -> None:
    """POST every body to `url` over HTTPS (keep-alive, `concurrency` at a time), calling `on_answer`."""
    asyncio.run(_post_all(url, client_context(ca_bundle), bodies, on_answer, concurrency, timeout))


async def _steady_load(
    url: str,
    context: ssl.SSLContext,
    body_for: Callable[[int], bytes],
    rate: float,
    seconds: float,
    on_answer: Callable[[float, Answer], None],
    concurrency: int,
) -> int:
    """Open-loop load: request i is due at start + i/rate, sent by the first free worker."""
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    total = int(rate * seconds)
    counter = iter(range(total))
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            for index in counter:
                due = start + index / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                began = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body_for(index), headers={"Content-Type": "application/json"}
                    ) as response:
                        payload = await response.read()
                        answer = Answer(response.status, payload, time.perf_counter() - began)
                except (aiohttp.ClientError, TimeoutError, OSError) as error:
                    answer = Answer(0, b"", time.perf_counter() - began, f"{type(error).__name__}: {error}")
                on_answer(loop.time() - start, answer)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def steady_load(
    url: str,
    ca_bundle: bytes,
    body_for: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    on_answer: Callable[[float, Answer], None],
    concurrency: int = 16,
) -> int:
    """`rate` requests per second for `seconds`; `on_answer(elapsed, answer)`; returns requests sent."""
    return asyncio.run(
        _steady_load(url, client_context(ca_bundle), body_for, rate, seconds, on_answer, concurrency)
    )


# --- pods through the apiserver ------------------------------------------------------------------------


def fault_pod(name: str, tag: str = "1.47.0") -> dict[str, Any]:
    """An HCE fault pod: log watcher and fault containers, LIB_IMAGE for the helper pods it starts."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "reliability"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": f"litmuschaos/go-runner:{tag}"}],
            "containers": [
                {"name": "log-watcher", "image": f"harness/chaos-log-watcher:{tag}"},
                {
                    "name": "fault",
                    "image": f"docker.io/harness/chaos-ddcr-faults:{tag}",
                    "env": [{"name": "LIB_IMAGE", "value": f"docker.io/harness/chaos-ddcr-faults:{tag}"}],
                },
            ],
        },
    }


def all_images(pod: dict[str, Any]) -> list[str]:
    """Every image of a stored pod: containers of all three lists, and image env values."""
    found = list(images(pod).values())
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod["spec"].get(key) or []:
            for variable in container.get("env") or []:
                if variable.get("name", "").endswith("_IMAGE") and "value" in variable:
                    found.append(variable["value"])
    return found


def new_api(control_plane: ControlPlane, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig or control_plane.kubeconfig))


@dataclass
class CreatorStats:
    created: int = 0
    rejected: int = 0
    connection_errors: int = 0
    first_rejection: str | None = None
    rejection_reasons: dict[str, int] = field(default_factory=dict)


class PodCreator:
    """Threads that create pods until `total` exist, retrying a refused create as a controller does.

    `retry=False` counts a refusal as a failure and moves on (used where none may happen).
    `dry_run` admits the pods without storing them.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        namespace: str,
        make_pod: Callable[[int], dict[str, Any]],
        *,
        total: int | None,
        threads: int = 3,
        retry: bool = True,
        dry_run: bool = False,
        on_created: Callable[[int, dict[str, Any]], None] | None = None,
        backoff: float = 0.05,
    ) -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self.make_pod = make_pod
        self.total = total
        self.retry = retry
        self.dry_run = dry_run
        self.on_created = on_created
        self.backoff = backoff
        self.stats = CreatorStats()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.errors: list[BaseException] = []

    def start(self) -> PodCreator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self._stop.set()
            raise AssertionError(f"pod creators still running after {timeout}s: {self.stats}")
        if self.errors:
            raise self.errors[0]

    @property
    def created(self) -> int:
        return self.stats.created

    def _claim(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.total is not None and self._next >= self.total):
                return None
            index = self._next
            self._next += 1
            return index

    def _note_rejection(self, reason: str) -> None:
        with self._lock:
            self.stats.rejected += 1
            self.stats.first_rejection = self.stats.first_rejection or reason
            key = reason[:120]
            self.stats.rejection_reasons[key] = self.stats.rejection_reasons.get(key, 0) + 1

    def _run(self) -> None:
        api = new_api(self.control_plane)
        core = kubernetes.client.CoreV1Api(api)
        try:
            while (index := self._claim()) is not None:
                body = self.make_pod(index)
                while True:
                    try:
                        stored = core.create_namespaced_pod(
                            self.namespace, body, dry_run="All" if self.dry_run else None, _request_timeout=60
                        )
                    except kubernetes.client.ApiException as error:
                        if error.status == 409 and not self.dry_run:  # a retry after a lost answer
                            stored = core.read_namespaced_pod(body["metadata"]["name"], self.namespace)
                        else:
                            self._note_rejection(f"{error.status}: {_reason(error)}")
                            if not self.retry or self._stop.is_set():
                                break
                            time.sleep(self.backoff)
                            continue
                    except Exception as error:  # connection reset while the apiserver restarts
                        with self._lock:
                            self.stats.connection_errors += 1
                        if not self.retry or self._stop.is_set():
                            self._note_rejection(f"connection: {error}")
                            break
                        time.sleep(self.backoff)
                        continue
                    result: dict[str, Any] = api.sanitize_for_serialization(stored)
                    with self._lock:
                        self.stats.created += 1
                    if self.on_created is not None:
                        self.on_created(index, result)
                    break
        except BaseException as error:  # surfaced by join()
            self.errors.append(error)
        finally:
            api.close()


def _reason(error: kubernetes.client.ApiException) -> str:
    try:
        return str(json.loads(error.body).get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)


def list_pods(control_plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    api = new_api(control_plane)
    try:
        result = kubernetes.client.CoreV1Api(api).list_namespaced_pod(namespace, _request_timeout=120)
        pods: list[dict[str, Any]] = api.sanitize_for_serialization(result)["items"]
        return pods
    finally:
        api.close()


def wait_admitted(
    cluster: Cluster,
    namespace: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 60.0,
    what: str,
    pod: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dry-run create a fault pod until the stored pod passes `check` (the apiserver and the
    webhook's watches caught up)."""

    def attempt() -> dict[str, Any] | None:
        try:
            stored = cluster.create_pod(
                namespace, pod or fault_pod(f"probe-{secrets.token_hex(3)}"), dry_run=True
            )
        except kubernetes.client.ApiException:
            return None
        return stored if check(stored) else None

    return wait_for(attempt, timeout=timeout, interval=0.1, what=what)


def rewritten_to(prefix: str) -> Callable[[dict[str, Any]], bool]:
    return lambda stored: all(image.startswith(prefix) for image in all_images(stored))


# --- a connection that goes silent ---------------------------------------------------------------------


class SilentDropProxy:
    """A loopback TCP proxy to the apiserver that can stop forwarding without closing anything.

    `drop()` is what a NAT or load balancer that lost its connection table does: every open
    connection stays open at both ends but carries nothing more, ever; connections opened during the
    drop are accepted and black-holed too. `heal()` makes new connections work again; the dropped
    ones stay dead until their client gives up on them (only a timeout can tell).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._dropping = False
        self._dead: set[socket.socket] = set()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def kubeconfig(self, source: Path, target: Path) -> Path:
        """`source` with its server pointed at this proxy (the apiserver's certificate names 127.0.0.1)."""
        config = yaml.safe_load(source.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        target.chmod(0o600)
        return target

    def drop(self) -> None:
        with self._lock:
            self._dropping = True
            self._dead.update(self._sockets)

    def heal(self) -> None:
        with self._lock:
            self._dropping = False

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [downstream, upstream]
                if self._dropping:
                    self._dead.update((downstream, upstream))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy source to sink; once dropped, read and discard (the peer sees no close, no reset)."""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self._lock:
                    dead = source in self._dead
                if not dead:
                    sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            dead = source in self._dead
        if not dead:
            # A clean end of a live connection is passed on, as a proxy does.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

"""A real Kubernetes control plane (etcd + kube-apiserver) run as plain local processes.

This machine class has no container engine, so kind/k3d/minikube are out; like controller-runtime's
envtest we start the two Go binaries built by `controlplane/build.sh` directly. There is no
scheduler, controller-manager or kubelet: pods stay Pending, but everything that happens at
admission time (mutating webhooks, CRD schema and CEL validation, RBAC) is the real thing.

Two ways to use it:

* tests: ``with ControlPlane() as cp: ...`` - fresh temp dir, free loopback ports, everything
  stopped and removed on exit (the processes also die if the Python process is killed);
* people: ``python -m controlplane up`` / ``down`` - one detached cluster whose state lives in
  ``.cache/controlplane/cluster/`` (see ``controlplane.__main__``).
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from controlplane.certs import CertificateAuthority, KeyPair, generate_service_account_keys
from webhook.pki import write_file

__all__ = [
    "BUILD_SCRIPT",
    "PERSISTENT_DIR",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "ensure_binaries",
    "processes_under",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
PERSISTENT_DIR = REPO_ROOT / ".cache" / "controlplane" / "cluster"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl")

_HOST = "127.0.0.1"
_STATE_FILE = "state.json"
_LOG_TAIL_LINES = 25
# Linux prctl option: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started, reached or stopped.

    The first line of the message says what went wrong and what to do; process failures append
    the last lines of that process's log.
    """


class KubectlError(ControlPlaneError):
    """`ControlPlane.kubectl(..., check=True)` exited non-zero; `result` holds its output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        # Skip the binary path and the --kubeconfig/--cache-dir flags added by kubectl().
        command = " ".join(str(arg) for arg in result.args[3:])
        super().__init__(f"kubectl {command} exited with code {result.returncode}: {result.stderr.strip()}")


def ensure_binaries(
    *, cache_dir: Path | None = None, quiet: bool = False, components: Sequence[str] = ()
) -> Path:
    """Build (or reuse) the pinned binaries with build.sh and return their folder.

    The build's progress goes to stderr line by line as it happens: a cold build takes minutes
    and silence would look like a hang. A warm cache returns in well under a second and needs no
    Go toolchain. `components` are build.sh's optional extras (`node`, `argo`).
    """
    bash = shutil.which("bash")
    if bash is None:
        raise ControlPlaneError("bash not found on PATH: install bash to build the control plane")
    env = dict(os.environ)
    if cache_dir is not None:
        env["CONTROLPLANE_CACHE"] = str(cache_dir)
    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
    with subprocess.Popen(
        [bash, str(BUILD_SCRIPT), *components],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as build:
        assert build.stdout is not None and build.stderr is not None
        # stdout carries only the final folder line, so reading stderr to the end first cannot
        # deadlock on a full stdout pipe.
        for line in build.stderr:
            tail.append(line.rstrip("\n"))
            if not quiet:
                sys.stderr.write(line)
                sys.stderr.flush()
        stdout = build.stdout.read()
        returncode = build.wait()
    if returncode != 0:
        reason = next(
            (
                line.removeprefix("controlplane build: ")
                for line in reversed(tail)
                if line.startswith("controlplane build: ")
            ),
            f"build.sh exited with code {returncode}",
        )
        raise ControlPlaneError(
            f"building the control plane failed: {reason} "
            f"(rerun `bash {BUILD_SCRIPT.relative_to(REPO_ROOT)}` to see the full output)\n" + "\n".join(tail)
        )
    lines = stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed no bin folder: check the script's last line")
    bin_dir = Path(lines[-1])
    missing = [name for name in REQUIRED_BINARIES if not (bin_dir / name).is_file()]
    if missing:
        raise ControlPlaneError(
            f"{bin_dir} lacks {', '.join(missing)}: delete that folder and rerun `bash controlplane/build.sh`"
        )
    return bin_dir


def _free_port() -> int:
    # Port 0 asks the kernel for an unused port. Another process could take it before our child
    # binds it; start() detects that from the child's log and retries with new ports.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGKILL when we die, so a killed test run leaks nothing.

    Only Linux has PR_SET_PDEATHSIG; elsewhere the context manager and atexit still clean up.
    The kernel sends the signal when the *thread* that spawned the child exits, not the process:
    from any other thread than the main one the cluster would die with that thread, so there we
    go without (pytest fixtures run in the main thread).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl; then nobody would kill us later.
        if os.getppid() != parent:
            os._exit(1)

    return hook


@dataclass
class _Process:
    """One child (etcd or kube-apiserver), spawned by us or found again from a state file."""

    name: str
    pid: int
    log: Path
    # A string in the process's command line; guards against signalling a recycled pid when
    # the process was started by an earlier `python -m controlplane up`.
    marker: str
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        proc = Path("/proc") / str(self.pid)
        if not Path("/proc/self").exists():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            stat = (proc / "stat").read_text()
        except OSError:
            return False
        # An exited child of a dead parent lingers as a zombie until init reaps it.
        state = stat.rsplit(")", 1)[-1].split()[0]
        return self.marker in cmdline and state != "Z"

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        """True once the process is gone; False if it is still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        self.send(signal.SIGTERM)
        if not self.wait(grace):
            self.send(signal.SIGKILL)
            if not self.wait(5.0):
                raise ControlPlaneError(
                    f"{self.name} (pid {self.pid}) survived SIGKILL: kill it by hand (`kill -9 {self.pid}`)"
                )


def processes_under(root_dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions `root_dir` (Linux /proc only).

    Every etcd and kube-apiserver we start names its folder in its flags, so this finds the
    leftovers of a cluster whose state was lost, and lets tests prove nothing was left running.
    """
    # The trailing separator keeps /tmp/controlplane-ab from matching /tmp/controlplane-abc.
    marker = (str(root_dir.resolve()) + os.sep).encode()
    found: list[int] = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


class _PortClash(Exception):
    """A child could not bind a port we picked: someone took it in between. Retry."""


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, in a fresh folder, as a context manager.

    >>> with ControlPlane() as cp:
    ...     cp.kubectl("get", "namespaces")

    `bin_dir` defaults to `ensure_binaries()`. `root_dir` (must not exist or be empty) defaults
    to a new temp folder; it is removed on stop. `port` pins the apiserver port (default: a free
    one). `detached` processes survive this Python process (used by `python -m controlplane up`).
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        root_dir: Path | None = None,
        port: int | None = None,
        detached: bool = False,
        startup_timeout: float = 60.0,
        extra_apiserver_args: Sequence[str] = (),
        service_accounts: bool = False,
        extra_sans: Sequence[str] = (),
    ) -> None:
        self._bin_dir = bin_dir
        # With a controller manager (the real-node tier) pods get ServiceAccount tokens; without
        # one, ServiceAccount admission would reject every pod (no `default` ServiceAccount).
        self.service_accounts = service_accounts
        # More names and IPs for the apiserver's serving certificate (e.g. a ClusterIP pods dial).
        self.extra_sans = tuple(extra_sans)
        self._requested_root = root_dir
        self._requested_port = port
        self.detached = detached
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self._root: Path | None = None
        self._port: int | None = None
        self._etcd_port: int | None = None
        self._etcd_peer_port: int | None = None
        self._processes: list[_Process] = []
        self._atexit_registered = False
        #: Seconds from start() to a ready apiserver (certificates, etcd, /readyz).
        self.startup_seconds: float | None = None

    # -- paths and addresses --------------------------------------------------------------------

    def _require_root(self) -> Path:
        if self._root is None:
            raise ControlPlaneError("the control plane is not started: use `with ControlPlane() as cp:`")
        return self._root

    @property
    def root_dir(self) -> Path:
        """The folder holding certificates, etcd data, logs and the kubeconfig."""
        return self._require_root()

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            raise ControlPlaneError("the control plane is not started: use `with ControlPlane() as cp:`")
        return self._bin_dir

    @property
    def port(self) -> int:
        self._require_root()
        assert self._port is not None
        return self._port

    @property
    def server(self) -> str:
        """The apiserver URL, e.g. https://127.0.0.1:38741."""
        return f"https://{_HOST}:{self.port}"

    @property
    def etcd_url(self) -> str:
        self._require_root()
        return f"http://{_HOST}:{self._etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        return self._require_root() / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """CA that signed the apiserver's serving certificate (what clients trust)."""
        return self._require_root() / "pki" / "serving-ca.crt"

    @property
    def client_ca_file(self) -> Path:
        """CA the apiserver trusts for client certificates."""
        return self._require_root() / "pki" / "client-ca.crt"

    @property
    def client_ca_key_file(self) -> Path:
        """Private key of the client CA: signs certificates of further users (`user_kubeconfig`)."""
        return self._require_root() / "pki" / "client-ca.key"

    @property
    def client_cert_file(self) -> Path:
        """Admin client certificate (user `admin`, group `system:masters`)."""
        return self._require_root() / "pki" / "admin.crt"

    @property
    def client_key_file(self) -> Path:
        return self._require_root() / "pki" / "admin.key"

    @property
    def logs_dir(self) -> Path:
        return self._require_root() / "logs"

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by name ('etcd', 'kube-apiserver') of the running children."""
        return {proc.name: proc.pid for proc in self._processes}

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start etcd and kube-apiserver and wait until /readyz answers ok."""
        if self._root is not None:
            raise ControlPlaneError("this ControlPlane is already started: create a new one")
        began = time.monotonic()
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries()
        missing = [name for name in REQUIRED_BINARIES if not (self._bin_dir / name).is_file()]
        if missing:
            raise ControlPlaneError(
                f"{self._bin_dir} lacks {', '.join(missing)}: run `bash controlplane/build.sh` "
                "(or pass bin_dir=ensure_binaries())"
            )
        if self._requested_port is not None and not _port_is_free(self._requested_port):
            raise ControlPlaneError(
                f"port {self._requested_port} on {_HOST} is in use: stop whatever listens there "
                "(`ss -ltnp`) or leave the port unset to pick a free one"
            )
        self._root = self._make_root()
        try:
            self._write_pki()
            for attempt in range(3):
                try:
                    self._start_processes()
                    break
                except _PortClash:
                    self._stop_processes()
                    if attempt == 2:
                        raise ControlPlaneError(
                            f"could not bind free ports on {_HOST} three times in a row: "
                            "check `ss -ltn` for a process grabbing ports, then retry"
                        ) from None
            self._write_kubeconfig()
            if self.detached:
                self._write_state()
        except BaseException:
            # Including KeyboardInterrupt: a half-started cluster must not outlive the error.
            self.stop()
            raise
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the apiserver, then etcd (SIGTERM, then SIGKILL), and remove the folder.

        Safe to call more than once.
        """
        try:
            self._stop_processes()
        finally:
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _make_root(self) -> Path:
        if self._requested_root is None:
            return Path(tempfile.mkdtemp(prefix="controlplane-"))
        root = self._requested_root.resolve()
        if root.exists() and any(root.iterdir()):
            raise ControlPlaneError(
                f"{root} is not empty: remove it (or `python -m controlplane down`) or pick another folder"
            )
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _write_pki(self) -> None:
        pki = self.root_dir / "pki"
        serving_ca = CertificateAuthority.generate("controlplane-serving-ca")
        serving_ca.write(self.ca_file)
        serving_ca.issue_server(
            "kube-apiserver",
            [
                _HOST,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                *self.extra_sans,
            ],
        ).write(pki / "apiserver.crt", pki / "apiserver.key")
        client_ca = CertificateAuthority.generate("controlplane-client-ca")
        client_ca.write(self.client_ca_file)
        # Kept (owner-only) so that tests can log in as users other than admin.
        write_file(self.client_ca_key_file, client_ca.pair.key_pem, secret=True)
        client_ca.issue_client("admin", groups=["system:masters"]).write(
            self.client_cert_file, self.client_key_file
        )
        generate_service_account_keys(pki / "service-account.key", pki / "service-account.pub")

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log_path = self.logs_dir / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root_dir,
                # Own session: a Ctrl-C in the terminal reaches pytest, which then stops the
                # cluster in order, instead of killing the apiserver in the middle of a test.
                start_new_session=True,
                preexec_fn=None if self.detached else _die_with_parent_hook(),
            )
        proc = _Process(
            name=name, pid=popen.pid, log=log_path, marker=str(self.root_dir) + os.sep, popen=popen
        )
        self._processes.append(proc)
        return proc

    def _start_processes(self) -> None:
        self._etcd_port = _free_port()
        peer_port = _free_port()
        self._port = self._requested_port or _free_port()
        etcd_data = self.root_dir / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        for log in self.logs_dir.glob("*.log") if self.logs_dir.exists() else ():
            log.unlink()

        self._etcd_peer_port = peer_port
        deadline = time.monotonic() + self.startup_timeout
        etcd = self._spawn("etcd", self._etcd_args(etcd_data))
        self._wait(etcd, deadline, self._etcd_healthy, "etcd /health")
        apiserver = self._spawn("kube-apiserver", self._apiserver_args())
        self._wait(apiserver, deadline, self._apiserver_ready, "kube-apiserver /readyz")

    def _etcd_args(self, data_dir: Path) -> list[str]:
        peer = f"http://{_HOST}:{self._etcd_peer_port}"
        return [
            "--name=controlplane",
            f"--data-dir={data_dir}",
            f"--listen-client-urls=http://{_HOST}:{self._etcd_port}",
            f"--advertise-client-urls=http://{_HOST}:{self._etcd_port}",
            # The peer port defaults to 2380 on all interfaces: two clusters would collide.
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=controlplane={peer}",
            "--initial-cluster-state=new",
            # Throwaway data: fsync only costs time, and a lot of it on a busy disk.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.root_dir / "pki"
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={_HOST}",
            f"--secure-port={self._port}",
            f"--advertise-address={_HOST}",
            # The endpoint reconciler would publish 127.0.0.1 in the `kubernetes` Endpoints,
            # which validation rejects (loopback) and logs as an error every few seconds.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.client_ca_file}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            # ServiceAccount admission rejects pods until a controller has created the
            # namespace's `default` ServiceAccount, and no controller runs here.
            *([] if self.service_accounts else ["--disable-admission-plugins=ServiceAccount"]),
            # Chaos helper pods are often privileged; without this the apiserver rejects them.
            "--allow-privileged=true",
            "--profiling=false",
            *self.extra_apiserver_args,
        ]

    def _wait(self, proc: _Process, deadline: float, ready: Callable[[], str | None], what: str) -> None:
        """Poll `ready` (None = ready, else the reason) until the deadline or the process dies."""
        reason = "not polled yet"
        while True:
            if not proc.alive():
                log = _tail(proc.log)
                if "address already in use" in log:
                    if self._requested_port is None or f":{self._requested_port}:" not in log:
                        raise _PortClash(proc.name)
                    hint = (
                        f"port {self._requested_port} on {_HOST} is in use: free it or leave the port unset"
                    )
                else:
                    hint = (
                        f"{proc.name} exited with code {proc.returncode()} while starting: check the "
                        "flags and binaries (rebuild with `bash controlplane/build.sh`)"
                    )
                raise ControlPlaneError(f"{hint}; last lines of its log:\n{log}")
            reason_or_none = ready()
            if reason_or_none is None:
                return
            reason = reason_or_none
            if time.monotonic() >= deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {self.startup_timeout:.0f}s ({reason}): the machine may "
                    f"be overloaded, raise startup_timeout; last lines of the {proc.name} log:\n"
                    f"{_tail(proc.log)}"
                )
            time.sleep(0.1)

    def _etcd_healthy(self) -> str | None:
        conn = http.client.HTTPConnection(_HOST, self._etcd_port, timeout=2)
        try:
            conn.request("GET", "/health")
            body = conn.getresponse().read().decode(errors="replace")
        except OSError as exc:
            return str(exc)
        finally:
            conn.close()
        return None if '"health":"true"' in body.replace(" ", "") else body.strip()

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return context

    def _apiserver_ready(self) -> str | None:
        # http.client rather than urllib: urllib would honour HTTPS_PROXY for 127.0.0.1.
        conn = http.client.HTTPSConnection(_HOST, self.port, context=self._ssl_context(), timeout=2)
        try:
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return str(exc)
        finally:
            conn.close()
        return None if response.status == 200 else f"HTTP {response.status}: {body.strip()[-300:]}"

    def ready(self) -> bool:
        """True if both processes run and the apiserver's /readyz says ok right now."""
        if self._root is None or not self._processes or not all(p.alive() for p in self._processes):
            return False
        return self._apiserver_ready() is None

    # -- faults -----------------------------------------------------------------------------------

    def _apiserver_process(self) -> _Process:
        for proc in self._processes:
            if proc.name == "kube-apiserver":
                return proc
        raise ControlPlaneError("the kube-apiserver is not running: call start_apiserver() first")

    def stop_apiserver(self, grace: float = 10.0) -> None:
        """Stop the kube-apiserver alone (SIGTERM, then SIGKILL after `grace`); etcd and its data stay.

        Clients see connection errors until `start_apiserver()`: what an apiserver upgrade or crash
        looks like to the webhook's watches. An open watch keeps a graceful stop waiting, so with
        watching clients the stop takes the whole `grace`.
        """
        proc = self._apiserver_process()
        proc.stop(grace=grace)
        if proc.popen is not None:
            proc.popen.wait()
        self._processes.remove(proc)

    def start_apiserver(self, timeout: float | None = None) -> float:
        """Start the kube-apiserver again on the same port, over the same etcd; wait for /readyz.

        Returns the seconds it took to become ready. The port was ours a moment ago, but a stopped
        Go server can leave it briefly unavailable: binding is retried until the timeout.
        """
        self._require_root()
        if any(proc.name == "kube-apiserver" for proc in self._processes):
            raise ControlPlaneError("the kube-apiserver is already running: call stop_apiserver() first")
        began = time.monotonic()
        deadline = began + (timeout if timeout is not None else self.startup_timeout)
        while True:
            apiserver = self._spawn("kube-apiserver", self._apiserver_args())
            try:
                self._wait(apiserver, deadline, self._apiserver_ready, "kube-apiserver /readyz")
                break
            except (_PortClash, ControlPlaneError) as error:
                self._processes.remove(apiserver)
                apiserver.stop(grace=5.0)
                if isinstance(error, ControlPlaneError) or time.monotonic() >= deadline:
                    raise ControlPlaneError(
                        f"the kube-apiserver did not come back on port {self.port}: {error}"
                    ) from error
                time.sleep(0.2)
        if self.detached:
            self._write_state()
        return time.monotonic() - began

    def restart_apiserver(self, grace: float = 10.0, timeout: float | None = None) -> float:
        """Stop and start the kube-apiserver, keeping etcd; returns the seconds it was unavailable."""
        began = time.monotonic()
        self.stop_apiserver(grace=grace)
        self.start_apiserver(timeout=timeout)
        return time.monotonic() - began

    def snapshot_etcd(self, path: Path) -> int:
        """Save a snapshot of etcd's data to `path` (etcd's Maintenance.Snapshot through its JSON
        gateway, as `etcdctl snapshot save` does over gRPC); returns its size in bytes."""
        conn = http.client.HTTPConnection(_HOST, self._etcd_port, timeout=60)
        try:
            conn.request("POST", "/v3/maintenance/snapshot", body=b"{}")
            response = conn.getresponse()
            if response.status != 200:
                raise ControlPlaneError(f"etcd snapshot: HTTP {response.status}: {response.read()[:200]!r}")
            size = 0
            with path.open("wb") as out:
                # One JSON object per line, each a base64 chunk of the database (the last ends with its hash).
                for line in response:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise ControlPlaneError(f"etcd snapshot: {message['error']}")
                    blob = base64.b64decode(message["result"].get("blob", ""))
                    out.write(blob)
                    size += len(blob)
        finally:
            conn.close()
        return size

    def restore_etcd(self, snapshot: Path, etcdutl: Path, timeout: float | None = None) -> float:
        """Restore etcd from `snapshot`, as an operator recovering from a backup does: the
        kube-apiserver and etcd stopped, the data replaced with `etcdutl snapshot restore` (no
        revision bump: resourceVersions go back to the snapshot's), both started again on the same
        ports. Returns the seconds the apiserver was unavailable."""
        began = time.monotonic()
        deadline = began + (timeout if timeout is not None else self.startup_timeout)
        self.stop_apiserver(grace=3.0)
        etcd = next(proc for proc in self._processes if proc.name == "etcd")
        etcd.stop(grace=5.0)
        if etcd.popen is not None:
            etcd.popen.wait()
        self._processes.remove(etcd)
        data = self.root_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        peer = f"http://{_HOST}:{self._etcd_peer_port}"
        restored = subprocess.run(
            [
                str(etcdutl), "snapshot", "restore", str(snapshot), f"--data-dir={data}",
                "--name=controlplane", f"--initial-cluster=controlplane={peer}",
                f"--initial-advertise-peer-urls={peer}",
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if restored.returncode != 0:
            raise ControlPlaneError(f"etcdutl snapshot restore failed: {restored.stderr.strip()[-500:]}")
        etcd = self._spawn("etcd", self._etcd_args(data))
        self._wait(etcd, deadline, self._etcd_healthy, "etcd /health after the restore")
        self.start_apiserver(timeout=max(1.0, deadline - time.monotonic()))
        return time.monotonic() - began

    def _stop_processes(self) -> None:
        errors: list[str] = []
        # Apiserver first: stopping etcd under it only produces noise in its log.
        for proc in reversed(self._processes):
            try:
                proc.stop(grace=10.0 if proc.name == "kube-apiserver" else 5.0)
            except ControlPlaneError as exc:
                errors.append(str(exc))
            if proc.popen is not None:
                proc.popen.wait()
        self._processes.clear()
        if errors:
            raise ControlPlaneError("; ".join(errors))

    # -- kubeconfig, state, kubectl ---------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        self._kubeconfig_for("admin", self.client_cert_file, self.client_key_file, self.kubeconfig)

    def _kubeconfig_for(self, user: str, cert: Path, key: Path, path: Path) -> None:
        # Paths, not embedded data: people can inspect the files, and the CA path is what
        # webhook tests need anyway. Everything lives and dies with root_dir.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "controlplane",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "controlplane", "context": {"cluster": "controlplane", "user": user}}],
            "current-context": "controlplane",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def issue_client_certificate(
        self, user: str, groups: Sequence[str] = (), *, folder: Path | None = None
    ) -> tuple[Path, Path]:
        """A client certificate for `user` (CN) in `groups` (O), signed by the client CA.

        Written as `<folder>/<user>.crt` and `.key` (default folder: `pki/users`); returns both paths.
        """
        pki = self._require_root() / "pki"
        authority = CertificateAuthority(
            KeyPair.from_pem(self.client_ca_file.read_bytes(), self.client_ca_key_file.read_bytes())
        )
        target = folder if folder is not None else pki / "users"
        return authority.issue_client(user, groups=list(groups)).write(
            target / f"{user}.crt", target / f"{user}.key"
        )

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig that logs in as `user` in `groups` with a fresh client certificate.

        The user has no rights until RBAC grants some: tests of tenancy log in with it.
        """
        cert, key = self.issue_client_certificate(user, groups)
        path = self.root_dir / "pki" / "users" / f"{user}.kubeconfig"
        self._kubeconfig_for(user, cert, key, path)
        return path

    def _write_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "port": self.port,
            "etcd_port": self._etcd_port,
            "processes": [{"name": p.name, "pid": p.pid} for p in self._processes],
        }
        (self.root_dir / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, root_dir: Path) -> ControlPlane | None:
        """The detached control plane recorded in `root_dir`, or None if there is no state file.

        The processes may have died since; check `ready()`. `stop()` stops them and removes the
        folder.
        """
        root = root_dir.resolve()
        try:
            state = json.loads((root / _STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ControlPlaneError(f"{root / _STATE_FILE} is unreadable ({exc}): remove {root}") from exc
        plane = cls(Path(state["bin_dir"]), root_dir=root, detached=True)
        plane._root = root
        plane._port = int(state["port"])
        plane._etcd_port = int(state["etcd_port"])
        plane._processes = [
            _Process(
                name=p["name"],
                pid=int(p["pid"]),
                log=root / "logs" / f"{p['name']}.log",
                marker=str(root) + os.sep,
            )
            for p in state["processes"]
        ]
        return plane

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; raises KubectlError if check and it fails."""
        command = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            # Discovery cache per cluster: the default ~/.kube/cache would collect one folder
            # per random port, forever.
            f"--cache-dir={self.root_dir / 'kubectl-cache'}",
            *args,
        ]
        try:
            result = subprocess.run(
                command, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} did not finish in {timeout:.0f}s: is the apiserver overloaded? "
                f"see {self.logs_dir}"
            ) from exc
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result

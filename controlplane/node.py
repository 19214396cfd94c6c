"""A local cluster with one real node: the control plane plus kubelet, containerd, CNI and a registry.

What `ControlPlane` alone cannot show - a pod pulled, started and finished - happens here for
real: containerd (Debian's) runs the pods with runc on a CNI bridge, the kubelet (built at the
apiserver's version by `build.sh node`) registers node `node-1`, kube-scheduler binds pods,
kube-controller-manager runs Jobs, Deployments and ServiceAccounts, and a local TLS + htpasswd
registry (`controlplane.registry`) serves the test images of `controlplane.images`.

>>> with NodeCluster() as cluster:
...     cluster.kubectl("apply", "-f", "pod.yaml")
...     cluster.wait_for_pod_phase("ns", "pod", {"Succeeded"})

The node is host-global (bridges, cgroups, mounts, ports), so only one runs on a machine at a
time: `start()` takes a host-wide lock and waits for whoever holds it. Everything lives under one
fixed folder (`NODE_ROOT`); `stop()` deletes the pods while the kubelet runs, stops every process,
unmounts, deletes the bridges and the folder, and leaves nothing behind. `start()` first removes
whatever a killed run left there, so a crash never blocks the next run. Needs root.

Pods reach the apiserver with in-cluster config: ServiceAccount tokens are on, the `kubernetes`
Service's ClusterIP (10.0.0.1) is an address of the host, forwarded to the apiserver, and it is in
the apiserver's certificate. The apiserver reaches Service-backed webhooks through their endpoints
(`--enable-aggregator-routing`): pod IPs are routable from the host through the CNI bridge.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from controlplane.cluster import (
    ControlPlane,
    ControlPlaneError,
    _die_with_parent_hook,
    _Process,
    _tail,
    ensure_binaries,
    processes_under,
)
from controlplane.images import PAUSE_IMAGE, TestImages, build_test_images, build_tool_image, publish
from controlplane.registry import Registry

__all__ = [
    "API_SERVICE_IP",
    "NODE_IP",
    "NODE_NAME",
    "NODE_ROOT",
    "POD_SUBNET",
    "NodeCluster",
    "NodeError",
    "install_node_dependencies",
    "scrub_node_host",
]

#: Where every node-tier file lives (one node per machine, so one fixed, short folder: containerd's
#: unix socket paths must stay under 108 bytes).
NODE_ROOT = Path(os.environ.get("CHAOS_NODE_ROOT", "/var/lib/chaos-registry-webhook-node"))
LOCK_FILE = Path(os.environ.get("CHAOS_NODE_LOCK", "/run/lock/chaos-registry-webhook-node.lock"))
NODE_NAME = "node-1"
#: The kubelet refuses a loopback node IP: an empty bridge carries this /32 instead.
NODE_IP = "10.255.0.1"
NODE_BRIDGE = "chaos-node0"
CNI_BRIDGE = "chaos-cni0"
CNI_NETWORK = "chaos-node"
POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_RANGE = "10.0.0.0/24"
#: The ClusterIP of the `kubernetes` Service: what in-cluster clients dial (no kube-proxy here).
API_SERVICE_IP = "10.0.0.1"
INSTALL_SCRIPT = Path(__file__).resolve().parent / "install-node-deps.sh"
_STATE_FILE = "node.json"
_KUBELET_PORT = 10250


class NodeError(ControlPlaneError):
    """The node could not be installed, started, reached or cleaned; the message says why."""


def install_node_dependencies() -> None:
    """Install the Debian packages of the node (skipped when present); NodeError if impossible."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise NodeError(lines[-1] if lines else f"{INSTALL_SCRIPT} exited with {result.returncode}")


def _run(*command: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise NodeError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or under `root`, deepest first (the order they can be unmounted in)."""
    prefix = str(root)
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + os.sep):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _kubepods_cgroups() -> list[Path]:
    """The kubelet's pod cgroups in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in Path("/sys/fs/cgroup").glob("*"):
        top = hierarchy / "kubepods"
        if top.is_dir():
            found.extend(path for path in top.rglob("*") if path.is_dir())
            found.append(top)
        unified = hierarchy / "unified" / "kubepods"
        if unified.is_dir():
            found.extend(path for path in unified.rglob("*") if path.is_dir())
            found.append(unified)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def scrub_node_host(root: Path = NODE_ROOT) -> list[str]:
    """Remove everything a node under `root` may have left: processes, containers, mounts, links.

    Used at the end of `stop()` and before every `start()` (a killed run leaves shims and
    containers behind: they do not die with their parent). Returns what it found to remove.
    Only the node's own names and folders are touched.
    """
    removed: list[str] = []
    # 1. Our daemons and containerd's shims: all name the node folder on their command line.
    for _round in range(3):
        pids = processes_under(root)
        if not pids:
            break
        removed.extend(f"process {pid}" for pid in pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    # 2. Container processes: they live in the kubelet's pod cgroups.
    cgroups = _kubepods_cgroups()
    for cgroup in cgroups:
        with contextlib.suppress(OSError):
            for member in (cgroup / "cgroup.procs").read_text().split():
                removed.append(f"container process {member}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(member), signal.SIGKILL)
    deadline = time.monotonic() + 5
    for cgroup in _kubepods_cgroups():
        while True:
            try:
                cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    removed.append(f"cgroup {cgroup} (busy, left)")
                    break
                time.sleep(0.1)
    # 3. Mounts: rootfs overlays, shm, network namespaces, the kubelet's volumes.
    for point in _mounts_under(root):
        removed.append(f"mount {point}")
        if _run("umount", point, check=False).returncode != 0:
            _run("umount", "-l", point, check=False)
    # 4. Network: veths on our bridge go with their namespaces; then the bridges themselves.
    for bridge in (CNI_BRIDGE, NODE_BRIDGE):
        if _link_exists(bridge):
            removed.append(f"link {bridge}")
            _run("ip", "link", "del", bridge, check=False)
    # 5. Files outside the folder: CNI's result cache and the kubelet's log links.
    for cached in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
        removed.append(str(cached))
        cached.unlink(missing_ok=True)
    for folder in (Path("/var/lib/cni/results"), Path("/var/lib/cni")):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: someone else's CNI state stays
    for link in Path("/var/log/containers").glob("*.log"):
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(root) + os.sep):
                removed.append(str(link))
                link.unlink()
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        if root.exists():
            raise NodeError(f"could not remove {root}: see `grep {root} /proc/self/mountinfo`")
    return removed


class _HostLock:
    """The host-wide lock of the node: one at a time per machine, others wait (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def acquire(self, timeout: float, on_wait: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            print(f"{on_wait} (held by {holder}); waiting up to {timeout:.0f}s", file=sys.stderr, flush=True)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.close()
                        raise NodeError(
                            f"the real node of this machine is still in use after {timeout:.0f}s "
                            f"(lock {self.path}, held by {holder}): wait for it or `make cluster-down`"
                        ) from None
                    time.sleep(1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
        handle.flush()
        self._file = handle

    def fileno(self) -> int:
        assert self._file is not None
        return int(self._file.fileno())

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeCluster:
    """A `ControlPlane`, a registry and one real node on this machine; a context manager.

    `registry_users` are the registry's htpasswd users (default: `puller` with a random
    password); the test images are published as `<registry.host>/<account>/<name>`.
    `detached` processes survive this Python process (`python -m controlplane up --node`).
    `lock_timeout` is how long `start()` waits for another node on this machine to finish.
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        root_dir: Path = NODE_ROOT,
        registry_users: Mapping[str, str] | None = None,
        account: str = "chaos",
        detached: bool = False,
        lock_timeout: float = 1800.0,
        extra_apiserver_args: Sequence[str] = (),
        quiet: bool = False,
    ) -> None:
        self._bin_dir = bin_dir
        self.root = root_dir.resolve() if root_dir.exists() else root_dir
        self.registry_users = dict(registry_users) if registry_users else None
        self.account = account
        self.detached = detached
        self.lock_timeout = lock_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.quiet = quiet
        self._lock = _HostLock(LOCK_FILE)
        self._control_plane: ControlPlane | None = None
        self._registry: Registry | None = None
        self._images: TestImages | None = None
        self._processes: list[_Process] = []
        self._atexit_registered = False
        self._started = False
        #: Seconds of each start phase (`binaries`, `control-plane`, `registry`, `node`, ...).
        self.timings: dict[str, float] = {}
        #: Seconds from start() to a Ready node with the controllers running.
        self.startup_seconds: float | None = None

    # -- parts ------------------------------------------------------------------------------------

    @property
    def control_plane(self) -> ControlPlane:
        if self._control_plane is None:
            raise NodeError("the node cluster is not started: use `with NodeCluster() as cluster:`")
        return self._control_plane

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise NodeError("the node cluster is not started: use `with NodeCluster() as cluster:`")
        return self._registry

    @property
    def images(self) -> TestImages:
        if self._images is None:
            raise NodeError("the node cluster is not started: use `with NodeCluster() as cluster:`")
        return self._images

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def bin_dir(self) -> Path:
        return self.control_plane.bin_dir

    @property
    def node_name(self) -> str:
        return NODE_NAME

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pod_logs_dir(self) -> Path:
        """The kubelet's `podLogsDir`: `<namespace>_<pod>_<uid>/<container>/<restart>.log`."""
        return self.root / "pod-logs"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    def image(self, name: str) -> str:
        """`<registry host>/<account>/<name>`: where a published test image is pulled from."""
        return f"{self.registry.host}/{self.account}/{name}"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(*args, input=input, check=check, timeout=timeout)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """containerd's `ctr` in the kubelet's namespace (`k8s.io`)."""
        return _run("ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args, check=check)

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _timed(self, phase: str, began: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(now - began, 2)
        return now

    def start(self) -> Self:
        """Install, build, lock, clean, then start everything; returns once pods can run."""
        if self._started:
            raise NodeError("this NodeCluster is already started: create a new one")
        if os.geteuid() != 0:
            raise NodeError("the real node needs root (bridges, mounts, cgroups): run as root")
        began = phase = time.monotonic()
        install_node_dependencies()
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries(components=("node",), quiet=self.quiet)
        missing = [
            b
            for b in ("kubelet", "kube-scheduler", "kube-controller-manager")
            if not (self._bin_dir / b).is_file()
        ]
        if missing:
            raise NodeError(
                f"{self._bin_dir} lacks {', '.join(missing)}: run `bash controlplane/build.sh node`"
            )
        self._images = build_test_images()
        phase = self._timed("binaries-and-images", phase)
        self._lock.acquire(self.lock_timeout, "another real node runs on this machine")
        self._started = True
        try:
            scrub_node_host(self.root)
            phase = self._timed("scrub", phase)
            self._make_folders()
            self._start_network()
            self._start_control_plane()
            phase = self._timed("control-plane", phase)
            self._start_registry()
            phase = self._timed("registry", phase)
            self._start_containerd()
            self._start_kubelet()
            self._start_controllers()
            self._wait_node_ready()
            phase = self._timed("node", phase)
            if self.detached:
                self._hand_lock_to_holder()
                self._write_state()
        except BaseException:
            self.stop()
            raise
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        self.startup_seconds = round(time.monotonic() - began, 2)
        return self

    def stop(self) -> None:
        """Delete the pods while the kubelet runs, stop everything, leave nothing behind. Idempotent."""
        if not self._started:
            return
        errors: list[str] = []
        try:
            self._delete_pods()
        except Exception as exc:  # the scrub below removes what a failed deletion left
            errors.append(f"deleting pods: {exc}")
        # The lock holder of a detached node goes last: whoever waits must find a clean host.
        holders = [proc for proc in self._processes if proc.name == "lock-holder"]
        for proc in reversed(self._processes):
            if proc.name == "lock-holder":
                continue
            try:
                proc.stop(grace=5.0)
                if proc.popen is not None:
                    proc.popen.wait()
            except ControlPlaneError as exc:
                errors.append(str(exc))
        self._processes.clear()
        for part in (self._registry, self._control_plane):
            if part is not None:
                try:
                    part.stop()
                except ControlPlaneError as exc:
                    errors.append(str(exc))
        self._registry = None
        self._control_plane = None
        try:
            scrub_node_host(self.root)
        except NodeError as exc:
            errors.append(str(exc))
        finally:
            for holder in holders:
                holder.stop(grace=1.0)
            self._lock.release()
            self._started = False
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False
        if errors:
            raise NodeError("; ".join(errors))

    # -- start phases -------------------------------------------------------------------------------

    def _make_folders(self) -> None:
        for folder in ("logs", "containerd/certs.d", "cni/net.d", "cni/ipam", "kubelet/root", "pod-logs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def _start_network(self) -> None:
        # An empty bridge holds the node IP and the `kubernetes` Service's ClusterIP: local,
        # non-loopback addresses that pods reach through their default route (the CNI bridge).
        _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        _run("ip", "addr", "add", f"{API_SERVICE_IP}/32", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")

    def _start_control_plane(self) -> None:
        assert self._bin_dir is not None
        self._control_plane = ControlPlane(
            self._bin_dir,
            root_dir=self.root / "cp",
            detached=self.detached,
            service_accounts=True,
            extra_sans=[API_SERVICE_IP, NODE_IP],
            extra_apiserver_args=[
                # Service-backed webhooks: dial the endpoint (a pod IP) since no kube-proxy runs.
                "--enable-aggregator-routing=true",
                # `kubectl logs`: the node's name does not resolve, its IP does.
                "--kubelet-preferred-address-types=InternalIP",
                *self.extra_apiserver_args,
            ],
        ).start()
        # In-cluster clients dial https://10.0.0.1:443; the apiserver listens on loopback.
        self._spawn(
            "api-forwarder",
            # -L names the node folder on the command line, so the scrub finds a leftover socat.
            ["socat", "-L", str(self.root / "logs" / "api-forwarder.lock"),
             f"TCP-LISTEN:443,bind={API_SERVICE_IP},fork,reuseaddr",
             f"TCP:127.0.0.1:{self.control_plane.port}"],
        )  # fmt: skip

    def _start_registry(self) -> None:
        self._registry = Registry(self.root / "registry", users=self.registry_users, detached=self.detached)
        self._registry.start()
        publish(self._registry, self.images, account=self.account)
        # LitmusChaos's `k8s` image is a shell and kubectl: runners start pods with it.
        kubectl = build_tool_image(self.bin_dir / "kubectl")
        self._registry.push(kubectl, f"{self.account}/k8s:3.11.0")

    def _spawn(self, name: str, command: list[str], env: Mapping[str, str] | None = None) -> _Process:
        log_path = self.logs_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=None if self.detached else _die_with_parent_hook(),
            )
        # The marker is the node folder: every daemon names it in its flags, except the
        # forwarder, whose pid is recorded here and in the state file.
        proc = _Process(name=name, pid=popen.pid, log=log_path, marker=command[0], popen=popen)
        self._processes.append(proc)
        return proc

    def _wait_for(self, proc: _Process, what: str, check: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        reason = "not checked yet"
        while True:
            if not proc.alive():
                raise NodeError(
                    f"{proc.name} exited while starting; last lines of {proc.log}:\n{_tail(proc.log)}"
                )
            result = check()
            if result is None:
                return
            reason = result
            if time.monotonic() > deadline:
                raise NodeError(
                    f"{what} not ready after {timeout:.0f}s ({reason}); "
                    f"last lines of {proc.log}:\n{_tail(proc.log)}"
                )
            time.sleep(0.2)

    def _start_containerd(self) -> None:
        root = self.root / "containerd"
        registry = self.registry
        hosts = root / "certs.d" / registry.host
        hosts.mkdir(parents=True, exist_ok=True)
        # The [host] form: a bare top-level `server` + `ca` makes containerd 1.6 answer 400.
        (hosts / "hosts.toml").write_text(
            f'server = "https://{registry.host}"\n\n[host."https://{registry.host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  ca = "{registry.ca_file}"\n'
        )
        (root / "config.toml").write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine gives no CAP_SYS_RESOURCE: runc could not lower oom_score_adj for sandboxes.
  restrict_oom_score_adj = true
  # Network namespaces under the node folder, not /var/run/netns: teardown finds them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.root / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{root / "certs.d"}"
"""
        )
        conflist = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": CNI_BRIDGE,
                    "isGateway": True,
                    # No iptables on this machine kind, and pods only talk to the host.
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.root / "cni" / "ipam"),
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "loopback"},
            ],
        }
        (self.root / "cni" / "net.d" / "10-chaos-node.conflist").write_text(json.dumps(conflist, indent=2))
        proc = self._spawn("containerd", ["containerd", "--config", str(root / "config.toml")])

        def serving() -> str | None:
            if not self.containerd_socket.exists():
                return "no socket yet"
            result = self.ctr("version", check=False)
            return None if result.returncode == 0 else result.stderr.strip()

        self._wait_for(proc, "containerd", serving, timeout=30)
        self.ctr("images", "import", "--all-platforms", str(self.images.pause_archive))

    def _start_kubelet(self) -> None:
        healthz = _free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine kind has cgroup v1 (hybrid)
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "address": NODE_IP,
            "port": _KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "failSwapOn": False,
            "podLogsDir": str(self.pod_logs_dir),
            "resolvConf": "/etc/resolv.conf",
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Faster than the defaults: tests wait on pod status and node readiness.
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "serializeImagePulls": False,
        }
        path = self.root / "kubelet" / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        kubelet = str(self.bin_dir / "kubelet")
        proc = self._spawn(
            "kubelet",
            [kubelet, f"--config={path}", f"--kubeconfig={self.kubeconfig}",
             f"--root-dir={self.root / 'kubelet' / 'root'}", f"--hostname-override={NODE_NAME}",
             f"--node-ip={NODE_IP}", "--v=1"],
        )  # fmt: skip

        def healthy() -> str | None:
            conn = http.client.HTTPConnection("127.0.0.1", healthz, timeout=2)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
            except OSError as exc:
                return str(exc)
            finally:
                conn.close()
            return None if response.status == 200 else body

        self._wait_for(proc, "kubelet /healthz", healthy, timeout=60)

    def _start_controllers(self) -> None:
        kubeconfig = str(self.kubeconfig)
        pki = self.control_plane.root_dir / "pki"
        common = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                  f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                  "--bind-address=127.0.0.1"]  # fmt: skip
        self._spawn(
            "kube-scheduler",
            [str(self.bin_dir / "kube-scheduler"), *common, f"--secure-port={_free_port()}"],
        )
        self._spawn(
            "kube-controller-manager",
            [str(self.bin_dir / "kube-controller-manager"), *common, f"--secure-port={_free_port()}",
             f"--service-account-private-key-file={pki / 'service-account.key'}",
             f"--root-ca-file={self.control_plane.ca_file}",
             f"--cluster-signing-cert-file={self.control_plane.client_ca_file}",
             f"--cluster-signing-key-file={self.control_plane.client_ca_key_file}",
             f"--service-cluster-ip-range={SERVICE_RANGE}",
             "--use-service-account-credentials=true",
             # Quicker reactions for tests: pod GC of finished pods is not needed.
             "--concurrent-job-syncs=5", "--node-monitor-period=2s"],
        )  # fmt: skip

    def _node_status(self) -> str | None:
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return "node not registered yet"
        node = json.loads(result.stdout)
        ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            return f"node not Ready ({ready[0].get('message', '') if ready else 'no condition'})"
        taints = node["spec"].get("taints") or []
        if taints:
            return f"node still tainted {[t['key'] for t in taints]}"
        result = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
        if result.returncode != 0:
            return "no default ServiceAccount yet (controller manager)"
        return None

    def _wait_node_ready(self, timeout: float = 120.0) -> None:
        kubelet = next(p for p in self._processes if p.name == "kubelet")
        self._wait_for(kubelet, f"node {NODE_NAME}", self._node_status, timeout=timeout)
        for proc in self._processes:
            if not proc.alive():
                raise NodeError(f"{proc.name} exited; last lines of {proc.log}:\n{_tail(proc.log)}")

    # -- stop phases --------------------------------------------------------------------------------

    def _delete_pods(self) -> None:
        """Stop the controllers, then delete every pod so the kubelet stops its containers."""
        if self._control_plane is None or not self._control_plane.ready():
            return
        kubelet_alive = any(p.name == "kubelet" and p.alive() for p in self._processes)
        for proc in list(self._processes):
            if proc.name in ("kube-controller-manager", "kube-scheduler"):
                proc.stop(grace=5.0)
                self._processes.remove(proc)
        self.kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False
        )
        if not kubelet_alive:
            return
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            left = self.kubectl("get", "pods", "-A", "-o", "name", check=False).stdout.split()
            if not left:
                break
            time.sleep(0.5)
        else:
            # The kubelet could not confirm every stop: force the objects away, the scrub kills the rest.
            self.kubectl(
                "delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0", check=False
            )
        # The kubelet tears sandboxes (network namespaces, IPs) down shortly after the pod objects go.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                break
            time.sleep(0.3)

    # -- detached state (make cluster-up NODE=1) ------------------------------------------------------

    def _hand_lock_to_holder(self) -> None:
        # The lock must outlive this process: a tiny child inherits the locked file and keeps it
        # until `down` stops it after the cleanup.
        popen = subprocess.Popen(
            ["sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(self._lock.fileno(),),
            start_new_session=True,
        )
        self._processes.insert(
            0, _Process(name="lock-holder", pid=popen.pid, log=Path("/dev/null"), marker="sleep", popen=popen)
        )

    def _write_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "account": self.account,
            "processes": [{"name": p.name, "pid": p.pid, "marker": p.marker} for p in self._processes],
        }
        (self.root / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, root_dir: Path = NODE_ROOT) -> NodeCluster | None:
        """The detached node cluster recorded under `root_dir`, or None if none is."""
        try:
            state = json.loads((root_dir / _STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NodeError(f"{root_dir / _STATE_FILE} is unreadable ({exc}): remove {root_dir}") from exc
        cluster = cls(Path(state["bin_dir"]), root_dir=root_dir, account=state["account"], detached=True)
        cluster._control_plane = ControlPlane.attach(root_dir / "cp")
        cluster._registry = Registry.attach(root_dir / "registry")
        cluster._processes = [
            _Process(
                name=p["name"],
                pid=int(p["pid"]),
                log=root_dir / "logs" / f"{p['name']}.log",
                marker=p["marker"],
            )
            for p in state["processes"]
        ]
        cluster._started = True
        return cluster

    def ready(self) -> bool:
        return (
            self._started
            and all(p.alive() for p in self._processes)
            and self._control_plane is not None
            and self._control_plane.ready()
            and self._node_status() is None
        )

    # -- helpers for tests and the demo -------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        result = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json")
        pod: dict[str, Any] = json.loads(result.stdout)
        return pod

    def wait_for_pod(
        self,
        namespace: str,
        name: str,
        condition: Any,
        *,
        timeout: float = 60.0,
        what: str = "the expected state",
    ) -> dict[str, Any]:
        """Poll the pod until `condition(pod)` is true; NodeError naming its last state if not."""
        deadline = time.monotonic() + timeout
        pod: dict[str, Any] = {}
        while True:
            result = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
            if result.returncode == 0:
                pod = json.loads(result.stdout)
                if condition(pod):
                    return pod
            if time.monotonic() > deadline:
                raise NodeError(
                    f"pod {namespace}/{name} did not reach {what} in {timeout:.0f}s; last status: "
                    f"{pod_summary(pod) if pod else result.stderr.strip()}"
                )
            time.sleep(0.25)

    def wait_for_pod_phase(
        self, namespace: str, name: str, phases: Iterable[str], *, timeout: float = 60.0
    ) -> dict[str, Any]:
        wanted = set(phases)
        return self.wait_for_pod(
            namespace, name, lambda pod: pod.get("status", {}).get("phase") in wanted,
            timeout=timeout, what=f"phase {'/'.join(sorted(wanted))}",
        )  # fmt: skip

    def wait_for_waiting_reason(
        self, namespace: str, name: str, reasons: Iterable[str], *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Wait until a container of the pod waits for one of `reasons` (e.g. ErrImagePull)."""
        wanted = set(reasons)
        return self.wait_for_pod(
            namespace, name, lambda pod: bool(set(waiting_reasons(pod)) & wanted),
            timeout=timeout, what=f"a container waiting with {'/'.join(sorted(wanted))}",
        )  # fmt: skip

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """What a container printed, read from the kubelet's pod log folder (all restarts)."""
        texts = []
        for folder in sorted(self.pod_logs_dir.glob(f"{namespace}_{pod}_*")):
            for log in sorted((folder / container).glob("*.log")):
                texts.append(log.read_text(errors="replace"))
        return "".join(texts)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the object `name` in `namespace`, oldest first."""
        result = self.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items


def waiting_reasons(pod: Mapping[str, Any]) -> list[str]:
    """Reasons of the containers (init containers included) currently waiting, e.g. ErrImagePull."""
    status = pod.get("status", {})
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    return [s["state"]["waiting"].get("reason", "") for s in statuses if "waiting" in s.get("state", {})]


def pod_summary(pod: Mapping[str, Any]) -> str:
    """One line: phase, and each container's state with its reason/message (for failures)."""
    status = pod.get("status", {})
    parts = [f"phase={status.get('phase')}"]
    for container in list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    ):
        state = container.get("state", {})
        for key, value in state.items():
            detail = value.get("reason", "") if isinstance(value, dict) else ""
            message = (value.get("message", "") if isinstance(value, dict) else "")[:200]
            parts.append(f"{container['name']}={key}:{detail} {message}".rstrip())
    return "; ".join(parts)

"""`python -m controlplane up|down|status`: one persistent local control plane for people.

`up` starts etcd and kube-apiserver detached from the terminal, keeps their state in
`.cache/controlplane/cluster/`, prints the kubeconfig and exits; running it again while the cluster
is up only prints the same. `down` stops the processes and removes the state. Tests do not use
this: they start their own throwaway `ControlPlane`.

`up --node` (`make cluster-up NODE=1`) starts the cluster with one real node instead
(`controlplane.node.NodeCluster`: kubelet, containerd, scheduler, controller manager and a local
registry seeded with the test images; root only, one per machine, state under NODE_ROOT); `down`
stops whichever is up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from controlplane.cluster import (
    PERSISTENT_DIR,
    ControlPlane,
    ControlPlaneError,
    ensure_binaries,
    processes_under,
)
from controlplane.node import NODE_ROOT, NodeCluster


@contextlib.contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    # Two `make cluster-up` at once must not both start a cluster in the same folder.
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    with (state_dir.parent / f"{state_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _describe(plane: ControlPlane, headline: str) -> None:
    kubectl = shlex.quote(str(plane.bin_dir / "kubectl"))
    kubeconfig = shlex.quote(str(plane.kubeconfig))
    print(headline)
    print(f"  server:     {plane.server}")
    print(f"  kubeconfig: {plane.kubeconfig}")
    print(f"  logs:       {plane.logs_dir}")
    print("try:")
    print(f"  {kubectl} --kubeconfig {kubeconfig} get ns")
    print(f"or: export KUBECONFIG={kubeconfig}")


def _remove_orphans(state_dir: Path) -> None:
    """Kill processes and remove a folder left by an `up` that was killed before writing its state."""
    for pid in processes_under(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state_dir, ignore_errors=True)


def up(state_dir: Path, port: int | None) -> int:
    with _exclusive(state_dir):
        existing = ControlPlane.attach(state_dir)
        if existing is not None:
            if existing.ready():
                _describe(existing, "control plane already up")
                return 0
            print(
                "found a stopped or broken control plane: cleaning it up and starting afresh", file=sys.stderr
            )
            existing.stop()
        else:
            _remove_orphans(state_dir)
        plane = ControlPlane(ensure_binaries(), root_dir=state_dir, port=port, detached=True).start()
        _describe(plane, f"control plane up in {plane.startup_seconds:.1f}s")
        print("stop it with: make cluster-down (or python -m controlplane down)")
        return 0


def _describe_node(cluster: NodeCluster, headline: str) -> None:
    _describe(cluster.control_plane, headline)
    registry = cluster.registry
    user, password = registry.credentials()
    print(f"node {cluster.node_name} runs pods; registry https://{registry.host} (CA {registry.ca_file})")
    print(f"  user {user}, password {password}; images like {cluster.image('go-runner:3.11.0')}")
    print(f"  pod logs: {cluster.pod_logs_dir}; node logs: {cluster.logs_dir}")


def up_node() -> int:
    existing = NodeCluster.attach(NODE_ROOT)
    if existing is not None:
        if existing.ready():
            _describe_node(existing, "node cluster already up")
            return 0
        print("found a stopped or broken node cluster: cleaning it up and starting afresh", file=sys.stderr)
        existing.stop()
    cluster = NodeCluster(detached=True).start()
    _describe_node(cluster, f"node cluster up in {cluster.startup_seconds:.1f}s")
    print("stop it with: make cluster-down (or python -m controlplane down)")
    return 0


def down(state_dir: Path) -> int:
    node = NodeCluster.attach(NODE_ROOT)
    if node is not None:
        node.stop()
        print("node cluster stopped and its state removed")
    with _exclusive(state_dir):
        plane = ControlPlane.attach(state_dir)
        if plane is None:
            _remove_orphans(state_dir)
            print("control plane not running")
            return 0
        plane.stop()
        print("control plane stopped and its state removed")
        return 0


def status(state_dir: Path) -> int:
    node = NodeCluster.attach(NODE_ROOT)
    if node is not None:
        if not node.ready():
            print("node cluster found but not ready: run `make cluster-down` then `make cluster-up NODE=1`")
            return 1
        _describe_node(node, "node cluster up")
        return 0
    plane = ControlPlane.attach(state_dir)
    if plane is None:
        print("control plane not running (start it with: make cluster-up)")
        return 1
    if not plane.ready():
        print("control plane state found but not ready: run `make cluster-down` then `make cluster-up`")
        return 1
    _describe(plane, "control plane up")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=PERSISTENT_DIR,
        help=f"where the persistent cluster keeps its state (default: {PERSISTENT_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the control plane in the background (idempotent)")
    up_parser.add_argument("--port", type=int, default=None, help="apiserver port (default: a free one)")
    up_parser.add_argument(
        "--node", action="store_true", help="with one real node and a local registry (root; one per machine)"
    )
    commands.add_parser("down", help="stop the control plane and remove its state")
    commands.add_parser("status", help="say whether the control plane is up")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    try:
        if args.command == "up":
            return up_node() if args.node else up(state_dir, args.port)
        if args.command == "down":
            return down(state_dir)
        return status(state_dir)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

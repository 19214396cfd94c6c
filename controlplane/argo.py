"""Argo Workflows' workflow-controller on the real node, configured the way LitmusChaos runs it.

LitmusChaos runs chaos experiments as Argo Workflows: a namespaced workflow-controller with an
`instanceID` in its ConfigMap, so every step pod carries the label
`workflows.argoproj.io/controller-instanceid` (what the webhook's `argo-chaos-step` rule matches).
Step pods have three images: `init` and `wait` run the executor image (`argoexec`), `main` the
step's own image, started through the executor (`argoexec emissary -- ...`).

The controller and `argoexec` are built from the Go module proxy by `build.sh argo` (minutes,
once, cached); the executor image is the busybox test image plus that `argoexec`
(`controlplane.images.build_argoexec_image`). The controller runs out of cluster with the admin
kubeconfig and dies with the Python process that started it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from controlplane.cluster import _die_with_parent_hook, _Process, _tail, ensure_binaries
from controlplane.node import NodeCluster, NodeError

__all__ = ["ARGO_VERSION", "EXECUTOR_IMAGE", "WorkflowController", "argo_bin_dir", "argo_source_dir"]

ARGO_VERSION = os.environ.get("ARGO_VERSION", "v3.7.2")
_MODULE = "github.com/argoproj/argo-workflows/v3"
#: The executor image the controller puts in step pods, as upstream names it: the webhook
#: rewrites it to `<registry>/<account>/argoexec:<version>`.
EXECUTOR_IMAGE = f"quay.io/argoproj/argoexec:{ARGO_VERSION}"


def argo_bin_dir(quiet: bool = True) -> Path:
    """The folder with `workflow-controller` and `argoexec` (built on first use)."""
    return ensure_binaries(components=("node", "argo"), quiet=quiet) / f"argo-{ARGO_VERSION}"


def argo_source_dir() -> Path:
    """Argo's module in the Go module cache (its CRDs are there), downloaded if missing."""
    go = shutil.which("go")
    if go is None:
        raise NodeError("no Go toolchain on PATH: Argo's CRDs come from its Go module")
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout
    source = Path(modcache.strip()) / f"{_MODULE}@{ARGO_VERSION}"
    if not source.is_dir():
        result = subprocess.run(
            [go, "mod", "download", f"{_MODULE}@{ARGO_VERSION}"],
            capture_output=True, text=True, check=False, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        if result.returncode != 0 or not source.is_dir():
            raise NodeError(f"cannot download {_MODULE}@{ARGO_VERSION}: {result.stderr.strip()}")
    return source


class WorkflowController:
    """A namespaced workflow-controller for `namespace` with `instance_id`; a context manager."""

    def __init__(self, cluster: NodeCluster, namespace: str, *, instance_id: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.instance_id = instance_id
        self._process: _Process | None = None

    @property
    def log_file(self) -> Path:
        return self.cluster.logs_dir / f"workflow-controller-{self.namespace}.log"

    def install_crds(self) -> None:
        crds = sorted((argo_source_dir() / "manifests/base/crds/minimal").glob("argoproj.io_*.yaml"))
        for crd in crds:
            self.cluster.kubectl("apply", "--server-side", "-f", str(crd))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def start(self, timeout: float = 60.0) -> Self:
        bin_dir = argo_bin_dir()
        self.install_crds()
        self.cluster.kubectl(
            "create", "configmap", "workflow-controller-configmap", "-n", self.namespace,
            f"--from-literal=instanceID={self.instance_id}",
        )  # fmt: skip
        with self.log_file.open("ab") as log:
            popen = subprocess.Popen(
                [str(bin_dir / "workflow-controller"), f"--kubeconfig={self.cluster.kubeconfig}",
                 "--namespaced", f"--namespace={self.namespace}", f"--managed-namespace={self.namespace}",
                 f"--executor-image={EXECUTOR_IMAGE}", "--loglevel=info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # Its leader election refuses to start without an identity.
                env={**os.environ, "LEADER_ELECTION_IDENTITY": f"node-tests-{os.getpid()}"},
                start_new_session=True, preexec_fn=_die_with_parent_hook(),
            )  # fmt: skip
        self._process = _Process(
            name="workflow-controller",
            pid=popen.pid,
            log=self.log_file,
            marker="workflow-controller",
            popen=popen,
        )
        deadline = time.monotonic() + timeout
        while "Starting Workflow Controller" not in self.log_file.read_text(errors="replace"):
            if not self._process.alive() or time.monotonic() > deadline:
                self.stop()
                raise NodeError(
                    f"workflow-controller did not start; last lines of its log:\n{_tail(self.log_file)}"
                )
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace=5.0)
            if self._process.popen is not None:
                self._process.popen.wait()
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

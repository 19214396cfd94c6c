"""Small runnable test images, built without a container engine, for the real-node tier.

Two OCI images are built with umoci into an OCI layout and cached, keyed by their content:

* `busybox`: Debian's static busybox, `/bin/bash` (a wrapper to busybox `sh`: chaos pods run
  `/bin/bash -c ...`), and stand-ins for the chaos tools the example pods call (`./experiments`,
  `./helpers` in the working folder `/litmus`). With no command it says which image it is and
  idles until stopped (SIGTERM ends it at once): pods stay Running, as a runner or a log watcher
  would. Every chaos image name (`CHAOS_TEST_IMAGES`) is published from it.
* tool images (`build_tool_image`): the busybox image plus kubectl (published as LitmusChaos's
  `k8s` image) or Argo's `argoexec`.
* `pause`: the kubelet's sandbox image, compiled from the `pause.c` of the Kubernetes sources in
  the Go module cache; imported into containerd, never pulled.

`publish(registry, account)` pushes the busybox image under every name in `CHAOS_TEST_IMAGES`, so
that `<registry>/<account>/go-runner:3.11.0` and the rest resolve, as the webhook rewrites them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane.registry import Registry, RegistryError

__all__ = [
    "CHAOS_TEST_IMAGES",
    "PAUSE_IMAGE",
    "TestImages",
    "build_test_images",
    "build_tool_image",
    "node_cache_dir",
    "publish",
]

#: `name:tag` of every image the example chaos pods (examples/pods) use, after a rewrite to
#: `<registry>/<account>/<name>:<tag>`; each is the busybox test image.
CHAOS_TEST_IMAGES: tuple[str, ...] = (
    "go-runner:3.11.0",
    "go-runner:latest",
    "chaos-runner:3.11.0",
    "k8s:3.11.0",
    "litmus-checker:3.11.0",
    "chaos-ddcr:1.47.0",
    "chaos-ddcr-faults:1.47.0",
    "chaos-log-watcher:1.47.0",
    "argoexec:v3.4.16",
    "argoexec:v3.7.2",
    "iproute2:latest",
    "busybox:1.36",
)

#: The sandbox image the node's containerd is configured with (imported, never pulled).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

KUBERNETES_VERSION = os.environ.get("KUBERNETES_VERSION", "v1.35.4")

# Bump when the recipe below changes in a way the hashed inputs do not show.
_RECIPE = "3"
_BUSYBOX = Path("/bin/busybox")
_APPLETS = (
    "sh", "echo", "sleep", "cat", "ls", "env", "id", "hostname", "true", "false", "wget", "grep",
    "sed", "test", "[", "mkdir", "cp", "rm", "date", "printf", "nc", "kill", "ps", "wc", "head",
)  # fmt: skip
_ENTRYPOINT = """#!/bin/sh
# Chaos test image: says which image it is, then runs its arguments or idles until stopped.
echo "chaos test image on $(hostname): ${*:-idle}"
trap 'exit 0' TERM INT
if [ $# -gt 0 ]; then "$@" & else sleep 2147483647 & fi
wait $!
"""
_BASH = """#!/bin/sh
# Chaos pods run /bin/bash -c ...: busybox sh understands what they ask.
exec /bin/sh "$@"
"""
_TOOL = """#!/bin/sh
# Stand-in for a chaos tool: reports its arguments and succeeds.
echo "$(basename "$0") $*: done"
"""
_PASSWD = "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"


def node_cache_dir() -> Path:
    """Outside the checkout, like the control plane's binaries: every clone reuses one build."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("NODE_CACHE", str(Path(base) / "chaos-registry-webhook" / "node")))


@dataclass(frozen=True)
class TestImages:
    """The built OCI layout: skopeo sources for both images."""

    __test__ = False  # not a pytest test class
    layout: Path

    @property
    def busybox(self) -> str:
        return f"oci:{self.layout}:busybox"

    @property
    def pause(self) -> str:
        return f"oci:{self.layout}:pause"

    @property
    def pause_archive(self) -> Path:
        """The pause image as a docker-archive tagged `PAUSE_IMAGE`, for `ctr images import`."""
        return self.layout.parent / "pause.tar"


def _run(*command: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RegistryError(
            f"building the test images: `{' '.join(command)}` failed: {result.stderr.strip()[-800:]}"
        )


def _require(*binaries: str) -> None:
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    if missing or not _BUSYBOX.is_file():
        missing += [] if _BUSYBOX.is_file() else ["busybox-static"]
        raise RegistryError(
            f"test images need {', '.join(missing)}: run `bash controlplane/install-node-deps.sh` (as root)"
        )


def _pause_source() -> Path:
    """pause.c of the Kubernetes release the node runs, from the Go module cache (downloaded once)."""
    go = shutil.which("go")
    if go is None:
        raise RegistryError("no Go toolchain on PATH: the pause image is built from the Kubernetes sources")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    modcache = subprocess.run(
        [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{KUBERNETES_VERSION}" / "build/pause/linux/pause.c"
    if not source.is_file():
        result = subprocess.run(
            [go, "mod", "download", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
            capture_output=True, text=True, check=False, env=env, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        if result.returncode != 0 or not source.is_file():
            raise RegistryError(
                f"cannot get k8s.io/kubernetes@{KUBERNETES_VERSION} for pause.c: {result.stderr.strip()}"
            )
    return source


def _key(pause_source: Path) -> str:
    digest = hashlib.sha256(_RECIPE.encode())
    for part in (_BUSYBOX.read_bytes(), pause_source.read_bytes(), _ENTRYPOINT.encode(), _BASH.encode(),
                 _TOOL.encode(), " ".join(_APPLETS).encode()):  # fmt: skip
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _write(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _busybox_rootfs(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    shutil.copy2(_BUSYBOX, root / "bin" / "busybox")
    for applet in _APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    _write(root / "bin" / "bash", _BASH)
    _write(root / "entrypoint", _ENTRYPOINT)
    for tool in ("experiments", "helpers"):
        _write(root / "litmus" / tool, _TOOL)
    for folder in ("tmp", "etc", "var/run", "proc", "sys", "dev"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    _write(root / "etc" / "passwd", _PASSWD, 0o644)
    _write(root / "etc" / "group", "root:x:0:\nnobody:x:65534:\n", 0o644)


def _build(target: Path, pause_source: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="images-", dir=target.parent))
    try:
        _run("gcc", "-Os", "-static", "-DVERSION=3.10", "-o", str(work / "pause"), str(pause_source))
        bb_root, pause_root = work / "busybox-rootfs", work / "pause-rootfs"
        _busybox_rootfs(bb_root)
        pause_root.mkdir()
        shutil.copy2(work / "pause", pause_root / "pause")
        layout = work / "oci"
        _run("umoci", "init", "--layout", str(layout))
        for tag, rootfs, config in (
            ("busybox", bb_root, ["--config.entrypoint", "/entrypoint", "--config.workingdir", "/litmus",
                                  "--config.env", "PATH=/bin"]),
            ("pause", pause_root, ["--config.entrypoint", "/pause"]),
        ):  # fmt: skip
            image = f"{layout}:{tag}"
            _run("umoci", "new", "--image", image)
            _run("umoci", "insert", "--image", image, str(rootfs), "/")
            _run("umoci", "config", "--image", image, "--os", "linux", "--architecture", "amd64", *config)
        _run("skopeo", "--insecure-policy", "copy", "--quiet", f"oci:{layout}:pause",
             f"docker-archive:{work / 'pause.tar'}:{PAUSE_IMAGE}")  # fmt: skip
        shutil.rmtree(bb_root)
        shutil.rmtree(pause_root)
        (work / "pause").unlink()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def build_test_images(cache_dir: Path | None = None) -> TestImages:
    """Build (or reuse) the test images; a warm cache costs a hash of two small files."""
    _require("umoci", "skopeo", "gcc")
    pause_source = _pause_source()
    root = (cache_dir or node_cache_dir()) / "images"
    root.mkdir(parents=True, exist_ok=True)
    target = root / _key(pause_source)
    if not target.is_dir():
        with (root / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.is_dir():
                _build(target, pause_source)
    return TestImages(layout=target / "oci")


def build_tool_image(binary: Path, *, entrypoint: str | None = None, cache_dir: Path | None = None) -> str:
    """The busybox test image plus one static binary in `/bin` (cached by the binary's content).

    `kubectl` makes LitmusChaos's `k8s` image (a shell and kubectl, with in-cluster config);
    `argoexec` makes Argo's executor image (step pods run `argoexec init`, `argoexec wait`, and
    `main` through the copy the init container makes). Returns a skopeo source. The binaries
    are built by `build.sh`, never committed.
    """
    _require("umoci", "skopeo")
    digest = hashlib.sha256(_RECIPE.encode())
    digest.update((entrypoint or "").encode())
    with binary.open("rb") as content:
        for chunk in iter(lambda: content.read(1 << 20), b""):
            digest.update(chunk)
    root = (cache_dir or node_cache_dir()) / "images"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{binary.name}-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        with (root / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.is_dir():
                _build_tool_image(binary, entrypoint, target)
    return f"oci:{target / 'oci'}:{binary.name}"


def _build_tool_image(binary: Path, entrypoint: str | None, target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{binary.name}-", dir=target.parent))
    try:
        rootfs = work / "rootfs"
        _busybox_rootfs(rootfs)
        shutil.copy2(binary, rootfs / "bin" / binary.name)
        image = f"{work / 'oci'}:{binary.name}"
        _run("umoci", "init", "--layout", str(work / "oci"))
        _run("umoci", "new", "--image", image)
        _run("umoci", "insert", "--image", image, str(rootfs), "/")
        _run("umoci", "config", "--image", image, "--os", "linux", "--architecture", "amd64",
             "--config.entrypoint", entrypoint or "/entrypoint", "--config.env", "PATH=/bin")  # fmt: skip
        shutil.rmtree(rootfs)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def publish(
    registry: Registry,
    images: TestImages,
    *,
    account: str = "chaos",
    names: Iterable[str] = CHAOS_TEST_IMAGES,
) -> list[str]:
    """Push the busybox test image as `<registry>/<account>/<name>` for each name; returns the refs."""
    targets: Sequence[str] = [f"{account}/{name}" for name in names]
    return registry.push_many(images.busybox, targets)

"""A local Kubernetes control plane (etcd + kube-apiserver as plain processes) for tests and demos.

See `controlplane.cluster` for the Python API and `python -m controlplane --help` for the
persistent cluster people start with `make cluster-up`.
"""

from controlplane.cluster import (
    BUILD_SCRIPT,
    PERSISTENT_DIR,
    ControlPlane,
    ControlPlaneError,
    KubectlError,
    ensure_binaries,
    processes_under,
)

__all__ = [
    "BUILD_SCRIPT",
    "PERSISTENT_DIR",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "ensure_binaries",
    "processes_under",
]

"""The webhook's own image for the real-node tier: the repository's Dockerfile built without a
container engine by `controlplane/build-image.sh` (buildah on a Debian stand-in for the Dockerfile's
base), as an OCI archive that skopeo pushes into the node's registry.

The archive is cached by the script under a key over its inputs, so only the first run after a
change of the sources builds (minutes); later runs cost a hash of the sources.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from controlplane.cluster import ControlPlaneError

__all__ = ["BUILD_IMAGE_SCRIPT", "BuiltImage", "build_webhook_image", "chart_image"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_IMAGE_SCRIPT = Path(__file__).resolve().parent / "build-image.sh"
CHART = REPO_ROOT / "charts" / "chaos-registry-webhook"


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    archive: Path
    #: Seconds the script took (a warm cache: well under a second).
    seconds: float

    @property
    def source(self) -> str:
        """The archive as a skopeo source reference."""
        return f"oci-archive:{self.archive}"


def chart_image() -> str:
    """The image the chart runs by default: values.yaml image.repository at the chart's appVersion."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"


def build_webhook_image(reference: str | None = None, *, quiet: bool = True) -> BuiltImage:
    """Build (or reuse) the image; ControlPlaneError with the script's last words if it fails.

    Unless `quiet`, the script's progress goes to stderr as it happens: a cold build takes minutes
    and silence would look like a hang.
    """
    reference = reference or chart_image()
    began = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=15)
    with subprocess.Popen(
        ["bash", str(BUILD_IMAGE_SCRIPT), reference],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None and process.stdout is not None
        for line in process.stderr:
            tail.append(line.rstrip())
            if not quiet:
                print(line, end="", file=sys.stderr, flush=True)
        lines = process.stdout.read().strip().splitlines()
        returncode = process.wait()
    seconds = round(time.monotonic() - began, 2)
    if returncode != 0 or not lines:
        text = "\n".join(tail)
        raise ControlPlaneError(f"{BUILD_IMAGE_SCRIPT.name} {reference} failed ({returncode}):\n{text}")
    archive = Path(lines[-1])
    if not archive.is_file():
        raise ControlPlaneError(f"{BUILD_IMAGE_SCRIPT.name} printed {archive}, which is not a file")
    return BuiltImage(reference, archive, seconds)

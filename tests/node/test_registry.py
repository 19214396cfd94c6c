"""The local registry of the node tier: TLS, htpasswd auth, and a log that names who pulled what.

The node tests prove "pulled with the copied pull secret" from this log, so it is tested here
against a real client (skopeo) before any kubelet is involved.
"""

from __future__ import annotations

import subprocess

from controlplane.images import TestImages, publish
from controlplane.registry import Registry


def _inspect(registry: Registry, image: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "inspect", "--creds", f"{user}:{password}", "--cert-dir", str(registry.cert_dir),
         f"docker://{registry.host}/{image}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_published_images_are_pulled_as_the_authenticated_user(registry: Registry, test_images: TestImages):
    refs = publish(registry, test_images, account="chaos", names=["go-runner:3.11.0"])
    assert refs == [f"{registry.host}/chaos/go-runner:3.11.0"]

    result = _inspect(registry, "chaos/go-runner:3.11.0", "intruder", "other-s3cret")

    assert result.returncode == 0, result.stderr
    pulls = registry.pulls(image="chaos/go-runner:3.11.0")
    assert [pull.user for pull in pulls] == ["intruder"]
    assert registry.pulls(user="puller", image="chaos/go-runner:3.11.0") == []


def test_a_wrong_password_is_refused_and_logged_with_the_claimed_user(
    registry: Registry, test_images: TestImages
):
    publish(registry, test_images, names=["chaos-runner:3.11.0"])

    result = _inspect(registry, "chaos/chaos-runner:3.11.0", "puller", "wrong")

    assert result.returncode != 0
    assert "unauthorized" in result.stderr
    refused = [r for r in registry.requests() if r.status == 401 and r.image == "chaos/chaos-runner:3.11.0"]
    assert [r.user for r in refused] == ["puller"]
    assert registry.pulls(image="chaos/chaos-runner:3.11.0") == []


def test_a_missing_image_is_a_logged_404_naming_the_image(registry: Registry):
    result = _inspect(registry, "chaos/not-published:9.9", "puller", "pull-s3cret")

    assert "manifest unknown" in result.stderr
    missing = [r for r in registry.requests() if r.image == "chaos/not-published:9.9"]
    assert [(r.status, r.user, r.error) for r in missing] == [(404, "puller", "manifest unknown")]


def test_the_registry_serves_tls_only_with_its_own_ca(registry: Registry):
    # Without the CA, clients must refuse the certificate: the node needs certs.d to trust it.
    result = subprocess.run(
        ["skopeo", "inspect", "--creds", "puller:pull-s3cret", f"docker://{registry.host}/chaos/x:1"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert "certificate signed by unknown authority" in result.stderr

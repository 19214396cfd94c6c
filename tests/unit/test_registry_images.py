"""The pure parts of the registry-aware features: release lists and versions, the images a scope
needs, the mirror inputs, pull-secret parsing, the ImagesAvailable condition, and the admission
warning read from the snapshot (no I/O on that path)."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from webhook.cli.registry import skopeo_sync_documents
from webhook.core.availability import Availability, ScopeAvailability, images_condition
from webhook.core.images import release_images, scope_images
from webhook.core.models import Scope, load_defaults
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.core.status import SecretSources, attention_needed, desired_status
from webhook.registrycheck.check import SecretRef, secret_credentials
from webhook.registrycheck.client import Credential, DockerConfigError, credentials_from_dockerconfig

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _config(**registry: object) -> CompiledConfig:
    entry = RegistryEntry(
        name="acme",
        scope=Scope(("acme",)),
        created=EPOCH,
        allow_overrides=True,
        **{"server": "mirror.acme.corp", "registry_account": "chaos", **registry},  # type: ignore[arg-type]
    )
    return CompiledConfig(load_defaults(), [entry])


def test_a_configmap_setting_only_a_version_keeps_the_release_image_list() -> None:
    defaults = load_defaults({"releases": {"litmus": {"version": "3.12.0"}}})
    assert defaults.releases["litmus"].version == "3.12.0"
    assert defaults.releases["litmus"].images == load_defaults().releases["litmus"].images
    assert defaults.releases["hce"] == load_defaults().releases["hce"]


def test_versions_given_on_the_command_line_win_and_fixed_tags_stay() -> None:
    config = _config()
    pairs = release_images(config, {"litmus": "3.12.0"}, ["litmus"])
    listed = [image for _, image in pairs]
    assert "docker.io/litmuschaos/go-runner:3.12.0" in listed
    assert "docker.io/litmuschaos/argoexec:v3.3.1" in listed, "Argo's images keep their own tag"
    assert {release for release, _ in pairs} == {"litmus"}


@pytest.mark.parametrize(
    ("versions", "releases", "message"),
    [
        ({"litmus": "3.12/0"}, None, "litmus version: '3.12/0' is not a valid version"),
        ({}, ["chaos-mesh"], "unknown release 'chaos-mesh' (known: hce, litmus)"),
    ],
)
def test_bad_versions_and_unknown_releases_are_named(
    versions: dict[str, str], releases: list[str] | None, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        release_images(_config(), versions, releases)
    assert message in str(error.value)


def test_a_scope_needs_each_release_image_rewritten_and_its_custom_images_verbatim() -> None:
    config = _config(
        custom_enabled=True,
        custom_images=MappingProxyType(
            {"ddcrLib": "corp.io/faults-lib:9", "ddcr": "corp.io/ddcr:1.47.0", "goRunner": "corp.io/go:1"}
        ),
    )
    needed = scope_images(config, Scope(("acme",)), [("hce", "docker.io/harness/chaos-ddcr-faults:1.47.0")])
    assert {(n.component, n.target, n.release) for n in needed.images} == {
        # the faults image is ddcrFault in fault pods (a registry rewrite), ddcrLib in helper pods
        ("ddcrFault", "mirror.acme.corp/chaos/chaos-ddcr-faults:1.47.0", "hce"),
        ("ddcrLib", "corp.io/faults-lib:9", "hce"),
        # custom images no listed source maps to are needed all the same
        ("ddcr", "corp.io/ddcr:1.47.0", "custom"),
        ("goRunner", "corp.io/go:1", "custom"),
    }
    targets = {n.target for n in needed.images}
    assert targets == {
        "mirror.acme.corp/chaos/chaos-ddcr-faults:1.47.0",
        "corp.io/faults-lib:9",
        "corp.io/ddcr:1.47.0",
        "corp.io/go:1",
    }


def test_an_unconfigured_scope_keeps_its_images() -> None:
    config = CompiledConfig(load_defaults(), [])
    needed = scope_images(config, Scope(("other",)), [("hce", "docker.io/harness/chaos-ddcr:1.47.0")])
    assert not needed.configured
    assert [n.target for n in needed.images] == ["docker.io/harness/chaos-ddcr:1.47.0"]


def test_skopeo_sync_groups_by_destination_and_leaves_custom_images_out() -> None:
    config = _config(custom_enabled=True, custom_images=MappingProxyType({"ddcr": "corp.io/x/renamed:1"}))
    sources = [
        ("hce", "docker.io/harness/chaos-ddcr:1.47.0"),
        ("hce", "docker.io/harness/chaos-log-watcher:1.47.0"),
    ]
    needed = scope_images(config, Scope(("acme",)), sources)
    documents, left = skopeo_sync_documents([needed])
    assert documents == [
        ("mirror.acme.corp/chaos", {"docker.io": {"images": {"harness/chaos-log-watcher": ["1.47.0"]}}})
    ]
    # A custom image is whatever the user named, not a copy of the release image: nothing to sync.
    assert left == []
    assert {n.target: n.custom for n in needed.images} == {
        "corp.io/x/renamed:1": True,
        "mirror.acme.corp/chaos/chaos-log-watcher:1.47.0": False,
    }


def test_dockerconfigjson_credentials_by_registry_host_never_printed() -> None:
    auth = base64.b64encode(b"robot:pa:ss").decode()
    found = credentials_from_dockerconfig(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "mirror:5000": {"username": "u", "password": "p"},
                }
            }
        )
    )
    assert found == {"docker.io": Credential("robot", "pa:ss"), "mirror:5000": Credential("u", "p")}
    assert "pa:ss" not in repr(found)
    with pytest.raises(DockerConfigError, match="has no auths object"):
        credentials_from_dockerconfig("{}")
    ref = SecretRef("ns", "s")
    assert secret_credentials(ref, {}) == "Secret ns/s has no .dockerconfigjson key"
    assert secret_credentials(ref, {".dockerconfigjson": base64.b64encode(b"nope").decode()}) == (
        "Secret ns/s: .dockerconfigjson is not JSON"
    )


def test_images_condition_names_the_unavailable_images() -> None:
    bad = ScopeAvailability(3, (("m/a:1", "missing", "manifest unknown (HTTP 404)"),), "2026-01-01T00:00:00Z")
    condition = images_condition(bad, 4)
    assert (condition["status"], condition["reason"], condition["observedGeneration"]) == (
        "False",
        "ImagesMissing",
        4,
    )
    assert condition["message"].startswith("1 of 3 images are not available: m/a:1 (missing) (checked 2026-")
    mixed = ScopeAvailability(3, (("m/a:1", "missing", "x"), ("m/b:1", "unreachable", "y")), "t")
    assert images_condition(mixed, 1)["reason"] == "ImagesUnavailable"
    assert images_condition(ScopeAvailability(3, (), "t"), 1)["status"] == "True"


class _Record:
    name, generation, problems = "acme", 2, ()

    def __init__(self, status: dict[str, object]) -> None:
        self.status = status


def test_status_carries_the_condition_and_the_list_and_an_event_when_it_turns_false() -> None:
    config = _config()
    sources = SecretSources.of("chaos-system", ())
    bad = Availability.of({"acme": ScopeAvailability(2, (("m/a:1", "missing", "404"),), "t")})
    without = desired_status(config, _Record({}), sources, EPOCH)
    assert "unavailableImages" not in without
    assert "ImagesAvailable" not in {c["type"] for c in without["conditions"]}, "off: no condition"
    status = desired_status(config, _Record(without), sources, EPOCH, availability=bad)
    assert status["unavailableImages"] == [{"image": "m/a:1", "reason": "missing: 404"}]
    assert [reason for reason, _ in attention_needed(without, status)] == ["ImagesUnavailable"]
    assert attention_needed(status, status) == [], "one Event per turn to False"
    good = Availability.of({"acme": ScopeAvailability(2, (), "t")})
    fixed = desired_status(config, _Record(status), sources, EPOCH, availability=good)
    assert "unavailableImages" not in fixed


def test_admission_warns_about_a_rewritten_image_the_snapshot_knows_unavailable() -> None:
    config = _config()
    pod = {
        "metadata": {"name": "p", "labels": {"chaosUID": "u"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "litmuschaos/go-runner:1"},
                {"name": "d", "image": "litmuschaos/chaos-runner:1"},
            ]
        },
    }
    labels = {"ns": {"chaosregistry.io/account": "acme"}}
    unavailable = {"mirror.acme.corp/chaos/go-runner:1": "missing: 404"}
    mutation = Snapshot(config, labels, unavailable).admit(pod, "ns")
    assert [op["value"] for op in mutation.patch if op["path"].endswith("/image")] == [
        "mirror.acme.corp/chaos/go-runner:1",
        "mirror.acme.corp/chaos/chaos-runner:1",
    ], "admitted and rewritten all the same"
    assert mutation.warnings == (
        "image 'mirror.acme.corp/chaos/go-runner:1' was not available in its registry at the last check "
        "(missing: 404): the pod may not pull it",
    )
    assert Snapshot(config, labels).admit(pod, "ns").warnings == ()


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"kind": "Secret", "metadata": ["x"]}, "document 1: metadata: must be a mapping"),
        (
            {"kind": "Secret", "metadata": {"name": "s"}, "stringData": "x"},
            "document 1: stringData: must be a mapping",
        ),
        (
            {"kind": "Secret", "metadata": {"name": 5}},
            "document 1: metadata.name and metadata.namespace must be strings",
        ),
        (
            {"kind": "ConfigMap", "metadata": {"name": "s"}},
            "document 1: --secrets reads Secret documents only",
        ),
    ],
)
def test_hostile_secret_files_get_one_line_naming_the_document(
    tmp_path: Path, document: dict[str, object], problem: str
) -> None:
    from webhook.cli.main import main

    path = tmp_path / "secrets.yaml"
    path.write_text(json.dumps(document))
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", "-c", "examples/config", "--secrets", str(path), "--scope", "acme"], out, err)
    assert (code, out.getvalue()) == (1, "")
    assert err.getvalue() == f"error: {path}: {problem}\n"


def test_a_secret_that_is_not_base64_or_not_json_is_named_without_its_content() -> None:
    ref = SecretRef("ns", "s")
    assert (
        secret_credentials(ref, {".dockerconfigjson": "%%%s3cret"})
        == "Secret ns/s: .dockerconfigjson is not base64"
    )
    assert secret_credentials(ref, {".dockerconfigjson": 7}) == "Secret ns/s has no .dockerconfigjson key"
    encoded = base64.b64encode(b'{"auths": {"h": "s3cret"}}').decode()
    assert secret_credentials(ref, {".dockerconfigjson": encoded}) == (
        "Secret ns/s: .dockerconfigjson auths['h'] is not an object"
    )

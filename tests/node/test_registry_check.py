"""`chaos-registry images` and `check` against the real local registry (TLS with its own CA,
htpasswd): present, missing, wrong credentials, secret missing, registry down, the CA; and the mirror
inputs fed to skopeo actually filling an empty registry account until a second `check` passes."""

from __future__ import annotations

import io
import json
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.images import TestImages
from controlplane.registry import Registry
from webhook.cli.main import main

PULLER, PASSWORD = "puller", "pull-s3cret"
SECRET_NAMESPACE = "chaos-system"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def _config(
    folder: Path,
    server: str,
    *,
    images: list[str],
    registries: list[tuple[str, str, str | None]],
) -> str:
    """A config folder: one account registry per (account scope, registry account, secret or None)
    at `server`, and a defaults ConfigMap whose `hce` release needs `images`."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chaos-registry-defaults"},
            "data": {
                "config.yaml": yaml.safe_dump({"releases": {"hce": {"version": "1.0.0", "images": images}}})
            },
        }
    ]
    for scope, account, secret in registries:
        registry: dict[str, Any] = {"server": server, "account": account, "type": "Public"}
        if secret is not None:
            registry.update(type="Private", secretName=secret, secretNamespace=SECRET_NAMESPACE)
        documents.append(
            {
                "apiVersion": "chaosregistry.io/v1alpha1",
                "kind": "ChaosImageRegistry",
                "metadata": {"name": scope},
                "spec": {"scope": {"account": scope}, "registry": registry},
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump_all(documents))
    return str(folder)


def _secrets(folder: Path, registry: Registry, users: dict[str, tuple[str, str]]) -> str:
    """Pull Secrets, by name: (user, password) each, for `registry`."""
    documents = []
    for name, (user, password) in users.items():
        config = {"auths": {registry.host: {"username": user, "password": password}}}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name, "namespace": SECRET_NAMESPACE},
                "stringData": {".dockerconfigjson": json.dumps(config)},
            }
        )
    path = folder / "secrets.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def _outcomes(stdout: str) -> dict[str, dict[str, str]]:
    """scope -> image -> outcome, from `check -o json`."""
    document = json.loads(stdout)
    return {s["scope"]: {i["image"]: i["outcome"] for i in s["images"]} for s in document["scopes"]}


@pytest.fixture(scope="module")
def published(registry: Registry, test_images: TestImages) -> Registry:
    registry.push_many(
        test_images.busybox,
        ["mirror/chaos-ddcr:1.0.0", "upstream/chaos-ddcr:1.0.0", "upstream/chaos-log-watcher:1.0.0"],
    )
    return registry


def test_check_reports_present_missing_unauthorized_and_a_missing_secret(published: Registry, tmp_path: Path):
    host = published.host
    config = _config(
        tmp_path / "config",
        host,
        images=["docker.io/harness/chaos-ddcr:{version}", "docker.io/harness/chaos-log-watcher:{version}"],
        registries=[
            ("good", "mirror", "pull"),
            ("wrong", "mirror", "wrong-pull"),
            ("nosecret", "mirror", "absent"),
            ("public", "mirror", None),
        ],
    )
    secrets = _secrets(tmp_path, published, {"pull": (PULLER, PASSWORD), "wrong-pull": (PULLER, "not-it")})

    code, out, err = _run(
        "check",
        "-c",
        config,
        "--secrets",
        secrets,
        "--ca-file",
        str(published.ca_file),
        "--release",
        "hce",
        "-o",
        "json",
    )

    assert code == 1, err
    ddcr, watcher = f"{host}/mirror/chaos-ddcr:1.0.0", f"{host}/mirror/chaos-log-watcher:1.0.0"
    assert _outcomes(out) == {
        "good": {ddcr: "present", watcher: "missing"},
        "wrong": {ddcr: "unauthorized", watcher: "unauthorized"},
        "nosecret": {ddcr: "secret-missing", watcher: "secret-missing"},
        "public": {ddcr: "unauthorized", watcher: "unauthorized"},
    }
    assert "not-it" not in out and PASSWORD not in out, "no secret content in the report"
    # The registry saw the puller read one manifest and miss the other; the wrong password refused.
    assert published.pulls(user=PULLER, image="mirror/chaos-ddcr:1.0.0")
    missing = [
        r for r in published.requests() if r.image == "mirror/chaos-log-watcher:1.0.0" and r.status == 404
    ]
    assert [r.user for r in missing] == [PULLER]


def test_check_text_names_each_problem_and_exit_0_when_all_present(published: Registry, tmp_path: Path):
    config = _config(
        tmp_path / "config",
        published.host,
        images=["docker.io/harness/chaos-ddcr:{version}"],
        registries=[("good", "mirror", "pull")],
    )
    secrets = _secrets(tmp_path, published, {"pull": (PULLER, PASSWORD)})

    code, out, err = _run(
        "check", "-c", config, "--secrets", secrets, "--ca-file", str(published.ca_file), "--release", "hce"
    )

    assert (code, out) == (0, "good: ok, 1 images, pull secret chaos-system/pull\n"), err
    assert "checked 1 scopes: 1 ok;" in err


def test_without_the_registry_ca_the_check_fails_on_tls(published: Registry, tmp_path: Path):
    config = _config(
        tmp_path / "config",
        published.host,
        images=["docker.io/harness/chaos-ddcr:{version}"],
        registries=[("good", "mirror", "pull")],
    )
    secrets = _secrets(tmp_path, published, {"pull": (PULLER, PASSWORD)})

    code, out, _ = _run("check", "-c", config, "--secrets", secrets, "--release", "hce")

    assert code == 1
    assert f"unreachable    {published.host}/mirror/chaos-ddcr:1.0.0: {published.host}: TLS:" in out
    assert "certificate verify failed" in out


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers: a registry that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_registry_that_does_not_answer_is_unreachable_within_the_timeout(
    silent_server: str, tmp_path: Path, registry: Registry
):
    config = _config(
        tmp_path / "config",
        silent_server,
        images=["docker.io/harness/chaos-ddcr:{version}", "docker.io/harness/chaos-log-watcher:{version}"],
        registries=[("down", "mirror", None)],
    )

    code, out, err = _run(
        "check", "-c", config, "--release", "hce", "--timeout", "1", "--ca-file", str(registry.ca_file)
    )

    assert code == 1
    assert out.count("unreachable") == 2 and "no answer within 1 s" in out, out
    seconds = float(err.split(" in ")[1].split(" s")[0])
    assert seconds < 5, "both images wait in parallel, each at most the timeout"


def _skopeo(*argv: str) -> None:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_mirror_inputs_fill_an_empty_registry_account_until_check_passes(
    published: Registry, tmp_path: Path
):
    host = published.host
    # The release's images come from the registry's `upstream` account, as from Docker Hub elsewhere.
    config = _config(
        tmp_path / "config",
        host,
        images=[f"{host}/upstream/chaos-ddcr:{{version}}", f"{host}/upstream/chaos-log-watcher:{{version}}"],
        registries=[("synced", "by-sync", "pull"), ("copied", "by-copy", "pull")],
    )
    secrets = _secrets(tmp_path, published, {"pull": (PULLER, PASSWORD)})
    check = (
        "check",
        "-c",
        config,
        "--secrets",
        secrets,
        "--ca-file",
        str(published.ca_file),
        "--release",
        "hce",
    )
    creds, cert_dir = f"{PULLER}:{PASSWORD}", str(published.cert_dir)
    assert _run(*check)[0] == 1

    code, sync_yaml, err = _run(
        "images", "-c", config, "--scope", "synced", "--release", "hce", "-o", "skopeo-sync"
    )
    assert code == 0 and err == ""
    destination = sync_yaml.splitlines()[0].rsplit(" ", 1)[1]
    assert destination == f"{host}/by-sync"
    # skopeo takes a yaml source's CA and credentials from the file, per registry, not from flags.
    document = yaml.safe_load(sync_yaml)
    assert document == {
        host: {"images": {"upstream/chaos-ddcr": ["1.0.0"], "upstream/chaos-log-watcher": ["1.0.0"]}}
    }
    document[host].update({"cert-dir": cert_dir, "credentials": {"username": PULLER, "password": PASSWORD}})
    (tmp_path / "sync.yaml").write_text(yaml.safe_dump(document))
    _skopeo(
        "sync",
        "--src",
        "yaml",
        "--dest",
        "docker",
        "--dest-creds",
        creds,
        "--dest-cert-dir",
        cert_dir,
        str(tmp_path / "sync.yaml"),
        destination,
    )

    code, copy_list, _ = _run("images", "-c", config, "--scope", "copied", "--release", "hce", "-o", "list")
    pairs = [line.split(" ") for line in copy_list.splitlines()]
    assert [target for _, target in pairs] == [
        f"{host}/by-copy/chaos-ddcr:1.0.0",
        f"{host}/by-copy/chaos-log-watcher:1.0.0",
    ]
    for source, target in pairs:
        _skopeo(
            "copy",
            "--src-creds",
            creds,
            "--src-cert-dir",
            cert_dir,
            "--dest-creds",
            creds,
            "--dest-cert-dir",
            cert_dir,
            f"docker://{source}",
            f"docker://{target}",
        )

    code, out, err = _run(*check)
    assert code == 0, out
    assert (
        out == "copied: ok, 2 images, pull secret chaos-system/pull\n"
        "synced: ok, 2 images, pull secret chaos-system/pull\n"
    )


def test_ten_thousand_scopes_sharing_three_registries_cost_one_request_per_distinct_image(
    published: Registry, tmp_path: Path, record_property: Any
):
    """The figure README states: scopes are deduplicated per (registry, image, pull secret)."""
    import asyncio
    import time

    import aiohttp

    from webhook.core.images import release_images, scope_images
    from webhook.core.models import Scope, load_defaults
    from webhook.core.resolver import RegistryEntry
    from webhook.core.snapshot import CompiledConfig
    from webhook.registrycheck.check import ScopeCheck, SecretRef, check_scopes, secret_of
    from webhook.registrycheck.client import Credential, RegistryClient, ssl_context

    host = published.host
    accounts = ["mirror", "upstream", "other"]  # three registry paths of the one local registry
    entries = [
        RegistryEntry(
            name=f"a{i}",
            scope=Scope(("acme", f"p{i}")),
            created=datetime.now(UTC),
            allow_overrides=True,
            server=host,
            registry_account=accounts[i % 3],
            type="Private",
            secret_name="pull",
            secret_namespace=SECRET_NAMESPACE,
        )
        for i in range(10_000)
    ]
    defaults = load_defaults(
        {
            "releases": {
                "hce": {
                    "version": "1.0.0",
                    "images": [
                        "docker.io/harness/chaos-ddcr:{version}",
                        "docker.io/harness/chaos-log-watcher:{version}",
                    ],
                }
            }
        }
    )
    config = CompiledConfig(defaults, entries)
    started = time.monotonic()
    sources = release_images(config, {}, ["hce"])
    checks = [
        ScopeCheck(
            str(e.scope),
            scope_images(config, e.scope, sources).images,
            secret_of(config.effective(e.scope), ""),
        )
        for e in entries
    ]
    planned = time.monotonic() - started
    secrets = {SecretRef(SECRET_NAMESPACE, "pull"): {host: Credential(PULLER, PASSWORD)}}
    before = len(published.requests())

    async def run() -> tuple[list[Any], int]:
        async with aiohttp.ClientSession() as session:
            client = RegistryClient(session, ssl_context=ssl_context(str(published.ca_file)))
            return await check_scopes(client, checks, secrets), client.counters.requests

    started = time.monotonic()
    reports, sent = asyncio.run(run())
    checked = time.monotonic() - started

    # 3 paths x 2 images = 6 distinct manifests; the first one also meets the Basic challenge.
    assert sent == 6 + 1
    assert len(published.requests()) - before == sent
    assert len(reports) == 10_000
    assert {r.scope: r.ok for r in reports if r.scope.endswith("/p0")} == {"acme/p0": False}
    outcomes = {r.image: r.outcome.value for rep in reports for r in rep.results}
    assert outcomes == {
        f"{host}/mirror/chaos-ddcr:1.0.0": "present",
        f"{host}/mirror/chaos-log-watcher:1.0.0": "missing",
        f"{host}/upstream/chaos-ddcr:1.0.0": "present",
        f"{host}/upstream/chaos-log-watcher:1.0.0": "present",
        f"{host}/other/chaos-ddcr:1.0.0": "missing",
        f"{host}/other/chaos-log-watcher:1.0.0": "missing",
    }
    record_property(
        "check_10000_scopes", {"requests": sent, "plan_s": round(planned, 2), "check_s": round(checked, 2)}
    )
    print(f"\n10,000 scopes, 3 registries: {sent} requests; plan {planned:.2f} s, check {checked:.2f} s")

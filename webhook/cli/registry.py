"""`chaos-registry images` and `chaos-registry check`: which images each scope needs, and whether its
registry has them readable with its pull secret."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

from webhook.core.images import ScopeImages, config_scopes, release_images, scope_images, split_target
from webhook.core.loader import ConfigError, LoadedConfig, config_files, load_config, load_documents
from webhook.core.models import Scope
from webhook.core.snapshot import CompiledConfig
from webhook.registrycheck.check import (
    DOCKERCONFIG_KEY,
    ScopeCheck,
    ScopeReport,
    SecretCredentials,
    SecretRef,
    check_scopes,
    secret_credentials,
    secret_of,
    summary,
)
from webhook.registrycheck.client import RegistryClient, ssl_context
from webhook.service.options import DEFAULT_NAMESPACE

EXIT_OK, EXIT_FAILED = 0, 1
OUTPUTS = ("table", "json", "skopeo-sync", "list")


def add_source_arguments(parser: argparse.ArgumentParser, *, config_required: bool = False) -> None:
    """-c files or --cluster: where the configuration comes from."""
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="CONFIG",
        help="YAML file or folder of ChaosImageRegistry, Namespace and defaults ConfigMap documents "
        "(repeatable)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="read the live configuration from the current kubeconfig instead of files",
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="with --cluster: this kubeconfig")
    parser.add_argument("--context", metavar="NAME", help="with --cluster: this kubeconfig context")
    parser.add_argument(
        "--release-namespace",
        default=DEFAULT_NAMESPACE,
        metavar="NAME",
        help="the webhook's namespace: the defaults ConfigMap, and pull secrets without secretNamespace "
        f"(default {DEFAULT_NAMESPACE})",
    )


def load_source(args: argparse.Namespace, err: TextIO) -> tuple[LoadedConfig, Any]:
    """The configuration, and the cluster client when --cluster (else None)."""
    if bool(args.config) == bool(args.cluster):
        raise ConfigError(["give either -c CONFIG or --cluster"])
    if not args.cluster:
        return load_config(args.config), None
    from webhook.cli.cluster import Cluster

    cluster = Cluster(args.kubeconfig, args.context)
    warnings: list[str] = []
    loaded = cluster.load_config(args.release_namespace, warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=err)
    return loaded, cluster


def _add_images_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--namespace", metavar="NAME", help="the scope bound by this namespace's labels")
    target.add_argument("--scope", metavar="ACCOUNT[/ORG[/PROJECT[/INFRA]]]", help="one scope")
    parser.add_argument("--hce-version", metavar="VERSION", help="HCE release (default: the defaults')")
    parser.add_argument(
        "--litmus-version", metavar="VERSION", help="LitmusChaos release (default: the defaults')"
    )
    parser.add_argument(
        "--release",
        action="append",
        metavar="NAME",
        help="only this release's images (hce, litmus, or one the defaults add; repeatable)",
    )


def _scopes(args: argparse.Namespace, loaded: LoadedConfig, config: CompiledConfig) -> list[Scope]:
    from webhook.core.classifier import scope_from_labels

    if args.scope is not None:
        try:
            return [Scope.parse(args.scope)]
        except ValueError as error:
            raise ConfigError([f"--scope: {error}"]) from None
    if args.namespace is not None:
        labels = loaded.namespaces.get(args.namespace)
        if labels is None:
            raise ConfigError([f"--namespace: namespace {args.namespace!r} is not in the configuration"])
        return [scope_from_labels(labels, config.defaults.default_account).scope]
    return config_scopes(config, loaded.namespaces)


def _needed(args: argparse.Namespace, loaded: LoadedConfig) -> tuple[CompiledConfig, list[ScopeImages]]:
    config = loaded.compile()
    versions = {
        name: version
        for name, version in (("hce", args.hce_version), ("litmus", args.litmus_version))
        if version is not None
    }
    try:
        sources = release_images(config, versions, args.release)
    except ValueError as error:
        raise ConfigError([str(error)]) from None
    return config, [scope_images(config, scope, sources) for scope in _scopes(args, loaded, config)]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


def images_document(needed: Sequence[ScopeImages]) -> list[dict[str, Any]]:
    return [
        {
            "scope": str(item.scope),
            "configured": item.configured,
            "images": [
                {
                    "release": n.release,
                    "component": n.component,
                    "source": n.source,
                    "target": n.target,
                    "custom": n.custom,
                }
                for n in item.images
            ],
        }
        for item in needed
    ]


def _copies(needed: Sequence[ScopeImages]) -> list[tuple[str, str]]:
    """(source, target) of every image a mirror must receive, once each."""
    pairs = {
        (n.source, n.target)
        for item in needed
        if item.configured
        for n in item.images
        if n.source != n.target and not n.custom
    }
    return sorted(pairs, key=lambda pair: (pair[1], pair[0]))


def skopeo_sync_documents(
    needed: Sequence[ScopeImages],
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """One `skopeo sync --src yaml` document per destination repository prefix, and the copies that
    sync cannot make (a target whose name or tag differs from the source: custom images)."""
    by_destination: dict[str, dict[str, dict[str, list[str]]]] = {}
    left: list[str] = []
    for source, target in _copies(needed):
        source_host, source_path, source_ref = split_target(source)
        target_host, target_path, target_ref = split_target(target)
        prefix, _, name = target_path.rpartition("/")
        # skopeo sync puts an image at DESTINATION/<last segment of its path>:<same tag>.
        if name != source_path.rpartition("/")[2] or target_ref != source_ref or not prefix:
            left.append(f"{source} {target}")
            continue
        destination = f"{target_host}/{prefix}"
        registries = by_destination.setdefault(destination, {})
        images = registries.setdefault(source_host, {})
        images.setdefault(source_path, [])
        if source_ref not in images[source_path]:
            images[source_path].append(source_ref)
    documents = [
        (destination, {host: {"images": images} for host, images in sorted(registries.items())})
        for destination, registries in sorted(by_destination.items())
    ]
    return documents, left


def _skopeo_yaml(destination: str, document: dict[str, Any]) -> str:
    # Every name and tag quoted (JSON strings are YAML): a tag like 3.12 must not become a number.
    lines = [f"# skopeo sync --all --src yaml --dest docker THIS_FILE {destination}"]
    for host, entry in document.items():
        lines += [f"{json.dumps(host)}:", "  images:"]
        for path, tags in entry["images"].items():
            lines.append(f"    {json.dumps(path)}: [{', '.join(json.dumps(tag) for tag in tags)}]")
    return "\n".join(lines) + "\n"


def cmd_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded, _ = load_source(args, err)
    _, needed = _needed(args, loaded)
    output = args.output
    if output in ("list", "skopeo-sync"):
        customs = sorted({n.target for item in needed if item.configured for n in item.images if n.custom})
        for image in customs:
            print(f"warning: custom image {image} is used verbatim: mirror it yourself", file=err)
    if output == "json":
        out.write(json.dumps(images_document(needed), indent=2) + "\n")
    elif output == "list":
        out.write("".join(f"{source} {target}\n" for source, target in _copies(needed)))
    elif output == "skopeo-sync":
        documents, left = skopeo_sync_documents(needed)
        parts = []
        for destination, document in documents:
            parts.append(_skopeo_yaml(destination, document))
        out.write("---\n".join(parts))
        for line in left:
            print(
                f"warning: not expressible as skopeo sync (name or tag changes), copy it alone: {line}",
                file=err,
            )
    else:
        rows = [("SCOPE", "RELEASE", "COMPONENT", "SOURCE", "TARGET")]
        for item in needed:
            for n in item.images:
                target = n.target if item.configured else "(unchanged: no ChaosImageRegistry)"
                if n.custom:
                    target += " (custom image)"
                rows.append((str(item.scope), n.release, n.component or "-", n.source, target))
        if len(rows) > 1:
            out.write(_table(rows))
    return EXIT_OK


def file_secrets(paths: Sequence[str]) -> dict[SecretRef, SecretCredentials]:
    """kubernetes.io/dockerconfigjson Secret documents from files (data base64, or stringData)."""
    found: dict[SecretRef, SecretCredentials] = {}
    problems = []
    for path in config_files(paths):
        for number, document in enumerate(load_documents(path), start=1):
            where = f"{path}: document {number}"
            if not isinstance(document, dict) or document.get("kind") != "Secret":
                problems.append(f"{where}: --secrets reads Secret documents only")
                continue
            metadata = document.get("metadata") or {}
            data, string_data = document.get("data") or {}, document.get("stringData") or {}
            bad = [
                key
                for key, value in (("metadata", metadata), ("data", data), ("stringData", string_data))
                if not isinstance(value, dict)
            ]
            if bad:
                problems.append(f"{where}: {bad[0]}: must be a mapping")
                continue
            name, namespace = metadata.get("name"), metadata.get("namespace") or DEFAULT_NAMESPACE
            if not isinstance(name, str) or not name or not isinstance(namespace, str):
                problems.append(f"{where}: metadata.name and metadata.namespace must be strings")
                continue
            data = dict(data)
            if isinstance(string_data.get(DOCKERCONFIG_KEY), str):
                data[DOCKERCONFIG_KEY] = base64.b64encode(string_data[DOCKERCONFIG_KEY].encode()).decode()
            ref = SecretRef(namespace, name)
            found[ref] = secret_credentials(ref, data)
    if problems:
        raise ConfigError(problems)
    return found


def _report_text(reports: Sequence[ScopeReport], skipped: Sequence[str]) -> str:
    lines = []
    for report in reports:
        failing = report.failing()
        secret = f", pull secret {report.secret}" if report.secret else ""
        if not failing:
            lines.append(f"{report.scope}: ok, {len(report.results)} images{secret}")
            continue
        lines.append(f"{report.scope}: {len(failing)} of {len(report.results)} images not available{secret}")
        for result in failing:
            lines.append(f"  {result.outcome.value:<14} {result.image}: {result.detail}")
    lines += [
        f"{scope}: skipped: no ChaosImageRegistry covers it, its pods keep their images" for scope in skipped
    ]
    return "\n".join(lines) + "\n"


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded, cluster = load_source(args, err)
    config, needed = _needed(args, loaded)
    checks = []
    skipped = []
    for item in needed:
        if not item.configured:
            skipped.append(str(item.scope))
            continue
        checks.append(
            ScopeCheck(
                str(item.scope), item.images, secret_of(config.effective(item.scope), args.release_namespace)
            )
        )
    refs = {check.secret for check in checks if check.secret is not None}
    if cluster is not None:
        secrets = cluster.secrets(refs)
    else:
        secrets = file_secrets(args.secrets) if args.secrets else {}
    try:
        context = ssl_context(args.ca_file)
    except OSError as error:
        raise ConfigError([f"--ca-file: {args.ca_file}: {error.strerror or error}"]) from None
    started = time.monotonic()
    reports, requests = asyncio.run(_run(checks, secrets, context, args.timeout, args.concurrency))
    seconds = time.monotonic() - started
    if args.output == "json":
        document = {
            "scopes": [
                {
                    "scope": r.scope,
                    "secret": str(r.secret) if r.secret else None,
                    "ok": r.ok,
                    "images": [
                        {"image": x.image, "outcome": x.outcome.value, "detail": x.detail} for x in r.results
                    ],
                }
                for r in reports
            ],
            "skipped": skipped,
            "summary": summary(reports),
            "requests": requests,
        }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(_report_text(reports, skipped))
        print(
            f"checked {len(reports)} scopes: {sum(r.ok for r in reports)} ok; "
            f"{requests} requests in {seconds:.2f} s",
            file=err,
        )
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


async def _run(
    checks: Sequence[ScopeCheck],
    secrets: dict[SecretRef, SecretCredentials],
    context: Any,
    timeout: float,
    concurrency: int,
) -> tuple[list[ScopeReport], int]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = RegistryClient(session, ssl_context=context, timeout=timeout, concurrency=concurrency)
        reports = await check_scopes(client, checks, secrets)
        return reports, client.counters.requests


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_commands(commands: Any) -> None:
    images = commands.add_parser(
        "images",
        help="list the images each scope's chaos pods need, source -> target (mirror inputs)",
        description="Every image the chaos pods of a scope (or of every scope) will pull: the release "
        "image lists of the defaults at the chosen versions and the custom images, each as the webhook "
        "rewrites it. -o skopeo-sync prints `skopeo sync --src yaml` input, -o list `SOURCE TARGET` "
        "lines for crane copy or oras cp.",
    )
    _add_images_arguments(images)
    images.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    images.set_defaults(handler=cmd_images)

    check = commands.add_parser(
        "check",
        help="ask each scope's registry whether every image it needs is there and readable",
        description="HEAD of each image's manifest in its target registry (OCI distribution API), "
        "with the scope's pull secret; exit 1 when any image is missing, unauthorized or unreachable.",
    )
    _add_images_arguments(check)
    check.add_argument(
        "--secrets",
        action="append",
        metavar="PATH",
        help="without --cluster: files or folders of the dockerconfigjson pull Secrets the scopes name",
    )
    check.add_argument("--ca-file", metavar="PEM", help="also trust this CA (registries with a private CA)")
    check.add_argument(
        "--timeout", type=_positive_float, default=10.0, metavar="SECONDS", help="per request (10)"
    )
    check.add_argument(
        "--concurrency", type=_positive_int, default=16, metavar="N", help="requests at once (16)"
    )
    check.add_argument("-o", "--output", choices=("text", "json"), default="text")
    check.set_defaults(handler=cmd_check)

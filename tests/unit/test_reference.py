"""Tests for webhook.core.reference: the Docker image reference parser and rewrite-target checks."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from webhook.core import reference
from webhook.core.reference import (
    ImageReference,
    InvalidReference,
    join_image,
    parse_reference,
    registry_account_error,
    registry_server_error,
)

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8
SHA384 = "sha384:" + "0123456789abcdef" * 6
HEX64 = "0123456789abcdef" * 4

# (input, domain, path, tag, digest)
VALID: list[tuple[str, str, str, str | None, str | None]] = [
    ("nginx", "docker.io", "library/nginx", None, None),
    ("library/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/library/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/library/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/harness/chaos-ddcr", "docker.io", "harness/chaos-ddcr", None, None),
    ("nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("harness/chaos-ddcr:1.47.0", "docker.io", "harness/chaos-ddcr", "1.47.0", None),
    ("harness/chaos-log-watcher:1.47.0", "docker.io", "harness/chaos-log-watcher", "1.47.0", None),
    (
        "docker.io/harness/chaos-ddcr-faults:1.47.0",
        "docker.io",
        "harness/chaos-ddcr-faults",
        "1.47.0",
        None,
    ),
    (
        "litmuschaos.docker.scarf.sh/litmuschaos/go-runner:latest",
        "litmuschaos.docker.scarf.sh",
        "litmuschaos/go-runner",
        "latest",
        None,
    ),
    ("litmuschaos/chaos-operator:3.9.0", "docker.io", "litmuschaos/chaos-operator", "3.9.0", None),
    ("ghcr.io/grafana/k6-operator:latest-runner", "ghcr.io", "grafana/k6-operator", "latest-runner", None),
    ("gaiadocker/iproute2", "docker.io", "gaiadocker/iproute2", None, None),
    ("ubuntu:16.04", "docker.io", "library/ubuntu", "16.04", None),
    ("localhost/x", "localhost", "x", None, None),
    ("localhost:5000/x:1", "localhost:5000", "x", "1", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("reg:5000/x", "reg:5000", "x", None, None),
    ("reg:5000/a/b/c:v1", "reg:5000", "a/b/c", "v1", None),
    (
        "us-docker.pkg.dev/gar-prod-setup/harness-public/chaos-ddcr:1.74.1",
        "us-docker.pkg.dev",
        "gar-prod-setup/harness-public/chaos-ddcr",
        "1.74.1",
        None,
    ),
    (
        "registry.acme.corp:5000/mirror/harness/chaos-ddcr:1.47.0",
        "registry.acme.corp:5000",
        "mirror/harness/chaos-ddcr",
        "1.47.0",
        None,
    ),
    ("[::1]:5000/a/b", "[::1]:5000", "a/b", None, None),
    ("[::1]/a", "[::1]", "a", None, None),
    ("[2001:db8::1]:443/team/app:v2", "[2001:db8::1]:443", "team/app", "v2", None),
    ("192.168.1.1:5000/a", "192.168.1.1:5000", "a", None, None),
    ("10.0.0.1/a/b:c", "10.0.0.1", "a/b", "c", None),
    ("Foo/bar", "Foo", "bar", None, None),
    ("fOO/bar:Tag", "fOO", "bar", "Tag", None),
    ("Registry.Example.COM/x", "Registry.Example.COM", "x", None, None),
    ("docker.io:443/x", "docker.io:443", "x", None, None),
    (f"nginx@{SHA256}", "docker.io", "library/nginx", None, SHA256),
    (f"nginx:1.25@{SHA256}", "docker.io", "library/nginx", "1.25", SHA256),
    (f"ghcr.io/a/b:t@{SHA512}", "ghcr.io", "a/b", "t", SHA512),
    (f"quay.io/a/b@{SHA384}", "quay.io", "a/b", None, SHA384),
    (f"localhost:5000/x@{SHA256}", "localhost:5000", "x", None, SHA256),
    ("a__b", "docker.io", "library/a__b", None, None),
    ("a--b", "docker.io", "library/a--b", None, None),
    ("a---b/c_d/e.f", "docker.io", "a---b/c_d/e.f", None, None),
    ("a.b.c", "docker.io", "library/a.b.c", None, None),
    ("a.b/c", "a.b", "c", None, None),
    ("a-b.c/d", "a-b.c", "d", None, None),
    ("0/1", "docker.io", "0/1", None, None),
    ("x:_", "docker.io", "library/x", "_", None),
    ("x:1.0-RC_2", "docker.io", "library/x", "1.0-RC_2", None),
    ("x:" + "a" * 128, "docker.io", "library/x", "a" * 128, None),
    (HEX64 + ":1", "docker.io", "library/" + HEX64, "1", None),
    ("docker.io/library/" + HEX64, "docker.io", "library/" + HEX64, None, None),
    ("a" * 237, "docker.io", "library/" + "a" * 237, None, None),
    ("reg.io/" + "b" * 248, "reg.io", "b" * 248, None, None),
    ("reg.io/" + "/".join(["ab"] * 82) + "/c", "reg.io", "/".join(["ab"] * 82) + "/c", None, None),
]

# (input, a fragment of the reason)
INVALID: list[tuple[str, str]] = [
    ("", "empty"),
    (" ", "invalid character ' '"),
    ("   ", "invalid character"),
    ("\t", "invalid character"),
    ("nginx ", "invalid character ' '"),
    (" nginx", "invalid character ' '"),
    ("nginx\n", "invalid character '\\n'"),
    ("Nginx", "must be lowercase"),
    ("FOO", "must be lowercase"),
    ("harness/Chaos-DDCR", "must be lowercase"),
    ("docker.io/Library/nginx", "must be lowercase"),
    ("Foo/Bar", "must be lowercase"),
    ("ghcr.io/Grafana/k6", "must be lowercase"),
    ("a//b", "empty path component"),
    ("/nginx", "empty path component"),
    ("nginx/", "empty path component"),
    ("reg.io/a//b", "empty path component"),
    ("docker.io/", "missing"),
    ("localhost/", "missing"),
    (":tag", "missing"),
    ("@sha256:short", "missing"),
    ("@" + SHA256, "missing"),
    ("nginx@sha256:short", "digest"),
    ("nginx@", "digest is empty"),
    ("nginx:", "tag is empty"),
    ("nginx:@" + SHA256, "tag is empty"),
    ("a___b", "invalid separator"),
    ("a_.b", "invalid separator"),
    ("a.-b", "invalid separator"),
    ("a..b", "invalid separator"),
    ("a-", "must start and end"),
    ("-a", "must start and end"),
    ("a_", "must start and end"),
    (".a", "must start and end"),
    ("x/y-", "must start and end"),
    ("x:" + "a" * 129, "at most 128"),
    ("x:.a", "tag"),
    ("x:-a", "tag"),
    ("x:a+b", "tag"),
    ("x:a:b", "invalid character ':'"),
    ("x:a/b", "port 'a' must be digits"),
    (HEX64, "64-byte hexadecimal"),
    ("a" * 238, "255 characters"),
    ("reg.io/" + "b" * 249, "255 characters"),
    ("https://reg.io/x", "must not include a scheme: drop 'https://'"),
    ("-reg.io/x", "domain"),
    ("reg-.io/x", "domain"),
    ("reg..io/x", "domain"),
    ("reg_x.io/x", "invalid character '_'"),
    ("reg.io:/x", "empty port"),
    ("reg.io:abc/x", "must be digits"),
    ("reg:5000:1/x", "must be digits"),
    ("[::1/x", "unclosed"),
    ("[::1]x/x", "not a port"),
    ("[:::]/x", "IPv6"),
    ("[1::2::3]:5000/x", "IPv6"),
    ("[::1%eth0]/x", "IPv6"),
    ("[::ffff:1.2.3.4]/x", "IPv6"),
    ("[::1]:/x", "empty port"),
    (f"nginx@{SHA256}@{SHA256}", "digest"),
    ("nginx@sha256:" + "A" * 64, "lowercase hex"),
    ("nginx@sha256:" + "a" * 63, "exactly 64"),
    ("nginx@sha256:" + "a" * 65, "exactly 64"),
    ("nginx@sha512:" + "a" * 64, "exactly 128"),
    ("nginx@SHA256:" + "a" * 64, "not supported"),
    ("nginx@md5:" + "a" * 32, "not supported"),
    ("nginx@sha256:" + "g" * 64, "digest"),
    ("nginx@:" + "a" * 64, "digest"),
    ("ngïnx", "invalid character 'ï'"),
    ("nginx:\uff11", "tag"),  # fullwidth digit one: \w would accept it, the grammar does not
    ("ré.io/x", "invalid character 'é'"),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), VALID)
def test_valid_reference(text: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(domain, path, tag, digest)
    assert isinstance(ref, ImageReference)
    # Normalising is idempotent: the fully qualified form reads back as the same reference.
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_reference(text: str, fragment: str) -> None:
    ref = parse_reference(text)
    assert isinstance(ref, InvalidReference), ref
    assert ref.text == text
    assert fragment in ref.reason
    assert "\n" not in ref.reason
    assert len(ref.reason) < 300


def test_table_sizes() -> None:
    assert len(VALID) + len(INVALID) >= 60


def test_properties_and_str() -> None:
    ref = parse_reference(f"registry.acme.corp:5000/mirror/harness/chaos-ddcr:1.47.0@{SHA256}")
    assert isinstance(ref, ImageReference)
    assert ref.last_segment == "chaos-ddcr"
    assert ref.name == "registry.acme.corp:5000/mirror/harness/chaos-ddcr"
    assert str(ref) == f"registry.acme.corp:5000/mirror/harness/chaos-ddcr:1.47.0@{SHA256}"
    nginx = parse_reference("nginx")
    assert isinstance(nginx, ImageReference)
    assert nginx.last_segment == "nginx"
    assert nginx.name == "docker.io/library/nginx"
    assert str(nginx) == "docker.io/library/nginx"
    assert str(ImageReference("reg.io", "a", None, SHA256)) == f"reg.io/a@{SHA256}"


def test_results_are_immutable_and_hashable() -> None:
    ref = parse_reference("nginx:1")
    bad = parse_reference("Nginx")
    assert isinstance(ref, ImageReference)
    assert isinstance(bad, InvalidReference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bad.reason = "x"  # type: ignore[misc]
    assert {ref, bad} == {parse_reference("nginx:1"), parse_reference("Nginx")}
    assert not hasattr(ref, "__dict__")


def test_parse_is_cached() -> None:
    assert parse_reference.cache_parameters()["maxsize"] == 4096
    assert parse_reference("ghcr.io/cached/image:1") is parse_reference("ghcr.io/cached/image:1")
    assert parse_reference.__wrapped__("ghcr.io/cached/image:1") == parse_reference("ghcr.io/cached/image:1")


# (server, a fragment of the error, or None when valid)
SERVERS: list[tuple[str, str | None]] = [
    ("registry.acme.corp", None),
    ("registry.acme.corp:5000", None),
    ("registry.acme.corp:5000/mirror", None),
    ("registry.acme.corp/a/b-c/d_e", None),
    ("docker.io", None),
    ("ghcr.io", None),
    ("us-docker.pkg.dev/gar-prod-setup", None),
    ("localhost", None),
    ("localhost:5000/mirror", None),
    ("reg:5000", None),
    ("192.168.1.1:5000", None),
    ("[::1]:5000/mirror", None),
    ("[::1]", None),
    ("Registry.Acme.corp", None),
    ("", "empty"),
    ("foo", "registry server 'foo' would be read as a Docker Hub namespace"),
    ("foo/bar", "would be read as a Docker Hub namespace"),
    ("FOO", "is a single-label host in upper case: write the host in lower case"),
    ("https://registry.acme.corp", "scheme"),
    ("http://reg.io/x", "scheme"),
    ("reg.io/", "must not end with '/'"),
    ("reg.io/mirror/", "must not end with '/'"),
    ("reg.io/mirror:1.0", "tag"),
    ("reg.io/mirror@" + SHA256, "digest"),
    ("reg.io@" + SHA256, "digest"),
    ("reg.io/Mirror", "must be lowercase"),
    ("reg.io//mirror", "empty path component"),
    ("reg.io/mir ror", "invalid character ' '"),
    ("reg.io/-mirror", "must start and end"),
    ("reg_io.com", "invalid character '_'"),
    ("reg.io:", "empty port"),
    ("reg.io:abc", "must be digits"),
    ("reg.io:0", "out of range"),
    ("reg.io:65536", "out of range"),
    ("reg.io:" + "9" * 5000, "out of range"),
    ("[::1]:70000", "out of range"),
    ("[:::]", "IPv6"),
    (" reg.io", "invalid character ' '"),
    ("reg.io/" + "a" * 260, "too long"),
]


@pytest.mark.parametrize(("server", "fragment"), SERVERS)
def test_registry_server_error(server: str, fragment: str | None) -> None:
    error = registry_server_error(server)
    if fragment is None:
        assert error is None
    else:
        assert error is not None
        assert fragment in error
        assert "\n" not in error


# (account, a fragment of the error, or None when valid)
ACCOUNTS: list[tuple[str, str | None]] = [
    ("", None),
    ("harness", None),
    ("harness/chaos", None),
    ("a.b_c__d--e", None),
    ("0", None),
    ("Harness", "must be lowercase"),
    ("/harness", "empty path component"),
    ("harness/", "empty path component"),
    ("a//b", "empty path component"),
    ("a b", "invalid character ' '"),
    ("a:b", "invalid character ':'"),
    ("a@b", "invalid character '@'"),
    ("-a", "must start and end"),
    ("a___b", "invalid separator"),
]


@pytest.mark.parametrize(("account", "fragment"), ACCOUNTS)
def test_registry_account_error(account: str, fragment: str | None) -> None:
    error = registry_account_error(account)
    if fragment is None:
        assert error is None
    else:
        assert error is not None
        assert fragment in error


JOINS: list[tuple[tuple[str, str, str, str | None, str | None], str]] = [
    (("reg.io", "harness", "chaos-ddcr", "1.47.0", None), "reg.io/harness/chaos-ddcr:1.47.0"),
    (("reg.io", "", "chaos-ddcr", "1.47.0", None), "reg.io/chaos-ddcr:1.47.0"),
    (("reg.io:5000/mirror", "a/b", "x", None, None), "reg.io:5000/mirror/a/b/x"),
    (("reg.io", "h", "x", None, SHA256), f"reg.io/h/x@{SHA256}"),
    (("reg.io", "h", "x", "t", SHA256), f"reg.io/h/x:t@{SHA256}"),
    (("[::1]:5000", "", "x", "", None), "[::1]:5000/x:"),
]


@pytest.mark.parametrize(("args", "expected"), JOINS)
def test_join_image(args: tuple[str, str, str, str | None, str | None], expected: str) -> None:
    assert join_image(*args) == expected


def test_rewrite_of_a_parsed_image_round_trips() -> None:
    original = parse_reference(f"harness/chaos-ddcr:1.47.0@{SHA256}")
    assert isinstance(original, ImageReference)
    image = join_image(
        "registry.acme.corp:5000/mirror", "harness", original.last_segment, original.tag, original.digest
    )
    assert image == f"registry.acme.corp:5000/mirror/harness/chaos-ddcr:1.47.0@{SHA256}"
    assert parse_reference(image) == ImageReference(
        "registry.acme.corp:5000", "mirror/harness/chaos-ddcr", "1.47.0", SHA256
    )


# --- property tests -------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

alphanumeric = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(alphanumeric)]
    for _ in range(draw(st.integers(0, 3))):
        parts.append(draw(separator))
        parts.append(draw(alphanumeric))
    return "".join(parts)


domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
port = st.from_regex(r":[0-9]{1,5}", fullmatch=True)
ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: "." not in a).map(lambda a: f"[{a}]")
ipv4 = st.ip_addresses(v=4).map(str)
dotted = st.lists(domain_component, min_size=2, max_size=4).map(".".join)
# Every generated domain is one that Docker reads as a domain: a dot, a port, localhost or upper case.
domains = st.one_of(
    st.tuples(st.one_of(dotted, ipv4, ipv6, st.just("localhost")), st.one_of(st.just(""), port)).map("".join),
    st.tuples(domain_component, port).map("".join),
    domain_component.filter(lambda c: c.lower() != c),
    st.sampled_from(["docker.io", "index.docker.io"]),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.one_of(
    st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True),
    st.from_regex(r"sha384:[a-f0-9]{96}", fullmatch=True),
    st.from_regex(r"sha512:[a-f0-9]{128}", fullmatch=True),
)


@st.composite
def valid_references(draw: st.DrawFn) -> tuple[str, ImageReference]:
    """A reference built from the grammar, and the ImageReference it must parse to."""
    domain = draw(st.none() | domains)
    components = draw(st.lists(path_components(), min_size=1, max_size=4))
    if domain is None and len(components) > 1:
        # Without an explicit domain, a first component that looks like a domain would become one.
        assume("." not in components[0] and components[0] != "localhost")
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    written_path = "/".join(components)
    text = written_path if domain is None else f"{domain}/{written_path}"
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    expected_domain = "docker.io" if domain in (None, "docker.io", "index.docker.io") else domain
    assert expected_domain is not None
    path = written_path
    if expected_domain == "docker.io" and len(components) == 1:
        path = f"library/{written_path}"
    assume(len(expected_domain) + 1 + len(path) <= 255)
    assume(len(text) != 64 or not all(c in "0123456789abcdef" for c in text))
    return text, ImageReference(expected_domain, path, tag, digest)


def _check_result(text: str, ref: ImageReference | InvalidReference) -> None:
    assert isinstance(ref, ImageReference | InvalidReference)
    if isinstance(ref, InvalidReference):
        assert ref.text == text
        assert ref.reason
        assert "\n" not in ref.reason
        assert not ref.reason.startswith("internal error"), ref.reason
    else:
        assert parse_reference.__wrapped__(str(ref)) == ref
        if ref.tag is not None:
            assert f":{ref.tag}" in text
        if ref.digest is not None:
            assert text.endswith(f"@{ref.digest}")


@PROPERTY_SETTINGS
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    _check_result(text, parse_reference.__wrapped__(text))


@PROPERTY_SETTINGS
@given(st.text(alphabet="abz09._-/:@[]Ax", max_size=40))
def test_never_raises_on_reference_like_text(text: str) -> None:
    _check_result(text, parse_reference.__wrapped__(text))


@PROPERTY_SETTINGS
@given(valid_references())
def test_generated_valid_references_round_trip(case: tuple[str, ImageReference]) -> None:
    text, expected = case
    ref = parse_reference.__wrapped__(text)
    assert ref == expected
    assert isinstance(ref, ImageReference)
    # The fully qualified form keeps the meaning, and the tag and digest are kept byte for byte.
    again = parse_reference.__wrapped__(str(ref))
    assert again == ref
    assert isinstance(again, ImageReference)
    assert again.tag == expected.tag
    assert again.digest == expected.digest


@PROPERTY_SETTINGS
@given(
    st.tuples(st.one_of(dotted, ipv4, ipv6, st.just("localhost")), st.one_of(st.just(""), port)).map("".join),
    st.lists(path_components(), max_size=2).map("/".join),
    st.lists(path_components(), max_size=2).map("/".join),
    path_components(),
    st.none() | tags,
    st.none() | digests,
)
def test_join_of_valid_parts_parses_back(
    host: str, server_path: str, account: str, repository: str, tag: str | None, digest: str | None
) -> None:
    server = f"{host}/{server_path}" if server_path else host
    port_text = host.rpartition("]")[2].rpartition(":")[2] if ":" in host.rpartition("]")[2] else ""
    assume(not port_text or 0 < int(port_text) < 65536)
    assert registry_server_error(server) is None
    assert registry_account_error(account) is None
    ref = parse_reference.__wrapped__(join_image(server, account, repository, tag, digest))
    assert isinstance(ref, ImageReference), ref
    assert ref.last_segment == repository
    assert (ref.tag, ref.digest) == (tag, digest)
    assert ref.name.endswith("/".join(p for p in (server_path, account, repository) if p))


@PROPERTY_SETTINGS
@given(st.text(alphabet="ab09._-/:[]AF%", max_size=24))
def test_fast_patterns_accept_exactly_the_grammar(text: str) -> None:
    # The hot path uses flattened regular expressions; they must mean the same as the grammar's rules.
    grammar_path = re.compile(reference._GRAMMAR_PATH_PATTERN)
    grammar_domain = re.compile(reference._GRAMMAR_DOMAIN_PATTERN)
    assert bool(reference._PATH_RE.fullmatch(text)) == bool(grammar_path.fullmatch(text))
    assert bool(reference._DOMAIN_RE.fullmatch(text)) == bool(grammar_domain.fullmatch(text))


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 20000 + "!",
        "a" + "__a" * 20000 + "___",
        "a." * 20000 + "-/x",
        "a-a." * 10000 + "a-/x",
        "x:" + "a" * 50000,
        "x@sha256:" + "a" * 50000,
        "x@" + "a-" * 20000,
        "[" + ":" * 50000 + "]/x",
        "a/" * 20000 + "A",
    ],
)
def test_adversarial_input_is_fast(text: str) -> None:
    started = time.perf_counter()
    assert isinstance(parse_reference.__wrapped__(text), InvalidReference)
    assert time.perf_counter() - started < 0.2

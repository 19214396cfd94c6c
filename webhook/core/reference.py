"""Docker image references: parse, validate and rebuild them the way a container runtime reads them.

The webhook rewrites every image of a chaos pod to the registry its organisation chose
(docs/contract.md#mutation).
That is only safe when the webhook reads an image exactly as Docker, containerd and CRI-O will: the same
grammar (distribution/reference) and the same normalisation (``ParseNormalizedNamed``): ``nginx`` is
``docker.io/library/nginx``, ``harness/chaos-ddcr`` is ``docker.io/harness/chaos-ddcr``, and the first
path segment names a registry only when it has a ``.`` or a ``:``, is ``localhost``, or has an
upper-case letter.

``parse_reference`` runs on the admission hot path for every container image, so it never raises (a bad
image must become an admission warning, not a failed request), it is cached, and the regular
expressions are compiled once at import.

``registry_server_error`` and ``registry_account_error`` check rewrite targets from configuration, and
``join_image`` builds the rewritten image from them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ImageReference",
    "InvalidReference",
    "join_image",
    "parse_reference",
    "registry_account_error",
    "registry_server_error",
]

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
OFFICIAL_REPOSITORY_PREFIX: Final = "library/"
NAME_TOTAL_LENGTH_MAX: Final = 255
TAG_LENGTH_MAX: Final = 128

# Character classes are spelled out instead of using \w or \d: in Python those match any Unicode
# letter or digit, while the grammar (and Go's regexp, which runtimes use) means ASCII only.
#
# The grammar, transcribed rule by rule. The slow paths (working out a reason) use these, and the tests
# check that the fast forms below accept exactly the same strings.
_ALPHANUMERIC: Final = r"[a-z0-9]+"
_SEPARATOR: Final = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT_PATTERN: Final = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_GRAMMAR_PATH_PATTERN: Final = rf"{_PATH_COMPONENT_PATTERN}(?:/{_PATH_COMPONENT_PATTERN})*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME: Final = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
# Only hex digits and colons, as in distribution/reference: no zone index ("%eth0") and no embedded
# IPv4 form, which runtimes would not accept; the address itself is checked with ipaddress.
_IPV6_HOST: Final = r"\[[a-fA-F0-9:]+\]"
_GRAMMAR_DOMAIN_PATTERN: Final = rf"(?:{_DOMAIN_NAME}|{_IPV6_HOST})(?::[0-9]+)?"
_TAG_PATTERN: Final = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{TAG_LENGTH_MAX - 1}}}"
_DIGEST_PATTERN: Final = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# The same languages, flattened for the hot path (about a third faster per image). A remote name is runs
# of alphanumerics with exactly one separator or '/' between neighbouring runs, and a domain name is
# runs of letters and digits joined by a run of '-' or a single '.'. Possessive quantifiers are safe
# because every run is maximal, and they stop re's backtracking on near misses.
_PATH_PATTERN: Final = r"[a-z0-9]++(?:(?:-++|__?|[./])[a-z0-9]++)*+"
_DOMAIN_PATTERN: Final = r"(?:[a-zA-Z0-9]++(?:(?:-++|\.)[a-zA-Z0-9]++)*+|\[[a-fA-F0-9:]++\])(?::[0-9]++)?"

# Used with fullmatch() only: "$" would also accept a trailing newline.
_PATH_RE: Final = re.compile(_PATH_PATTERN)
_PATH_COMPONENT_RE: Final = re.compile(_PATH_COMPONENT_PATTERN)
_DOMAIN_RE: Final = re.compile(_DOMAIN_PATTERN)
_DOMAIN_NAME_RE: Final = re.compile(_DOMAIN_NAME)
_IPV6_HOST_RE: Final = re.compile(_IPV6_HOST)
_TAG_RE: Final = re.compile(_TAG_PATTERN)
_DIGEST_RE: Final = re.compile(_DIGEST_PATTERN)
# Nearly every digest in practice is sha256: one match settles it without splitting the string.
_SHA256_DIGEST_RE: Final = re.compile(r"sha256:[a-f0-9]{64}")
_LOWER_HEX_RE: Final = re.compile(r"[a-f0-9]+")
_IMAGE_ID_RE: Final = re.compile(r"[a-f0-9]{64}")
_UPPER_RE: Final = re.compile(r"[A-Z]")
_NOT_PATH_CHAR_RE: Final = re.compile(r"[^a-z0-9._-]")
_NOT_DOMAIN_CHAR_RE: Final = re.compile(r"[^a-zA-Z0-9.-]")
_PORT_RE: Final = re.compile(r"[0-9]+")

# The algorithms runtimes can verify (go-digest registers exactly these); any other algorithm names an
# image that no node could pull, so it is refused rather than rewritten.
_DIGEST_HEX_LENGTH: Final[dict[str, int]] = {"sha256": 64, "sha384": 96, "sha512": 128}

# Reasons quote user input; this keeps them on one line and short, whatever the input.
_QUOTE_MAX: Final = 64


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A valid, normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def last_segment(self) -> str:
        """The last path segment (``chaos-ddcr``): what the catalog and the rewrite key on."""
        return self.path.rpartition("/")[2]

    @property
    def name(self) -> str:
        """The fully qualified name without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = f"{self.domain}/{self.path}"
        if self.tag is not None:
            text = f"{text}:{self.tag}"
        if self.digest is not None:
            text = f"{text}@{self.digest}"
        return text


@dataclass(frozen=True, slots=True)
class InvalidReference:
    """Text that is not a valid image reference, and a one-line reason fit for an admission warning."""

    text: str
    reason: str


def _quote(text: str) -> str:
    if len(text) > _QUOTE_MAX:
        text = text[: _QUOTE_MAX - 3] + "..."
    # repr() escapes newlines and control characters, so the reason stays one line.
    return repr(text)


def _path_problem(path: str, what: str) -> str | None:
    """Why ``path`` is not a valid remote name (``/``-joined path components), or None when it is."""
    if _PATH_RE.fullmatch(path):
        return None
    # Checked first so that Docker's own wording comes out for its most common mistake.
    if _UPPER_RE.search(path):
        return f"{what} must be lowercase"
    for component in path.split("/"):
        if not component:
            return f"{what} {_quote(path)} has an empty path component (leading, trailing or doubled '/')"
        bad = _NOT_PATH_CHAR_RE.search(component)
        if bad:
            return f"{what} {_quote(path)} contains the invalid character {bad.group()!r}"
        if component[0] in "._-" or component[-1] in "._-":
            return f"path component {_quote(component)} must start and end with a lowercase letter or digit"
        if not _PATH_COMPONENT_RE.fullmatch(component):
            return (
                f"path component {_quote(component)} has an invalid separator "
                "(allowed: '.', '_', '__' or a run of '-')"
            )
    return f"{what} {_quote(path)} is not valid"


def _ipv6_problem(host: str) -> str | None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return f"domain {_quote(host)} is not a valid IPv6 address"
    return None


def _domain_problem(domain: str) -> str | None:
    """Why ``domain`` (``host[:port]``) is not a valid registry domain, or None when it is."""
    if _DOMAIN_RE.fullmatch(domain):
        return _ipv6_problem(domain.partition("]")[0] + "]") if domain[0] == "[" else None
    # Only reached for invalid domains, so the detail can be worked out at leisure.
    if domain.startswith("["):
        host, bracket, after = domain.partition("]")
        if not bracket:
            return f"domain {_quote(domain)} has an unclosed '['"
        host += "]"
        if after and not after.startswith(":"):
            return f"domain {_quote(domain)} has text after ']' that is not a port"
        colon, port = after[:1], after[1:]
        if not _IPV6_HOST_RE.fullmatch(host):
            return f"domain {_quote(domain)}: {_quote(host)} is not a valid IPv6 address"
    else:
        host, colon, port = domain.partition(":")
        if not host:
            return f"domain {_quote(domain)} has an empty host"
        if not _DOMAIN_NAME_RE.fullmatch(host):
            bad = _NOT_DOMAIN_CHAR_RE.search(host)
            if bad:
                return f"domain {_quote(domain)} contains the invalid character {bad.group()!r}"
            return (
                f"domain {_quote(domain)}: each dot-separated part must be letters, digits and '-', "
                "and must not start or end with '-'"
            )
    if colon and not port:
        return f"domain {_quote(domain)} has an empty port"
    if port and not _PORT_RE.fullmatch(port):
        return f"domain {_quote(domain)}: port {_quote(port)} must be digits"
    return f"domain {_quote(domain)} is not valid"


def _tag_problem(tag: str) -> str:
    if not tag:
        return "tag is empty (nothing after ':')"
    if len(tag) > TAG_LENGTH_MAX:
        return f"tag is {len(tag)} characters long, at most {TAG_LENGTH_MAX} are allowed"
    return f"tag {_quote(tag)} is not valid: letters, digits, '_', '.' and '-', not starting with '.' or '-'"


def _digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a digest a runtime can verify, or None when it is."""
    if _SHA256_DIGEST_RE.fullmatch(digest):
        return None
    if not digest:
        return "digest is empty (nothing after '@')"
    if not _DIGEST_RE.fullmatch(digest):
        return f"digest {_quote(digest)} is not 'algorithm:hex' with at least 32 hex digits"
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        return f"digest algorithm {_quote(algorithm)} is not supported (use sha256, sha384 or sha512)"
    if len(encoded) != length or not _LOWER_HEX_RE.fullmatch(encoded):
        return f"{algorithm} digest must be exactly {length} lowercase hex digits"
    return None


def _parse(text: str) -> ImageReference | InvalidReference:
    if not text:
        return InvalidReference(text, "image reference is empty")
    if len(text) == 64 and _IMAGE_ID_RE.fullmatch(text):
        # Docker refuses these so that a name can never be mistaken for an image ID.
        return InvalidReference(text, "cannot specify 64-byte hexadecimal strings: that is an image ID")

    # Neither a name nor a tag may contain '@', so the first '@' starts the digest.
    rest, at, digest = text.partition("@")
    # A tag can contain neither '/' nor ':', so a ':' after the last '/' starts it; any earlier ':'
    # belongs to a port ("localhost:5000/x").
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name = rest[:colon]
        tag: str | None = rest[colon + 1 :]
    else:
        name = rest
        tag = None
    if not name:
        return InvalidReference(text, "repository name is missing")

    # ``remote`` is the path as written; the "library/" prefix is added only once it is known valid, so
    # that reasons quote what the user wrote.
    slash = name.find("/")
    if slash < 0:
        domain = DEFAULT_DOMAIN
        remote = name
    else:
        first = name[:slash]
        # Docker's rule for telling "registry/..." from "dockerhub-namespace/...".
        if "." in first or ":" in first or first == "localhost" or first.lower() != first:
            remote = name[slash + 1 :]
            if first == LEGACY_DEFAULT_DOMAIN:
                domain = DEFAULT_DOMAIN
            else:
                problem = _domain_problem(first)
                if problem is not None:
                    if first.endswith(":") and remote.startswith("/"):
                        # A URL pasted as an image: say so rather than complain about a port.
                        problem = f"image reference must not include a scheme: drop {_quote(first + '//')}"
                    return InvalidReference(text, problem)
                domain = first
            if not remote:
                return InvalidReference(text, "repository name is missing after the domain")
        else:
            domain = DEFAULT_DOMAIN
            remote = name

    problem = _path_problem(remote, "repository name")
    if problem is not None:
        return InvalidReference(text, problem)
    # Official images: Docker Hub names without a namespace live under "library/".
    path = OFFICIAL_REPOSITORY_PREFIX + remote if domain == DEFAULT_DOMAIN and "/" not in remote else remote
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        return InvalidReference(
            text,
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters "
            f"(it is {len(domain) + 1 + len(path)} with its domain)",
        )
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return InvalidReference(text, _tag_problem(tag))
    if at:
        problem = _digest_problem(digest)
        if problem is not None:
            return InvalidReference(text, problem)
        return ImageReference(domain, path, tag, digest)
    return ImageReference(domain, path, tag, None)


@functools.lru_cache(maxsize=4096)
def parse_reference(text: str) -> ImageReference | InvalidReference:
    """Parse and normalise an image reference as Docker's ``ParseNormalizedNamed`` does.

    Never raises: anything that is not a valid reference comes back as an ``InvalidReference`` with a
    one-line reason. Both results are immutable, which is what makes the cache safe.
    """
    try:
        return _parse(text)
    except Exception as exc:
        # Unreachable by design (the property tests look for this reason); it is here because an
        # exception would fail the whole admission request, where a bad image should only warn.
        return InvalidReference(str(text), f"internal error while parsing: {type(exc).__name__}")


def registry_server_error(server: str) -> str | None:
    """Why ``server`` (``host[:port][/path...]``) cannot be a rewrite target, or None when it can."""
    if not server:
        return "registry server is empty"
    scheme, sep, _ = server.partition("://")
    if sep:
        return f"registry server must not include a scheme: drop {_quote(scheme + sep)}"
    if server.endswith("/"):
        return "registry server must not end with '/'"
    if "@" in server:
        return "registry server must not include a digest"
    host, slash, path = server.partition("/")
    if slash and ":" in path:
        return "registry server must not include a tag"
    problem = _domain_problem(host)
    if problem is not None:
        return f"registry server: {problem}"
    if "." not in host and ":" not in host and host != "localhost" and host.lower() != host:
        # Docker would read it as a registry, but only because of its capitals (host names ignore
        # case): saying "Docker Hub namespace" here would name the wrong problem.
        return (
            f"registry server {_quote(server)} is a single-label host in upper case: write the host in "
            "lower case with its domain or a port (registry.example.com, myregistry:5000), or localhost"
        )
    if "." not in host and ":" not in host and host != "localhost":
        return (
            f"registry server {_quote(server)} would be read as a Docker Hub namespace: "
            "use a host with a dot or a port, or localhost"
        )
    # The grammar accepts any run of digits; a port no TCP connection can use is certainly a typo, and
    # catching it at apply time beats every chaos pod failing to pull.
    port = host.rpartition("]")[2] if host.startswith("[") else host
    _, colon, port = port.rpartition(":")
    # len() first: int() refuses digit strings longer than sys.get_int_max_str_digits().
    if colon and (len(port) > 5 or not 0 < int(port) < 65536):
        return f"registry server port {_quote(port)} is out of range (1-65535)"
    if slash:
        problem = _path_problem(path, "registry server path")
        if problem is not None:
            return problem
    # The server alone already counts against the 255-character name limit ("/" + repository follow).
    if len(server) > NAME_TOTAL_LENGTH_MAX - 2:
        return f"registry server is too long: an image name is at most {NAME_TOTAL_LENGTH_MAX} characters"
    return None


def registry_account_error(account: str) -> str | None:
    """Why ``account`` (path segments after the server; "" for none) is not valid, or None when it is."""
    if not account:
        return None
    return _path_problem(account, "registry account")


def join_image(
    server: str, registry_account: str, last_segment: str, tag: str | None, digest: str | None
) -> str:
    """``<server>/<registry account>/<last segment>[:tag][@digest]``, without the account segment
    when it is ""."""
    image = f"{server}/{registry_account}/{last_segment}" if registry_account else f"{server}/{last_segment}"
    if tag is not None:
        image = f"{image}:{tag}"
    if digest is not None:
        image = f"{image}@{digest}"
    return image

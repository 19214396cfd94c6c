"""Ask an OCI registry whether a manifest exists and is readable: the distribution API's HEAD of
`/v2/<name>/manifests/<reference>`, with the Basic and Bearer-token flows a registry announces in
`WWW-Authenticate`, credentials from a dockerconfigjson pull secret, and TLS with a custom CA.

A small client on aiohttp rather than a library: the checks run in the operator's event loop with
bounded concurrency, and the maintained Python OCI client (oras) is synchronous (requests), reads
credentials from files, and takes no CA bundle. Credentials never appear in results or logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# Docker Hub's registry answers on another host than the one image references name.
_HOST_ALIASES = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Outcome(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    UNAUTHORIZED = "unauthorized"
    UNREACHABLE = "unreachable"
    SECRET_MISSING = "secret-missing"


@dataclass(frozen=True, slots=True)
class Credential:
    """A user name and password for one registry; the password is never printed."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    detail: str  # one line, no secret content


@dataclass
class Counters:
    """Requests sent, for the cost figures of a check."""

    requests: int = 0
    token_requests: int = 0


def _registry_key(text: str) -> str:
    key = text.strip().removeprefix("https://").removeprefix("http://").split("/", 1)[0].lower()
    return "docker.io" if key in ("index.docker.io", "registry-1.docker.io") else key


class DockerConfigError(ValueError):
    """A dockerconfigjson that cannot be read; the message names the field, never a value."""


def credentials_from_dockerconfig(document: Any) -> dict[str, Credential]:
    """Registry host -> credential from a `.dockerconfigjson` document (`auths`, `auth` or
    `username`/`password`)."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except ValueError:
            raise DockerConfigError("is not JSON") from None
    auths = document.get("auths") if isinstance(document, Mapping) else None
    if not isinstance(auths, Mapping):
        raise DockerConfigError("has no auths object")
    found: dict[str, Credential] = {}
    for server, entry in auths.items():
        if not isinstance(entry, Mapping):
            raise DockerConfigError(f"auths[{server!r}] is not an object")
        username, password = entry.get("username"), entry.get("password")
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise DockerConfigError(f"auths[{server!r}].auth is not base64 of user:password") from None
        if isinstance(username, str) and isinstance(password, str):
            found[_registry_key(str(server))] = Credential(username, password)
    return found


def credential_for(credentials: Mapping[str, Credential] | None, host: str) -> Credential | None:
    if not credentials:
        return None
    return credentials.get(_registry_key(host))


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """HEAD requests to registries over one aiohttp session, at most `concurrency` at a time.

    Remembers per (host, credential) that a registry wants Basic auth, and Bearer tokens per
    (host, repository, credential), so that a second image costs one request.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        concurrency: int = 16,
    ) -> None:
        self._session = session
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(concurrency)
        self._basic_hosts: set[tuple[str, Credential | None]] = set()
        # The first request to a (host, credential) goes alone: it learns the auth scheme the rest use.
        self._first: dict[tuple[str, Credential | None], asyncio.Event] = {}
        self._tokens: dict[tuple[str, str, Credential | None], str] = {}
        self.counters = Counters()

    async def head_manifest(
        self, host: str, repository: str, reference: str, credential: Credential | None
    ) -> Answer:
        first = self._first.get((host, credential))
        if first is None:
            first = self._first[(host, credential)] = asyncio.Event()
        else:
            await first.wait()
        async with self._limit:
            try:
                return await self._head(host, repository, reference, credential)
            except TimeoutError:
                return Answer(Outcome.UNREACHABLE, f"{host}: no answer within {self._timeout.total:g} s")
            except aiohttp.ClientSSLError as error:
                return Answer(Outcome.UNREACHABLE, f"{host}: TLS: {_reason(error)}")
            except aiohttp.ClientError as error:
                return Answer(Outcome.UNREACHABLE, f"{host}: {_reason(error)}")
            finally:
                first.set()

    async def _head(
        self, host: str, repository: str, reference: str, credential: Credential | None
    ) -> Answer:
        server = _HOST_ALIASES.get(host, host)
        url = f"https://{server}/v2/{repository}/manifests/{reference}"
        headers = {"Accept": MANIFEST_TYPES}
        token = self._tokens.get((host, repository, credential))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif credential is not None and (host, credential) in self._basic_hosts:
            headers["Authorization"] = credential.basic()
        status, challenge = await self._send(url, headers)
        if status == 401 and challenge and "Authorization" not in headers:
            scheme, params = _challenge(challenge)
            if scheme == "basic" and credential is not None:
                self._basic_hosts.add((host, credential))
                headers["Authorization"] = credential.basic()
                status, challenge = await self._send(url, headers)
            elif scheme == "bearer" and params.get("realm"):
                token_or_answer = await self._token(host, repository, params, credential)
                if isinstance(token_or_answer, Answer):
                    return token_or_answer
                self._tokens[(host, repository, credential)] = token_or_answer
                headers["Authorization"] = f"Bearer {token_or_answer}"
                status, challenge = await self._send(url, headers)
        return _answer(status, host, credential)

    async def _send(self, url: str, headers: Mapping[str, str]) -> tuple[int, str | None]:
        self.counters.requests += 1
        async with self._session.head(
            url, headers=headers, ssl=self._ssl, timeout=self._timeout, allow_redirects=True
        ) as response:
            return response.status, response.headers.get("WWW-Authenticate")

    async def _token(
        self, host: str, repository: str, params: Mapping[str, str], credential: Credential | None
    ) -> str | Answer:
        query = {"scope": f"repository:{repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": credential.basic()} if credential is not None else {}
        self.counters.requests += 1
        self.counters.token_requests += 1
        async with self._session.get(
            params["realm"], params=query, headers=headers, ssl=self._ssl, timeout=self._timeout
        ) as response:
            if response.status in (401, 403):
                return Answer(Outcome.UNAUTHORIZED, f"{host}: the token service refused the credentials")
            if response.status != 200:
                return Answer(Outcome.UNREACHABLE, f"{host}: token service answered HTTP {response.status}")
            try:
                body = await response.json(content_type=None)
            except ValueError:
                return Answer(Outcome.UNREACHABLE, f"{host}: token service answered no JSON")
        token = body.get("token") or body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            return Answer(Outcome.UNREACHABLE, f"{host}: token service answered no token")
        return token


def _answer(status: int, host: str, credential: Credential | None) -> Answer:
    if status == 200:
        return Answer(Outcome.PRESENT, "present")
    if status == 404:
        return Answer(Outcome.MISSING, "manifest unknown (HTTP 404)")
    if status in (401, 403):
        who = "without credentials" if credential is None else f"as {credential.username}"
        return Answer(Outcome.UNAUTHORIZED, f"not readable {who} (HTTP {status})")
    return Answer(Outcome.UNREACHABLE, f"{host}: HTTP {status}")


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def ssl_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The system trust store plus `ca_file` (PEM), or None for the defaults."""
    if ca_file is None:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context

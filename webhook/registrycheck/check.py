"""Check many scopes at once: each (registry, image, pull secret) is asked once, however many scopes
share it, and the answers are handed back per scope.

Scopes mostly share a few registries and the release images, so 10,000 scopes cost as many
requests as their distinct (image, secret) pairs, not 10,000 times the image list.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.core.images import NeededImage, split_target
from webhook.core.resolver import Effective
from webhook.registrycheck.client import (
    Answer,
    Credential,
    DockerConfigError,
    Outcome,
    RegistryClient,
    credential_for,
    credentials_from_dockerconfig,
)


@dataclass(frozen=True, slots=True, order=True)
class SecretRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def secret_of(effective: Effective, release_namespace: str) -> SecretRef | None:
    """The pull secret pods of a scope get, where its source lives; None for a Public registry."""
    if not effective.private or not effective.secret_name:
        return None
    return SecretRef(effective.secret_namespace or release_namespace, effective.secret_name)


@dataclass(frozen=True, slots=True)
class ScopeCheck:
    scope: str
    images: tuple[NeededImage, ...]
    secret: SecretRef | None


@dataclass(frozen=True, slots=True)
class ImageResult:
    image: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True, slots=True)
class ScopeReport:
    scope: str
    secret: SecretRef | None
    results: tuple[ImageResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(result.outcome is Outcome.PRESENT for result in self.results)

    def failing(self, outcome: Outcome | None = None) -> list[ImageResult]:
        return [
            r
            for r in self.results
            if r.outcome is not Outcome.PRESENT and (outcome is None or r.outcome is outcome)
        ]


# What a secret lookup gave: the credentials per registry host, or why there are none.
SecretCredentials = Mapping[str, Credential] | str

DOCKERCONFIG_KEY = ".dockerconfigjson"


def secret_credentials(ref: SecretRef, data: Mapping[str, Any]) -> SecretCredentials:
    """Credentials of a dockerconfigjson Secret's base64 `data`, or why it has none usable."""
    encoded = data.get(DOCKERCONFIG_KEY)
    if not encoded or not isinstance(encoded, str):
        return f"Secret {ref} has no {DOCKERCONFIG_KEY} key"
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except ValueError:
        return f"Secret {ref}: {DOCKERCONFIG_KEY} is not base64"
    try:
        return credentials_from_dockerconfig(decoded)
    except DockerConfigError as error:
        return f"Secret {ref}: {DOCKERCONFIG_KEY} {error}"


_Key = tuple[str, str, str, SecretRef | None]


async def check_scopes(
    client: RegistryClient,
    checks: Sequence[ScopeCheck],
    secrets: Mapping[SecretRef, SecretCredentials],
) -> list[ScopeReport]:
    """Ask each distinct (host, repository, reference, secret) once; report per scope.

    A secret absent from `secrets` or given as a reason string is missing: its scope's images are
    reported `secret-missing` without a request.
    """
    unique: dict[_Key, None] = {}
    parsed: dict[str, tuple[str, str, str] | str] = {}
    for check in checks:
        for needed in check.images:
            if needed.target not in parsed:
                try:
                    parsed[needed.target] = split_target(needed.target)
                except ValueError as error:
                    parsed[needed.target] = str(error)
            target = parsed[needed.target]
            if isinstance(target, tuple) and _credentials(check.secret, secrets) is not None:
                unique.setdefault((*target, check.secret), None)
    keys = list(unique)
    answers = await asyncio.gather(*(_ask(client, key, secrets) for key in keys))
    by_key = dict(zip(keys, answers, strict=True))
    reports = []
    for check in checks:
        results = []
        for needed in check.images:
            target = parsed[needed.target]
            if isinstance(target, str):
                results.append(
                    ImageResult(needed.target, Outcome.UNREACHABLE, f"invalid reference: {target}")
                )
                continue
            found = _credentials(check.secret, secrets)
            if found is None or isinstance(found, str):
                reason = found if isinstance(found, str) else f"Secret {check.secret} not found"
                results.append(ImageResult(needed.target, Outcome.SECRET_MISSING, reason))
                continue
            answer = by_key[(*target, check.secret)]
            results.append(ImageResult(needed.target, answer.outcome, answer.detail))
        reports.append(ScopeReport(check.scope, check.secret, tuple(dict.fromkeys(results))))
    return reports


def _credentials(
    secret: SecretRef | None, secrets: Mapping[SecretRef, SecretCredentials]
) -> SecretCredentials | None:
    if secret is None:
        return {}
    return secrets.get(secret)


async def _ask(client: RegistryClient, key: _Key, secrets: Mapping[SecretRef, SecretCredentials]) -> Answer:
    host, repository, reference, secret = key
    found = _credentials(secret, secrets)
    credentials = found if isinstance(found, Mapping) else None
    return await client.head_manifest(host, repository, reference, credential_for(credentials, host))


def summary(reports: Iterable[ScopeReport]) -> dict[str, int]:
    """Images per outcome over all scopes."""
    counts: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
    for report in reports:
        for result in report.results:
            counts[result.outcome.value] += 1
    return counts

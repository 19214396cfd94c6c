"""What the last registry check found, in the shapes status and admission read. Pure: no I/O.

The Lease holder checks each scope's images in its registry now and then (opt-in) and hands the
result over as an `Availability`: the status writer turns it into the ImagesAvailable condition,
and admission warns about a rewritten image known to be unavailable, without waiting on anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

IMAGES_AVAILABLE = "ImagesAvailable"
# status.unavailableImages: [{image, reason}], read back by every replica's watch for the warnings.
UNAVAILABLE_FIELD = "unavailableImages"
MAX_UNAVAILABLE_LISTED = 100
IMAGES_UNAVAILABLE_EVENT = "ImagesUnavailable"
# Names listed in a condition message; the rest are counted (a status must stay small).
_MESSAGE_IMAGES = 10


@dataclass(frozen=True, slots=True)
class ScopeAvailability:
    """One scope's check: how many images it needs, and each one not available with why."""

    needed: int
    unavailable: tuple[tuple[str, str, str], ...]  # (image, outcome, detail)
    checked_at: str  # RFC 3339, from the checker's clock

    @property
    def ok(self) -> bool:
        return not self.unavailable


@dataclass(frozen=True, slots=True)
class Availability:
    """Scope (as text) -> its last check; image -> reason, for every image found unavailable."""

    scopes: Mapping[str, ScopeAvailability] = field(default_factory=lambda: MappingProxyType({}))
    unavailable_images: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, scopes: Mapping[str, ScopeAvailability]) -> Availability:
        images = {
            image: f"{outcome}: {detail}"
            for result in scopes.values()
            for image, outcome, detail in result.unavailable
        }
        return cls(MappingProxyType(dict(scopes)), MappingProxyType(images))


def images_condition(result: ScopeAvailability, generation: int) -> dict[str, Any]:
    """The ImagesAvailable condition (without lastTransitionTime) of a checked scope."""
    if result.ok:
        return {
            "type": IMAGES_AVAILABLE,
            "status": "True",
            "reason": "AllImagesPresent",
            "message": f"all {result.needed} images the scope needs are in its registry "
            f"(checked {result.checked_at})",
            "observedGeneration": generation,
        }
    outcomes = sorted({outcome for _, outcome, _ in result.unavailable})
    listed = [f"{image} ({outcome})" for image, outcome, _ in result.unavailable[:_MESSAGE_IMAGES]]
    more = len(result.unavailable) - len(listed)
    names = ", ".join(listed) + (f" and {more} more" if more > 0 else "")
    reason = (
        {
            "missing": "ImagesMissing",
            "unauthorized": "ImagesUnauthorized",
            "secret-missing": "PullSecretMissing",
        }.get(outcomes[0], "RegistryUnreachable")
        if len(outcomes) == 1
        else "ImagesUnavailable"
    )
    return {
        "type": IMAGES_AVAILABLE,
        "status": "False",
        "reason": reason,
        "message": f"{len(result.unavailable)} of {result.needed} images are not available: {names} "
        f"(checked {result.checked_at}); mirror them (chaos-registry images -o list) or fix the pull secret",
        "observedGeneration": generation,
    }


def unavailable_warning(image: str, reason: str) -> str:
    """The admission warning of a rewritten image the last check found unavailable."""
    return (
        f"image {image!r} was not available in its registry at the last check ({reason}): "
        "the pod may not pull it"
    )


def unavailable_status(result: ScopeAvailability) -> list[dict[str, str]]:
    """status.unavailableImages of a checked scope (empty when all are there)."""
    return [
        {"image": image, "reason": f"{outcome}: {detail}"[:512]}
        for image, outcome, detail in result.unavailable[:MAX_UNAVAILABLE_LISTED]
    ]


def unavailable_from_status(status: Any) -> tuple[tuple[str, str], ...]:
    """(image, reason) pairs a status lists; anything malformed is skipped (the status is ours, but
    a person can edit it)."""
    items = status.get(UNAVAILABLE_FIELD) if isinstance(status, Mapping) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        (item["image"], item["reason"])
        for item in items[:MAX_UNAVAILABLE_LISTED]
        if isinstance(item, Mapping)
        and isinstance(item.get("image"), str)
        and isinstance(item.get("reason"), str)
    )

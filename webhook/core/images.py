"""Which images the chaos pods of a scope will pull, and where from: the input of mirroring and checks.

A scope needs every image of the releases it runs (the release lists of the defaults, at the
versions chosen), each as the webhook rewrites it, plus its custom images verbatim. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.core.classifier import scope_from_labels
from webhook.core.models import Scope, release_version_error
from webhook.core.reference import ImageReference, parse_reference
from webhook.core.snapshot import CompiledConfig

UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True, order=True)
class NeededImage:
    """One image a scope's pods pull: `source` as the chaos product names it, `target` as admitted.

    `component` is the catalog component (None for images the catalog does not name); `release` is
    the release whose list holds it, or "custom" for a custom image no release image maps to.
    """

    scope: str
    target: str
    source: str
    component: str | None
    release: str
    custom: bool = False  # the target is a custom image, used verbatim: not a copy of the source


@dataclass(frozen=True, slots=True)
class ScopeImages:
    scope: Scope
    configured: bool  # False: no ChaosImageRegistry covers it, its pods are admitted unchanged
    images: tuple[NeededImage, ...]


def release_images(
    config: CompiledConfig, versions: Mapping[str, str], releases: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """(release, image) for every release image at its chosen version; raises ValueError on a bad
    version or an unknown release name."""
    known = config.defaults.releases
    chosen = list(releases) if releases is not None else list(known)
    problems = [
        f"unknown release {name!r} (known: {', '.join(sorted(known))})"
        for name in chosen
        if name not in known
    ]
    problems += [
        f"unknown release {name!r} (known: {', '.join(sorted(known))})"
        for name in versions
        if name not in known
    ]
    problems += [
        f"{name} version: {error}" for name, v in versions.items() if (error := release_version_error(v))
    ]
    if problems:
        raise ValueError("; ".join(dict.fromkeys(problems)))
    return [(name, image) for name in chosen for image in known[name].image_list(versions.get(name))]


def scope_images(config: CompiledConfig, scope: Scope, sources: Iterable[tuple[str, str]]) -> ScopeImages:
    """What `scope` needs: each source image as the webhook would admit it (both as a fault pod's and
    as a helper pod's image, which differ for chaos-ddcr-faults with custom images), then custom
    images that no source maps to."""
    rewriter = config.rewriter(scope)
    effective = rewriter.effective
    configured = bool(effective.layers) or config.defaults.rewrite_unconfigured_scopes
    customs = set(effective.custom_images.values()) if configured and effective.custom_enabled else set()
    found: dict[tuple[str, str], NeededImage] = {}
    for release, source in sources:
        for helper in (False, True):
            target = rewriter.target_image(source, helper)
            image = target.image or source
            if not configured:
                image = source
            key = (image, source)
            if key not in found:
                found[key] = NeededImage(
                    str(scope), image, source, target.component, release, image in customs and image != source
                )
    if customs:
        targets = {needed.target for needed in found.values()}
        for component, image in sorted(effective.custom_images.items()):
            if image not in targets:
                found[(image, image)] = NeededImage(str(scope), image, image, component, "custom", True)
    return ScopeImages(
        scope, configured, tuple(sorted(found.values(), key=lambda n: (n.release, n.source, n.target)))
    )


def config_scopes(config: CompiledConfig, namespaces: Mapping[str, Mapping[str, str]]) -> list[Scope]:
    """Every scope that has a ChaosImageRegistry or a namespace bound to it, sorted."""
    scopes = {entry.scope for entry in config.index.entries()}
    scopes.update(
        scope_from_labels(labels, config.defaults.default_account).scope for labels in namespaces.values()
    )
    return sorted(scopes)


def split_target(image: str) -> tuple[str, str, str]:
    """(registry host, repository path, tag or digest reference) of a normalised image reference."""
    reference = parse_reference(image)
    if not isinstance(reference, ImageReference):
        raise ValueError(f"{image!r}: {reference.reason}")
    return reference.domain, reference.path, reference.digest or reference.tag or "latest"

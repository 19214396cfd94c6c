"""The mutation of one chaos pod (docs/contract.md#mutation), as an RFC 6902 JSON Patch.

Works on the pod as the API sends it (plain dicts and lists) and never copies it: it reads the pod
and emits only the operations needed. Mutating an already mutated pod yields no operation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.core.classifier import CONTAINER_LISTS
from webhook.core.documents import quote
from webhook.core.jsonpatch import escape_pointer
from webhook.core.models import ORIGINAL_IMAGES_ANNOTATION, SCOPE_ANNOTATION, CatalogEntry
from webhook.core.reference import ImageReference, parse_reference
from webhook.core.reference import join_image as _join_image
from webhook.core.resolver import Effective
from webhook.core.sharing import remember, shared

JsonPatch = list[dict[str, Any]]
_CACHE_LIMIT = 4096
# One string per image text for the target caches of all scopes (bounded, unlike sys.intern: the
# texts come from pods).
_SHARED_IMAGES: dict[str, str] = {}
_HELPER_KEYS: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One image changed: in a container's `image` (env is None) or in one of its env vars."""

    container: str
    env: str | None
    component: str | None
    original: str
    image: str


@dataclass(frozen=True, slots=True)
class Target:
    """What an image should become: `image` is None when it is already right (or cannot be parsed)."""

    image: str | None
    component: str | None
    warning: str | None


def _helper_key(image: str) -> str:
    """The key of `image` seen in a helper pod (where a component may differ) in a target cache."""
    key = _HELPER_KEYS.get(image)
    return remember(_HELPER_KEYS, image, f"helper\0{image}", _CACHE_LIMIT) if key is None else key


class RewriteTables:
    """What the Rewriters of one configuration share: the catalog, and a bounded memo of the
    catalog component of a cache key (an image, or a helper key), which does not depend on the
    scope (100,000 scopes in use would each have paid for it).
    """

    __slots__ = ("catalog", "components")

    def __init__(self, catalog: Mapping[str, CatalogEntry]) -> None:
        self.catalog = catalog
        self.components: dict[str, str] = {}  # "" for an image of no component


class Rewriter:
    """Target images under one effective registry, cached per (image, helper context)."""

    # One per scope in use (100,000 scopes: 100,000 of them): no per-instance __dict__.
    __slots__ = ("_annotation", "_cache", "effective", "tables")

    def __init__(self, effective: Effective, tables: RewriteTables) -> None:
        self.effective = effective
        self.tables = tables
        # One table for both contexts (a helper pod's image under its own key), keyed by shared
        # strings: every scope caches the same few catalog images, so they share one string
        # instead of keeping each request's copy, and a second table per scope would cost 0.2 KiB.
        # A plain target (a new image, no warning, the catalog's component) is kept as its new image
        # alone: with 100,000 scopes in use a Target object per cached image cost 10 MiB.
        self._cache: dict[str, str | Target] = {}
        # Kept rather than memoised in a bounded table: with 100,000 scopes in use such a table
        # mostly missed, and admission rebuilt the annotation, reading the layers' names from memory
        # no cache held, for most chaos pods (bench/RESULTS.md); kept, it costs 0.2 KiB per scope.
        self._annotation: str | None = None

    def _cached(self, image: str, helper: bool) -> str | Target:
        cache = self._cache
        key = _helper_key(image) if helper else image
        cached = cache.get(key)
        if cached is None:
            if not helper:
                key = shared(_SHARED_IMAGES, image, _CACHE_LIMIT)
            target = self._compute(image, helper)
            kept = target if target.image is None or target.warning else target.image
            cached = remember(cache, key, kept, _CACHE_LIMIT)
        return cached

    def new_image(self, image: str, helper: bool, warnings: list[str]) -> str | None:
        """What `image` becomes (None: it stays), its warning added to `warnings`: the hot path."""
        cached = self._cached(image, helper)
        if isinstance(cached, str):
            return cached
        if cached.warning:
            warnings.append(cached.warning)
        return cached.image

    def target_image(self, image: str, helper: bool) -> Target:
        cached = self._cached(image, helper)
        if isinstance(cached, str):
            return Target(cached, self.component(image, helper), None)
        return cached

    def component(self, image: str, helper: bool) -> str | None:
        """The catalog component `image` is (in a helper pod when `helper`), for the rewrite's record."""
        components = self.tables.components
        key = _helper_key(image) if helper else image
        component = components.get(key)
        if component is None:
            reference = parse_reference(image)
            found = self._component(reference, helper) if isinstance(reference, ImageReference) else None
            component = remember(components, key, found or "", _CACHE_LIMIT)
        return component or None

    @property
    def scope_annotation(self) -> str:
        """The scope annotation of every pod this Rewriter mutates."""
        annotation = self._annotation
        if annotation is None:
            annotation = self._annotation = scope_annotation(self.effective)
        return annotation

    def _component(self, reference: ImageReference, helper: bool) -> str | None:
        entry = self.tables.catalog.get(reference.last_segment)
        if entry is None:
            return None
        return entry.helper_component if helper and entry.helper_component else entry.component

    def _compute(self, image: str, helper: bool) -> Target:
        reference = parse_reference(image)
        if not isinstance(reference, ImageReference):
            return Target(None, None, f"image {quote(image)} left unchanged: {reference.reason}")
        component = self._component(reference, helper)
        effective = self.effective
        if effective.custom_enabled and image in effective.custom_images.values():
            # Else a second pass with no record of the original (an ephemeral container, a duplicate env
            # name) would move it again: to <server>/<account>/<repository>, or to the custom image of
            # the component its repository names (a custom ddcr image in a go-runner repository).
            return Target(None, component, None)
        warning = None
        new_image = None
        if effective.custom_enabled and component is not None:
            new_image = effective.custom_images.get(component)
            if new_image is None:
                warning = (
                    f"custom images are enabled but component {component} has none: "
                    f"{reference.last_segment} rewritten to registry {effective.server}"
                )
        if new_image is None:
            new_image = _join_image(
                effective.server,
                effective.registry_account,
                reference.last_segment,
                reference.tag,
                reference.digest,
            )
        rewritten = parse_reference(new_image)
        if not isinstance(rewritten, ImageReference):  # e.g. server + account + path over 255 characters
            return Target(
                None,
                component,
                f"image {quote(image)} left unchanged: under registry {effective.server} it would be "
                f"invalid: {rewritten.reason}",
            )
        if new_image == image or rewritten == reference:
            return Target(None, component, warning)
        return Target(new_image, component, warning)

    def settled(self, recorded_original: str, current: str, helper: bool) -> bool:
        """True when `current` is what `recorded_original` becomes: the webhook already did this."""
        cached = self._cached(recorded_original, helper)
        target = cached if isinstance(cached, str) else cached.image
        return (recorded_original if target is None else target) == current


@dataclass(frozen=True, slots=True)
class PodPatch:
    patch: JsonPatch
    rewrites: tuple[Rewrite, ...]
    warnings: tuple[str, ...]


def _read_originals(annotations: Mapping[str, Any] | None, warnings: list[str]) -> dict[str, str]:
    """The record of earlier rewrites; one that cannot be read is ignored, never fatal.

    The annotation is the pod author's to write: if reading it could raise (deep nesting raises
    RecursionError, not ValueError), any pod could force the admission error path and, under
    failurePolicy Ignore, be admitted unrewritten.
    """
    raw = annotations.get(ORIGINAL_IMAGES_ANNOTATION) if annotations else None
    if raw is None:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        warnings.append(f"annotation {ORIGINAL_IMAGES_ANNOTATION} is not a JSON object of strings: replaced")
        return {}
    return value


def scope_annotation(effective: Effective) -> str:
    # orjson takes 0.5 us against json's 3-5; the names are read straight from the layers.
    names = [entry.name for entry in effective.layers]
    return orjson.dumps({"scope": "/".join(effective.scope.parts), "registries": names}).decode()


def mutate_pod(
    pod: Mapping[str, Any],
    rewriter: Rewriter,
    *,
    helper_pod: bool,
    env_vars: Mapping[str, bool],
    old_pod: Mapping[str, Any] | None = None,
) -> PodPatch:
    """The patch that makes a chaos pod follow `rewriter.effective`.

    With `old_pod` (an UPDATE of pods/ephemeralcontainers) only ephemeral containers that are new
    are touched: the apiserver refuses changes to existing ones and drops any other change.
    """
    warnings: list[str] = []
    patch: JsonPatch = []
    rewrites: list[Rewrite] = []
    spec = pod.get("spec")
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        annotations = None
    originals = _read_originals(annotations, warnings)
    originals_changed = False
    existing_ephemeral = _ephemeral_names(old_pod) if old_pod is not None else None

    if isinstance(spec, Mapping):
        for list_name in CONTAINER_LISTS:
            containers = spec.get(list_name)
            if not isinstance(containers, list):
                continue
            if existing_ephemeral is not None and list_name != "ephemeralContainers":
                continue
            for index, container in enumerate(containers):
                if not isinstance(container, Mapping):
                    continue
                name = container.get("name")
                name = name if isinstance(name, str) else f"{list_name}[{index}]"
                if existing_ephemeral is not None and name in existing_ephemeral:
                    continue
                base = f"/spec/{list_name}/{index}"
                image = container.get("image")
                if isinstance(image, str) and image:
                    new_image = _rewrite(rewriter, image, helper_pod, originals.get(name), warnings)
                    if new_image is not None:
                        patch.append({"op": "replace", "path": f"{base}/image", "value": new_image})
                        rewrites.append(
                            Rewrite(
                                name,
                                None,
                                rewriter.component(image, helper_pod),
                                image,
                                new_image,
                            )
                        )
                        originals[name] = image
                        originals_changed = True
                env = container.get("env")
                if not isinstance(env, list) or not env_vars:
                    continue
                for env_index, variable in enumerate(env):
                    if not isinstance(variable, Mapping):
                        continue
                    var_name = variable.get("name")
                    value = variable.get("value")
                    if (
                        not isinstance(var_name, str)
                        or var_name not in env_vars
                        or not isinstance(value, str)
                        or not value
                    ):
                        continue
                    helper = env_vars[var_name] or helper_pod
                    key = f"{name}/env/{var_name}"
                    new_value = _rewrite(rewriter, value, helper, originals.get(key), warnings)
                    if new_value is not None:
                        patch.append(
                            {"op": "replace", "path": f"{base}/env/{env_index}/value", "value": new_value}
                        )
                        rewrites.append(
                            Rewrite(
                                name,
                                var_name,
                                rewriter.component(value, helper),
                                value,
                                new_value,
                            )
                        )
                        originals[key] = value
                        originals_changed = True

    if existing_ephemeral is None:
        effective = rewriter.effective
        if effective.private:
            _add_pull_secret(spec, effective, patch, warnings)
        desired: dict[str, str] = {}
        if originals_changed:
            desired[ORIGINAL_IMAGES_ANNOTATION] = json.dumps(originals, sort_keys=True, separators=(",", ":"))
        scope_value = rewriter.scope_annotation
        if annotations is None or annotations.get(SCOPE_ANNOTATION) != scope_value:
            desired[SCOPE_ANNOTATION] = scope_value
        _set_annotations(metadata, annotations, desired, patch)
    for problem in rewriter.effective.problems:
        warnings.append(problem)
    return PodPatch(patch, tuple(rewrites), tuple(dict.fromkeys(warnings)))


def _rewrite(
    rewriter: Rewriter, image: str, helper: bool, recorded: str | None, warnings: list[str]
) -> str | None:
    if recorded is not None and rewriter.settled(recorded, image, helper):
        return None
    return rewriter.new_image(image, helper, warnings)


def _ephemeral_names(old_pod: Mapping[str, Any]) -> frozenset[str]:
    spec = old_pod.get("spec")
    containers = spec.get("ephemeralContainers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        return frozenset()
    return frozenset(
        c["name"] for c in containers if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    )


def _add_pull_secret(spec: Any, effective: Effective, patch: JsonPatch, warnings: list[str]) -> None:
    secret = effective.secret_name
    if not secret:
        return  # reported through effective.problems
    if not isinstance(spec, Mapping):
        warnings.append("pod has no spec: pull secret not added")
        return
    existing = spec.get("imagePullSecrets")
    entry = {"name": secret}
    if not isinstance(existing, list):
        patch.append({"op": "add", "path": "/spec/imagePullSecrets", "value": [entry]})
    elif not any(isinstance(item, Mapping) and item.get("name") == secret for item in existing):
        patch.append({"op": "add", "path": "/spec/imagePullSecrets/-", "value": entry})


def _set_annotations(
    metadata: Any, annotations: Mapping[str, Any] | None, desired: dict[str, str], patch: JsonPatch
) -> None:
    if not desired:
        return
    if not isinstance(metadata, Mapping):
        patch.append({"op": "add", "path": "/metadata", "value": {"annotations": desired}})
    elif annotations is None:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": desired})
    else:
        for key, value in desired.items():
            patch.append(
                {"op": "add", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value}
            )

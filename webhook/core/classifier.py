"""Which pods are chaos pods, which are helper pods, and which scope a namespace binds its pods to.

Scope comes only from namespace labels: a pod's own labels could claim another project's registry
and receive its pull secret.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webhook.core.models import (
    INJECT_LABEL,
    SCOPE_LABELS,
    ChaosPodRule,
    DefaultsConfig,
    Scope,
)
from webhook.core.reference import ImageReference, parse_reference
from webhook.core.sharing import remember

if TYPE_CHECKING:
    from webhook.core.mutator import Rewriter

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_NONE: frozenset[str] = frozenset()
_IMAGE_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ScopeBinding:
    """The scope of a namespace, and a warning when its labels had to be repaired."""

    scope: Scope
    warning: str | None = None


def scope_from_labels(labels: Mapping[str, str], default_account: str) -> ScopeBinding:
    """Account from the label or the default; a broken chain keeps its valid prefix
    (docs/contract.md#scopes-and-chaos-pods)."""
    values: list[str | None] = [labels.get(label) or None for label in SCOPE_LABELS]
    if values[0] is None:
        values[0] = default_account
    depth = next((i for i, value in enumerate(values) if value is None), len(values))
    parts = tuple(value for value in values[:depth] if value is not None)
    ignored = [SCOPE_LABELS[i] for i in range(depth + 1, len(values)) if values[i] is not None]
    warning = None
    if ignored:
        warning = (
            f"namespace label {SCOPE_LABELS[depth]} is missing, so {', '.join(ignored)} "
            f"is ignored: using scope {'/'.join(parts)}"
        )
    return ScopeBinding(Scope(parts), warning)


# The only namespace labels that decide anything: its scope and its opt-out.
_KEPT_LABELS = (*SCOPE_LABELS, INJECT_LABEL)
_KEPT_INDEX = {label: index for index, label in enumerate(_KEPT_LABELS)}
_INJECT_INDEX = _KEPT_INDEX[INJECT_LABEL]


class NamespaceLabels(Mapping[str, str]):
    """A namespace's scope and opt-out labels, the only ones admission reads, held compactly.

    One is kept per namespace for the life of the process: a dict of the same labels cost about
    0.5 KiB, 50 MiB at 100,000 namespaces; this record with its tuple of values about 0.1 KiB.
    Values are interned: an account's or project's name recurs in all its namespaces.
    """

    __slots__ = ("key", "resolved")

    def __init__(self, labels: Mapping[str, Any] | None = None) -> None:
        get = labels.get if labels else (lambda _label: None)
        # The values of the kept labels in a fixed order (None: absent): namespaces of one scope
        # have equal keys, and admission reads it directly rather than through get().
        self.key: tuple[str | None, ...] = tuple(
            sys.intern(value) if type(value) is str else None for value in map(get, _KEPT_LABELS)
        )
        # The Rewriter a configuration last resolved these labels to (CompiledConfig checks it is
        # its own). With 100,000 namespaces a memo keyed by the values was a dict of 100,000
        # entries, and hashing a key read every value from memory no cache held (bench/RESULTS.md).
        # Whoever replaces the configuration clears it, or it would keep the old one's Rewriters.
        self.resolved: Rewriter | None = None

    def get(self, key: str, default: Any = None) -> Any:  # hot path: no KeyError round trip
        index = _KEPT_INDEX.get(key)
        if index is None:
            return default
        value = self.key[index]
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return (label for label, value in zip(_KEPT_LABELS, self.key, strict=True) if value is not None)

    def __len__(self) -> int:
        return sum(value is not None for value in self.key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NamespaceLabels):
            return self.key == other.key
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NamespaceLabels({dict(self)!r})"


def opted_out(labels: Mapping[str, str] | None) -> bool:
    if isinstance(labels, NamespaceLabels):
        return labels.key[_INJECT_INDEX] == "false"
    return bool(labels) and labels.get(INJECT_LABEL) == "false"  # type: ignore[union-attr]


class PodClassifier:
    """Applies the chaos-pod rules of the defaults to a pod (a plain dict, as the API sends it)."""

    def __init__(self, defaults: DefaultsConfig) -> None:
        self._rules: tuple[ChaosPodRule, ...] = tuple(rule for rule in defaults.chaos_pods if rule.enabled)
        # A repository belongs to its component and to its helper component (ddcrFault and ddcrLib):
        # a rule may name either.
        self._components_of_last_segment = {
            entry.last_segment: frozenset(c for c in (entry.component, entry.helper_component) if c)
            for entry in defaults.catalog
        }
        self._helper_markers = tuple(defaults.helper_pod_name_contains)
        # Components per image text: the same few images recur in every chaos pod (bounded: the
        # texts come from pods).
        self._components_of_image: dict[str, frozenset[str]] = {}

    def matching_rule(self, pod: Mapping[str, Any]) -> str | None:
        """The name of the first rule that makes `pod` a chaos pod, or None."""
        metadata = pod.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        if not isinstance(labels, Mapping):
            labels = {}
        components: set[str] | None = None
        for rule in self._rules:
            if rule.labels_present and not all(key in labels for key in rule.labels_present):
                continue
            if rule.match_labels and not all(labels.get(k) == v for k, v in rule.match_labels.items()):
                continue
            if rule.components:
                if components is None:
                    components = self._components_in(pod)
                if components.isdisjoint(rule.components):
                    continue
            return rule.name
        return None

    def is_helper_pod(self, pod: Mapping[str, Any]) -> bool:
        metadata = pod.get("metadata")
        if not isinstance(metadata, Mapping):
            return False
        for key in ("name", "generateName"):
            value = metadata.get(key)
            if isinstance(value, str) and any(marker in value for marker in self._helper_markers):
                return True
        return False

    def _components_in(self, pod: Mapping[str, Any]) -> set[str]:
        found: set[str] = set()
        spec = pod.get("spec")
        if not isinstance(spec, Mapping):
            return found
        for list_name in CONTAINER_LISTS:
            containers = spec.get(list_name)
            if not isinstance(containers, list):
                continue
            for container in containers:
                image = container.get("image") if isinstance(container, Mapping) else None
                if isinstance(image, str):
                    found.update(self._image_components(image))
        return found

    def _image_components(self, image: str) -> frozenset[str]:
        components = self._components_of_image.get(image)
        if components is None:
            reference = parse_reference(image)
            components = (
                self._components_of_last_segment.get(reference.last_segment, _NONE)
                if isinstance(reference, ImageReference)
                else _NONE
            )
            remember(self._components_of_image, image, components, _IMAGE_CACHE_LIMIT)
        return components

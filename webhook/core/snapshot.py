"""The immutable bundle that admission reads: compiled configuration plus namespace labels.

The service builds a new Snapshot whenever a watched object changes and swaps one reference; an
admission request reads whichever snapshot is current, with no lock and no API call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from webhook.core.availability import unavailable_warning
from webhook.core.classifier import NamespaceLabels, PodClassifier, ScopeBinding, opted_out, scope_from_labels
from webhook.core.documents import quote
from webhook.core.models import SCOPE_LABELS, DefaultsConfig, Scope
from webhook.core.mutator import JsonPatch, Rewrite, Rewriter, RewriteTables, mutate_pod
from webhook.core.resolver import Effective, RegistryEntry, RegistryIndex
from webhook.core.sharing import remember

# Bounded like the per-scope target caches (mutator.py): with more scopes in use it is refilled.
_BINDING_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Mutation:
    """The outcome of admitting one pod."""

    chaos: bool
    reason: str
    scope: Scope | None = None
    patch: JsonPatch = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()


class CompiledConfig:
    """Defaults and ChaosImageRegistry entries, indexed; effective registries memoised per scope.

    Immutable in meaning: the memos only cache results derived from the frozen inputs, including the
    one it leaves in each namespace record it admits for (`NamespaceLabels.resolved`).
    """

    def __init__(self, defaults: DefaultsConfig, entries: Iterable[RegistryEntry] = ()) -> None:
        self.defaults = defaults
        self.index = RegistryIndex(entries)
        self.classifier = PodClassifier(defaults)
        self.catalog = MappingProxyType({entry.last_segment: entry for entry in defaults.catalog})
        self.env_vars = MappingProxyType({var.name: var.helper for var in defaults.image_env_vars})
        self._rewriters: dict[Scope, Rewriter] = {}
        self._rewrite_tables = RewriteTables(self.catalog)
        # The scope binding per combination of scope label values: namespaces of one scope share it,
        # and building it (warnings, a Scope) per request cost more than the lookup.
        self._bindings: dict[tuple[str | None, ...], ScopeBinding] = {}

    def rewriter(self, scope: Scope) -> Rewriter:
        rewriter = self._rewriters.get(scope)
        if rewriter is None:
            scope = self.index.canonical(scope)
            rewriter = self._rewriters[scope] = Rewriter(
                self.index.resolve(scope, self.defaults), self._rewrite_tables
            )
        return rewriter

    def _binding(self, labels: Mapping[str, str]) -> ScopeBinding:
        if isinstance(labels, NamespaceLabels):
            key = labels.key
        else:
            key = tuple([labels.get(label) for label in SCOPE_LABELS])
        binding = self._bindings.get(key)
        if binding is None:
            binding = scope_from_labels(labels, self.defaults.default_account)
            remember(self._bindings, key, binding, _BINDING_CACHE_LIMIT)
        return binding

    def _namespace_rewriter(self, labels: Mapping[str, str], warnings: list[str]) -> Rewriter:
        """The Rewriter of the scope `labels` bind to; a repaired binding's warning is added."""
        record = labels if isinstance(labels, NamespaceLabels) else None
        if record is not None:
            rewriter = record.resolved
            if rewriter is not None and rewriter.tables is self._rewrite_tables:
                return rewriter
        binding = self._binding(labels)
        rewriter = self.rewriter(binding.scope)
        if binding.warning:
            warnings.append(binding.warning)
        elif record is not None:
            record.resolved = rewriter
        return rewriter

    def effective(self, scope: Scope) -> Effective:
        return self.rewriter(scope).effective

    def mutate(
        self,
        pod: Mapping[str, Any],
        namespace_labels: Mapping[str, str] | None,
        old_pod: Mapping[str, Any] | None = None,
    ) -> Mutation:
        """Admit `pod`, created in a namespace with `namespace_labels` (None: namespace unknown)."""
        warnings: list[str] = []
        if namespace_labels is None:
            namespace_labels = {}
        if opted_out(namespace_labels):
            return Mutation(chaos=False, reason="namespace opted out")
        metadata = pod.get("metadata")
        pod_labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        if isinstance(pod_labels, Mapping) and opted_out(pod_labels):
            return Mutation(chaos=False, reason="pod opted out")
        rule = self.classifier.matching_rule(pod)
        if rule is None:
            return Mutation(chaos=False, reason="not a chaos pod")
        rewriter = self._namespace_rewriter(namespace_labels, warnings)
        scope = rewriter.effective.scope
        if not rewriter.effective.layers and not self.defaults.rewrite_unconfigured_scopes:
            return Mutation(
                chaos=True,
                reason=f"{rule}: no ChaosImageRegistry covers scope {scope}",
                scope=scope,
                warnings=tuple(warnings),
            )
        result = mutate_pod(
            pod,
            rewriter,
            helper_pod=self.classifier.is_helper_pod(pod),
            env_vars=self.env_vars,
            old_pod=old_pod,
        )
        return Mutation(
            chaos=True,
            reason=rule,
            scope=scope,
            patch=result.patch,
            warnings=(*warnings, *result.warnings),
            rewrites=result.rewrites,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What admission reads: the compiled configuration, every namespace's labels, and the images
    the last registry check found unavailable (image -> reason; empty when the check is off)."""

    config: CompiledConfig
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    unavailable_images: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def admit(
        self, pod: Mapping[str, Any], namespace: str, old_pod: Mapping[str, Any] | None = None
    ) -> Mutation:
        labels = self.namespaces.get(namespace)
        mutation = self.config.mutate(pod, labels, old_pod)
        notes: list[str] = []
        if labels is None and mutation.chaos:
            notes.append(f"namespace {quote(namespace)} is not known: treated as a namespace without labels")
        late: list[str] = []
        if self.unavailable_images and mutation.rewrites:
            # Admitted all the same: the check may be stale, and a pull may still succeed.
            late = [
                unavailable_warning(r.image, self.unavailable_images[r.image])
                for r in mutation.rewrites
                if r.image in self.unavailable_images
            ]
        if not notes and not late:
            return mutation
        return Mutation(
            chaos=True,
            reason=mutation.reason,
            scope=mutation.scope,
            patch=mutation.patch,
            warnings=tuple(dict.fromkeys((*notes, *mutation.warnings, *late))),
            rewrites=mutation.rewrites,
        )

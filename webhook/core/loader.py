"""Configuration documents from files, with one clear line per problem naming file and field.

A CONFIG is a YAML file or a folder of them; documents may be ChaosImageRegistry, Namespace and the
defaults ConfigMap, several per file. Used by the CLI; the service feeds watched objects through
the same validation (`parse_registry`, `parse_defaults_configmap`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from webhook.core.models import (
    API_VERSION,
    DEFAULTS_CONFIGMAP,
    DEFAULTS_KEY,
    KIND,
    ChaosImageRegistry,
    DefaultsConfig,
    format_validation_error,
    load_defaults,
)
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig, Snapshot

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class _KubernetesLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: an unquoted timestamp stays the string it is (kubectl would send it
    as written), instead of becoming a datetime that JSON output cannot hold."""


_KubernetesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ConfigError(Exception):
    """Bad input; `problems` holds one line each, already naming file and field."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass
class LoadedConfig:
    """Everything read from CONFIG paths."""

    registries: list[ChaosImageRegistry] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults_document: dict[str, Any] | None = None
    defaults: DefaultsConfig | None = None
    sources: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> "file: document N"

    def compile(self) -> CompiledConfig:
        defaults = self.defaults or load_defaults()
        return CompiledConfig(defaults, (RegistryEntry.from_resource(r) for r in self.registries))

    def snapshot(self) -> Snapshot:
        return Snapshot(self.compile(), self.namespaces)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


def read_text(path: str) -> str:
    """The file's text (`-` is stdin); raises ConfigError naming the file."""
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError([f"{path}: cannot read: {reason}"]) from None


def load_documents(path: str) -> list[Any]:
    """Every YAML (or JSON) document in one file; empty documents are skipped."""
    text = read_text(path)
    try:
        documents = yaml.load_all(text, Loader=_KubernetesLoader)
        return [document for document in documents if document is not None]
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: {_yaml_problem(error)}"]) from None


def config_files(paths: Iterable[str]) -> list[str]:
    files: list[str] = []
    problems: list[str] = []
    for path in paths:
        candidate = Path(path)
        if candidate.is_dir():
            found = sorted(
                str(p) for p in candidate.rglob("*") if p.is_file() and p.suffix in CONFIG_SUFFIXES
            )
            if not found:
                problems.append(f"{path}: folder holds no .yaml, .yml or .json file")
            files.extend(found)
        elif candidate.exists() or path == "-":
            files.append(path)
        else:
            problems.append(f"{path}: cannot read: no such file or folder")
    if problems:
        raise ConfigError(problems)
    return files


def parse_registry(document: Mapping[str, Any]) -> ChaosImageRegistry | list[str]:
    """Validate a ChaosImageRegistry object; problems name the field (`spec.scope.project: ...`)."""
    try:
        return ChaosImageRegistry.model_validate(document)
    except ValidationError as error:
        return format_validation_error(error)


def parse_defaults_configmap(document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The `config.yaml` document of the defaults ConfigMap, or the problems found in it."""
    data = document.get("data")
    if not isinstance(data, Mapping) or DEFAULTS_KEY not in data:
        return None, [f"data.{DEFAULTS_KEY}: missing"]
    try:
        override = yaml.safe_load(data[DEFAULTS_KEY]) or {}
    except yaml.YAMLError as error:
        return None, [f"data.{DEFAULTS_KEY}: {_yaml_problem(error)}"]
    if not isinstance(override, dict):
        return None, [f"data.{DEFAULTS_KEY}: must be a YAML mapping"]
    try:
        load_defaults(override)
    except ValidationError as error:
        return None, format_validation_error(error, prefix=f"data.{DEFAULTS_KEY}")
    return override, []


def _name_of(document: Mapping[str, Any]) -> str | None:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) and name else None


def load_config(paths: Iterable[str]) -> LoadedConfig:
    """Read and validate every document under `paths`; raises ConfigError with every problem."""
    loaded = LoadedConfig()
    problems: list[str] = []
    for path in config_files(paths):
        try:
            documents = load_documents(path)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        for number, document in enumerate(documents, start=1):
            problems.extend(_load_document(loaded, path, number, document))
    if loaded.defaults_document is not None:
        loaded.defaults = load_defaults(loaded.defaults_document)
    defaults = loaded.defaults or load_defaults()
    for registry in loaded.registries:
        for component in registry.spec.custom_images.images:
            if component not in defaults.component_names:
                known = ", ".join(sorted(defaults.component_names))
                problems.append(
                    f"{loaded.sources[f'{KIND}/{registry.name}']} ({KIND} {registry.name}): "
                    f"spec.customImages.images.{component}: unknown component (known: {known})"
                )
    if problems:
        raise ConfigError(problems)
    return loaded


def _load_document(loaded: LoadedConfig, path: str, number: int, document: Any) -> list[str]:
    where = f"{path}: document {number}"
    if not isinstance(document, Mapping):
        return [f"{where}: not a Kubernetes object (expected a mapping with apiVersion and kind)"]
    kind, name = document.get("kind"), _name_of(document)
    if not isinstance(kind, str):
        return [f"{where}: kind: missing"]
    if name is None:
        return [f"{where} ({kind}): metadata.name: missing"]
    where = f"{where} ({kind} {name})"
    key = f"{kind}/{name}"
    if key in loaded.sources:
        return [f"{where}: duplicate {kind} {name!r} (first in {loaded.sources[key]})"]
    if kind == KIND:
        if document.get("apiVersion") != API_VERSION:
            return [f"{where}: apiVersion: must be {API_VERSION}"]
        parsed = parse_registry(document)
        if isinstance(parsed, list):
            return [f"{where}: {problem}" for problem in parsed]
        loaded.registries.append(parsed)
    elif kind == "Namespace":
        metadata = document["metadata"]
        labels = metadata.get("labels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            return [f"{where}: metadata.labels: must map strings to strings"]
        loaded.namespaces[name] = dict(labels)
    elif kind == "ConfigMap":
        if name != DEFAULTS_CONFIGMAP:
            return [f"{where}: only the ConfigMap {DEFAULTS_CONFIGMAP!r} is read; remove this one"]
        override, configmap_problems = parse_defaults_configmap(document)
        if configmap_problems:
            return [f"{where}: {problem}" for problem in configmap_problems]
        loaded.defaults_document = override
    else:
        return [
            f"{where}: unsupported kind {kind!r} "
            f"(expected {KIND}, Namespace or ConfigMap {DEFAULTS_CONFIGMAP})"
        ]
    loaded.sources[key] = f"{path}: document {number}"
    return []

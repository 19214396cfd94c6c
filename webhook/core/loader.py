"""Configuration documents from files, with one clear line per problem naming file and field.

A CONFIG is a YAML file or a folder of them; documents may be ChaosImageRegistry, Namespace and the
defaults ConfigMap, several per file. Used by the CLI; the service feeds watched objects through
the same validation (`registry_entry`, `parse_defaults_configmap`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from webhook.core.documents import MAX_INPUT_BYTES, DocumentError, parse_documents, quote, shown
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
from webhook.core.registry_fastpath import direct_entry
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig, Snapshot

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_MIB = 1024 * 1024


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


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def read_text(path: str) -> str:
    """The file's text (`-` is stdin), at most MAX_INPUT_BYTES; raises ConfigError naming the file."""
    limit = MAX_INPUT_BYTES
    try:
        if path == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise ConfigError(["-: cannot read: standard input is closed"])
            buffer = getattr(sys.stdin, "buffer", None)
            data: bytes | str = buffer.read(limit + 1) if buffer is not None else sys.stdin.read(limit + 1)
        else:
            with open(path, "rb") as stream:
                data = stream.read(limit + 1)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {_reason(error)}"]) from None
    except ValueError as error:  # a closed stream
        raise ConfigError([f"{path}: cannot read: {error}"]) from None
    if len(data) > limit:
        raise ConfigError([f"{path}: larger than the {limit // _MIB} MiB limit on input files"])
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text (byte {error.start})"]) from None


def load_documents(path: str) -> list[Any]:
    """Every YAML (or JSON) document in one file as plain JSON values; empty documents are skipped."""
    text = read_text(path)
    try:
        return parse_documents(text)
    except DocumentError as error:
        raise ConfigError([f"{path}: {error}"]) from None


def _is_kubelet_internal(name: str) -> bool:
    # A mounted ConfigMap holds each key twice: `key -> ..data/key`, `..data -> ..<timestamp>` and
    # the real file in `..<timestamp>/`. Keys cannot start with "..", so such entries are the
    # kubelet's own and are read through the top-level links only.
    return name.startswith("..")


def _walk_folder(folder: str, files: list[str], problems: list[str]) -> None:
    """Config files under `folder`, following symlinks; every entry that cannot be read is reported."""
    visited: set[str] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in visited:
            continue  # a folder reached twice through symlinks
        visited.add(real)
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as error:
            problems.append(f"{current}: cannot read folder: {_reason(error)}")
            continue
        for entry in entries:
            if _is_kubelet_internal(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError:
                problems.append(f"{entry.path}: cannot read: {_link_problem(entry.path)}")
                continue
            if is_dir:
                pending.append(entry.path)
                continue
            if not entry.name.endswith(CONFIG_SUFFIXES):
                continue
            if not is_file:
                problems.append(f"{entry.path}: cannot read: {_link_problem(entry.path)}")
                continue
            files.append(entry.path)


def _link_problem(path: str) -> str:
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
        if error.errno == errno.ENOENT and os.path.islink(path):
            return f"dangling symlink (to {os.readlink(path)})"
        return _reason(error)
    return "not a regular file"


def config_files(paths: Iterable[str]) -> list[str]:
    """The files CONFIG paths name, each once (a file reached twice through symlinks is read once)."""
    files: list[str] = []
    problems: list[str] = []
    for path in paths:
        if path == "-":
            files.append(path)
            continue
        try:
            status = os.stat(path)
        except OSError as error:
            if error.errno == errno.ENOENT and not os.path.islink(path):
                problems.append(f"{path}: cannot read: no such file or folder")
            else:
                problems.append(f"{path}: cannot read: {_link_problem(path)}")
            continue
        if stat.S_ISDIR(status.st_mode):
            found: list[str] = []
            folder_problems: list[str] = []
            _walk_folder(path, found, folder_problems)
            problems.extend(folder_problems)
            if not found and not folder_problems:
                problems.append(f"{path}: folder holds no .yaml, .yml or .json file")
            files.extend(sorted(found))
        else:
            files.append(path)
    if problems:
        raise ConfigError(problems)
    unique: dict[str, str] = {}
    for file in files:
        unique.setdefault(file if file == "-" else os.path.realpath(file), file)
    return list(unique.values())


def parse_registry(document: Mapping[str, Any]) -> ChaosImageRegistry | list[str]:
    """Validate a ChaosImageRegistry object; problems name the field (`spec.scope.project: ...`)."""
    try:
        return ChaosImageRegistry.model_validate(document)
    except ValidationError as error:
        return format_validation_error(error)


def registry_entry(document: Mapping[str, Any]) -> RegistryEntry | list[str]:
    """The resolver's entry of a ChaosImageRegistry object, or its problems as `parse_registry`
    words them. The usual shape is read directly (registry_fastpath); the rest by the models."""
    entry = direct_entry(document)
    if entry is not None:
        return entry
    parsed = parse_registry(document)
    return parsed if isinstance(parsed, list) else RegistryEntry.from_resource(parsed)


def parse_defaults_configmap(document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The `config.yaml` document of the defaults ConfigMap, or the problems found in it."""
    data = document.get("data")
    if not isinstance(data, Mapping) or DEFAULTS_KEY not in data:
        return None, [f"data.{DEFAULTS_KEY}: missing"]
    text = data[DEFAULTS_KEY]
    if not isinstance(text, str):
        return None, [f"data.{DEFAULTS_KEY}: must be a string (the YAML text), not {type(text).__name__}"]
    if len(text) > MAX_INPUT_BYTES:
        return None, [f"data.{DEFAULTS_KEY}: larger than the {MAX_INPUT_BYTES // _MIB} MiB limit"]
    try:
        documents = parse_documents(text)
    except DocumentError as error:
        return None, [f"data.{DEFAULTS_KEY}: {error}"]
    if len(documents) > 1:
        return None, [f"data.{DEFAULTS_KEY}: must be one YAML document, found {len(documents)}"]
    override = documents[0] if documents else {}
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


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ANNOTATIONS_MAX_BYTES = 256 * 1024
_CHARSET = "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"


def _name_problem(kind: str, name: str) -> str | None:
    """The apiserver's rules for object names: a DNS label for a Namespace, else a DNS subdomain."""
    if kind == "Namespace":
        if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            return (
                "metadata.name: not a valid Namespace name: at most 63 lowercase "
                "alphanumeric characters or '-', starting and ending with an alphanumeric character"
            )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return (
            "metadata.name: not a valid name: at most 253 lowercase alphanumeric "
            "characters, '-' or '.', each dot-separated part starting and ending with an alphanumeric "
            "character"
        )
    return None


def _key_problem(field: str, key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"{field}: key {quote(key)}: the prefix must be a lowercase DNS subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return f"{field}: key {quote(key)}: the name part must be 1-63 {_CHARSET}"
    return None


def _metadata_problems(kind: str, metadata: Mapping[str, Any]) -> list[str]:
    """Names, labels and annotations checked as the apiserver checks them (kubectl would be refused)."""
    problems = []
    if (problem := _name_problem(kind, metadata["name"])) is not None:
        problems.append(problem)
    labels = metadata.get("labels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            problems.append("metadata.labels: must map strings to strings")
            labels = {}
        for key, value in labels.items():
            if not isinstance(value, str):
                problems.append(f"metadata.labels.{shown(key)}: must be a string, not {type(value).__name__}")
            elif len(value) > 63 or (value and not _QUALIFIED_NAME.fullmatch(value)):
                problems.append(
                    f"metadata.labels.{shown(key)}: {quote(value)} is not a valid label value: "
                    f"at most 63 {_CHARSET}"
                )
            if (problem := _key_problem("metadata.labels", key)) is not None:
                problems.append(problem)
    annotations = metadata.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, Mapping):
            problems.append("metadata.annotations: must map strings to strings")
            annotations = {}
        size = 0
        for key, value in annotations.items():
            if not isinstance(value, str):
                problems.append(
                    f"metadata.annotations.{shown(key)}: must be a string, not {type(value).__name__}"
                )
                continue
            size += len(key.encode()) + len(value.encode())
            if (problem := _key_problem("metadata.annotations", key)) is not None:
                problems.append(problem)
        if size > _ANNOTATIONS_MAX_BYTES:
            problems.append(f"metadata.annotations: {size} bytes in all, more than the apiserver's 256 KiB")
    return problems


def _load_document(loaded: LoadedConfig, path: str, number: int, document: Any) -> list[str]:
    where = f"{path}: document {number}"
    if not isinstance(document, Mapping):
        return [f"{where}: not a Kubernetes object (expected a mapping with apiVersion and kind)"]
    kind, name = document.get("kind"), _name_of(document)
    if not isinstance(kind, str):
        return [f"{where}: kind: missing"]
    if name is None:
        return [f"{where} ({kind}): metadata.name: missing"]
    where = f"{where} ({shown(kind)} {shown(name)})"
    if metadata_problems := _metadata_problems(kind, document["metadata"]):
        return [f"{where}: {problem}" for problem in metadata_problems]
    key = f"{kind}/{name}"
    if key in loaded.sources:
        return [f"{where}: duplicate {kind} {quote(name)} (first in {loaded.sources[key]})"]
    if kind == KIND:
        if document.get("apiVersion") != API_VERSION:
            return [f"{where}: apiVersion: must be {API_VERSION}"]
        parsed = parse_registry(document)
        if isinstance(parsed, list):
            return [f"{where}: {problem}" for problem in parsed]
        loaded.registries.append(parsed)
    elif kind == "Namespace":
        metadata = document["metadata"]
        loaded.namespaces[name] = dict(metadata.get("labels") or {})
    elif kind == "ConfigMap":
        if name != DEFAULTS_CONFIGMAP:
            return [f"{where}: only the ConfigMap {DEFAULTS_CONFIGMAP!r} is read; remove this one"]
        override, configmap_problems = parse_defaults_configmap(document)
        if configmap_problems:
            return [f"{where}: {problem}" for problem in configmap_problems]
        loaded.defaults_document = override
    else:
        return [
            f"{where}: unsupported kind {quote(kind)} "
            f"(expected {KIND}, Namespace or ConfigMap {DEFAULTS_CONFIGMAP})"
        ]
    loaded.sources[key] = f"{path}: document {number}"
    return []

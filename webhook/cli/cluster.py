"""`--cluster`: the live configuration (registries, namespace labels, defaults ConfigMap, pull
secrets, pods) read from the current kubeconfig, in the shapes the offline commands read from files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import config
from kubernetes.client import ApiException

from webhook.core.loader import ConfigError, LoadedConfig, parse_defaults_configmap, parse_registry
from webhook.core.models import API_VERSION, DEFAULTS_CONFIGMAP, KIND, PLURAL, load_defaults
from webhook.registrycheck.check import SecretCredentials, SecretRef, secret_credentials
from webhook.service.kube.resources import Resources, core_path, group_path

REQUEST_SECONDS = 30.0


class Cluster:
    """Reads by path through kubernetes' ApiClient (service/kube/resources.py says why not its
    generated API classes); every failure becomes one ConfigError line."""

    def __init__(self, kubeconfig: str | None, context: str | None = None) -> None:
        try:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except Exception as error:  # the client raises several unrelated types for a bad kubeconfig
            raise ConfigError([f"kubeconfig: {_line(error)}"]) from None
        self._resources = Resources(api, timeout=REQUEST_SECONDS)

    def _get(self, what: str, path: str) -> Any:
        """The object or list at `path` as its JSON decodes; None where there is none (404)."""
        try:
            return self._resources.get(path, "object")
        except ApiException as error:
            if error.status == 404:
                return None
            raise ConfigError([f"cluster: cannot read {what}: HTTP {error.status} {error.reason}"]) from None
        except Exception as error:  # connection refused, TLS, timeouts
            raise ConfigError([f"cluster: cannot read {what}: {_line(error)}"]) from None

    def load_config(self, release_namespace: str, warnings: list[str]) -> LoadedConfig:
        """What the webhook's watches would see; invalid resources are skipped with a warning, as
        the webhook ignores them."""
        loaded = LoadedConfig()
        listed = self._get(f"{KIND} resources", group_path(API_VERSION, PLURAL))
        if listed is None:
            raise ConfigError([f"cluster: the {KIND} CRD is not installed"])
        for item in listed.get("items", []):
            name = (item.get("metadata") or {}).get("name", "?")
            parsed = parse_registry(item)
            if isinstance(parsed, list):
                warnings.append(f"{KIND} {name} is invalid and ignored: {'; '.join(parsed)}")
                continue
            loaded.registries.append(parsed)
            loaded.sources[f"{KIND}/{name}"] = f"cluster {KIND}/{name}"
        namespaces = self._get("namespaces", core_path("namespaces"))
        for namespace in namespaces.get("items", []) if namespaces is not None else []:
            metadata = namespace.get("metadata") or {}
            name = metadata.get("name")
            if isinstance(name, str):
                loaded.namespaces[name] = dict(metadata.get("labels") or {})
                loaded.sources[f"Namespace/{name}"] = f"cluster Namespace/{name}"
        configmap = self._get(
            f"ConfigMap {release_namespace}/{DEFAULTS_CONFIGMAP}",
            core_path("configmaps", release_namespace, DEFAULTS_CONFIGMAP),
        )
        if configmap is not None:
            override, problems = parse_defaults_configmap({"data": configmap.get("data") or {}})
            if problems:
                warnings.append(
                    f"ConfigMap {release_namespace}/{DEFAULTS_CONFIGMAP} is invalid, built-in defaults used: "
                    + "; ".join(problems)
                )
            else:
                loaded.defaults_document = override
                loaded.defaults = load_defaults(override)
        return loaded

    def secrets(self, refs: Iterable[SecretRef]) -> dict[SecretRef, SecretCredentials]:
        found: dict[SecretRef, SecretCredentials] = {}
        for ref in sorted(set(refs)):
            secret = self._get(f"Secret {ref}", core_path("secrets", ref.namespace, ref.name))
            if secret is None:
                found[ref] = f"Secret {ref} not found"
                continue
            found[ref] = secret_credentials(ref, secret.get("data") or {})
        return found

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod: dict[str, Any] | None = self._get(f"Pod {namespace}/{name}", core_path("pods", namespace, name))
        if pod is None:
            raise ConfigError([f"--pod: Pod {namespace}/{name} not found"])
        return pod


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]

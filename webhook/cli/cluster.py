"""`--cluster`: the live configuration (registries, namespace labels, defaults ConfigMap, pull
secrets, pods) read from the current kubeconfig, in the shapes the offline commands read from files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook.core.loader import ConfigError, LoadedConfig, parse_defaults_configmap, parse_registry
from webhook.core.models import API_GROUP, DEFAULTS_CONFIGMAP, KIND, PLURAL, load_defaults
from webhook.registrycheck.check import SecretCredentials, SecretRef, secret_credentials


class Cluster:
    """Reads through the official client; every failure becomes one ConfigError line."""

    def __init__(self, kubeconfig: str | None, context: str | None = None) -> None:
        from kubernetes import client, config

        try:
            self._api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except Exception as error:  # the client raises several unrelated types for a bad kubeconfig
            raise ConfigError([f"kubeconfig: {_line(error)}"]) from None
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client import ApiException

        try:
            return function(*args, _request_timeout=30, **kwargs)
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
        listed = self._call(
            "ChaosImageRegistry resources",
            self._custom.list_cluster_custom_object,
            API_GROUP,
            "v1alpha1",
            PLURAL,
        )
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
        namespaces = self._call("namespaces", self._core.list_namespace)
        for namespace in namespaces.items if namespaces is not None else []:
            loaded.namespaces[namespace.metadata.name] = dict(namespace.metadata.labels or {})
            loaded.sources[f"Namespace/{namespace.metadata.name}"] = (
                f"cluster Namespace/{namespace.metadata.name}"
            )
        configmap = self._call(
            f"ConfigMap {release_namespace}/{DEFAULTS_CONFIGMAP}",
            self._core.read_namespaced_config_map,
            DEFAULTS_CONFIGMAP,
            release_namespace,
        )
        if configmap is not None:
            override, problems = parse_defaults_configmap({"data": configmap.data or {}})
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
            secret = self._call(f"Secret {ref}", self._core.read_namespaced_secret, ref.name, ref.namespace)
            if secret is None:
                found[ref] = f"Secret {ref} not found"
                continue
            found[ref] = secret_credentials(ref, secret.data or {})
        return found

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self._call(f"Pod {namespace}/{name}", self._core.read_namespaced_pod, name, namespace)
        if pod is None:
            raise ConfigError([f"--pod: Pod {namespace}/{name} not found"])
        result: dict[str, Any] = self._api.sanitize_for_serialization(pod)
        return result


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]

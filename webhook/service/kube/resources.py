"""The service's reads and writes of API objects, through kubernetes' ApiClient but not its
generated API classes.

Loading `kubernetes.client.CoreV1Api` took about 1 s of CPU and 21 MiB of memory (kubernetes 37:
every one of its methods is wrapped in a pydantic validator when the module loads), for the
handful of Secret and ConfigMap requests the service makes: a seventh of its memory at 10,000
scopes and a tenth of its start-up at 100,000. Here each request names its path instead of a
generated method, and goes through the same ApiClient: its TLS, credentials and connection pool,
the same model objects in answer (V1Secret, V1Lease, ...; loaded one by one on first use) and the
same ApiException on failure, so callers handle errors as before.

Calls block: the service makes them from worker threads (see `client.py`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def core_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The path of a core (v1) collection or object: `/api/v1/namespaces/NS/secrets/NAME`."""
    return _path("/api/v1", plural, namespace, name)


def group_path(group_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The path of a collection or object of an API group: `/apis/GROUP/VERSION/...`."""
    return _path(f"/apis/{group_version}", plural, namespace, name)


def _path(prefix: str, plural: str, namespace: str | None, name: str | None) -> str:
    path = prefix
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return path


class Resources:
    """Requests to one apiserver; `model` names the kubernetes model class of the answer ("V1Secret";
    "object" for a plain dict). `timeout` (seconds, or (connect, read) seconds; None: none) applies
    to every request."""

    def __init__(self, api: client.ApiClient, timeout: float | tuple[float, float] | None = None) -> None:
        self.api = api
        self.timeout = timeout

    def get(self, path: str, model: str) -> Any:
        return self.request("GET", path, model)

    def create(self, path: str, body: Any, model: str, field_manager: str | None = None) -> Any:
        """POST `body` to the collection at `path`."""
        return self.request("POST", path, model, body, query=_manager(field_manager))

    def replace(self, path: str, body: Any, model: str, field_manager: str | None = None) -> Any:
        return self.request("PUT", path, model, body, query=_manager(field_manager))

    def patch(
        self, path: str, body: Any, model: str, content_type: str, field_manager: str | None = None
    ) -> Any:
        query = _manager(field_manager)
        return self.request("PATCH", path, model, body, content_type=content_type, query=query)

    def delete(self, path: str, body: Any = None) -> None:
        self.request("DELETE", path, None, body)

    def request(
        self,
        method: str,
        path: str,
        model: str | None,
        body: Any = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """One request; the answer decoded as `model` (None: not decoded). Raises ApiException for
        any status but 2xx, as the generated methods do."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method, url, headers, body, _ = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        if query:
            url += "?" + urlencode(query)
        response = self.api.call_api(method, url, headers, body, _request_timeout=self.timeout)
        response.read()  # type: ignore[no-untyped-call]
        answer = self.api.response_deserialize(response, {"2XX": model})
        return answer.data


def _manager(field_manager: str | None) -> dict[str, str] | None:
    return {"fieldManager": field_manager} if field_manager else None

"""Talking to the local kube-apiserver for the benchmark: bulk creation, dry-run pods, timing.

An aiohttp client logged in with the control plane's admin client certificate: bulk creation
runs `concurrency` POSTs at a time (the apiserver and etcd do the work, the client only waits).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from controlplane import ControlPlane

NAMESPACES = "/api/v1/namespaces"
REGISTRIES = "/apis/chaosregistry.io/v1alpha1/chaosimageregistries"


class ApiError(RuntimeError):
    """The apiserver refused a request; the message carries its status and reason."""


class Api:
    """A small async client of the control plane (use as `async with Api(cp) as api`)."""

    def __init__(self, control_plane: ControlPlane, connections: int = 32) -> None:
        self.base = control_plane.server
        context = ssl.create_default_context(cafile=str(control_plane.ca_file))
        context.load_cert_chain(str(control_plane.client_cert_file), str(control_plane.client_key_file))
        self._context = context
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        connector = aiohttp.TCPConnector(ssl=self._context, limit=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda value: orjson.dumps(value).decode(),
            headers={"Accept": "application/json"},
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with Api(...)`"
        return self._session

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.base + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None

    async def create(self, path: str, body: Any, exist_ok: bool = True) -> Any:
        status, answer = await self.request("POST", path, body)
        if status == 409 and exist_ok:
            return answer
        if status >= 300:
            raise ApiError(f"POST {path}: {status} {(answer or {}).get('message')}")
        return answer

    async def create_many(self, path: str, bodies: Sequence[Any], concurrency: int = 32) -> float:
        """Create every body at `path`, `concurrency` at a time; returns the seconds it took."""
        began = time.perf_counter()
        queue = iter(bodies)

        async def worker() -> None:
            for body in queue:
                await self.create(path, body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began

    async def dry_run_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        path = f"{NAMESPACES}/{namespace}/pods?dryRun=All"
        body = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
        status, answer = await self.request("POST", path, body)
        if status >= 300:
            raise ApiError(f"dry-run pod in {namespace}: {status} {(answer or {}).get('message')}")
        result: dict[str, Any] = answer
        return result

    async def webhook_ca_bundle(self, name: str) -> bytes | None:
        path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        status, answer = await self.request("GET", path)
        if status != 200:
            return None
        encoded = answer["webhooks"][0]["clientConfig"].get("caBundle")
        return base64.b64decode(encoded) if encoded else None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def added_latency(
    api: Api,
    pod: dict[str, Any],
    selected: str,
    unselected: str,
    *,
    pairs: int,
    warmup: int,
    expect: str,
) -> dict[str, float]:
    """Dry-run create `pod` alternately in a namespace the webhook selects and in one it does not
    (order flipped every pair), one request at a time. The webhook's cost through the apiserver
    is the difference of the two latency distributions' medians and 99th percentiles.

    `expect`: a string the selected namespace's answer must contain (proof the webhook ran).
    """
    with_hook: list[float] = []
    without: list[float] = []
    for i in range(warmup + pairs):
        order = [(selected, with_hook), (unselected, without)]
        if i % 2:
            order.reverse()
        for namespace, samples in order:
            began = time.perf_counter()
            stored = await api.dry_run_pod(namespace, pod)
            elapsed = (time.perf_counter() - began) * 1000
            if i >= warmup:
                samples.append(elapsed)
            mutated = expect in orjson.dumps(stored["spec"]).decode()
            if mutated != (namespace == selected):
                raise ApiError(
                    f"dry-run in {namespace}: the webhook {'did not run' if not mutated else 'ran'} "
                    f"(expected {'a' if namespace == selected else 'no'} rewrite)"
                )
    return {
        "with_p50_ms": percentile(with_hook, 0.5),
        "with_p99_ms": percentile(with_hook, 0.99),
        "without_p50_ms": percentile(without, 0.5),
        "without_p99_ms": percentile(without, 0.99),
        "apiserver_added_ms_p50": percentile(with_hook, 0.5) - percentile(without, 0.5),
        "apiserver_added_ms_p99": percentile(with_hook, 0.99) - percentile(without, 0.99),
        "pairs": float(pairs),
    }

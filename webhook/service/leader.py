"""Leader election with a coordination.k8s.io Lease: only the holder runs the write side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubernetes import client


class LeaseElector:
    """Holds the Lease `namespace/name` as `identity` and runs `work` only while holding it."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, duration: float = 15.0
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.is_leader = False

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        # Placeholder until the write side lands: never leads.
        await asyncio.Event().wait()

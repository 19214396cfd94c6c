"""The write side (run by the Lease holder only): ChaosImageRegistry status, pull-secret copies, Events."""

from __future__ import annotations

import asyncio

from kubernetes import client

from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState


class Writer:
    def __init__(self, state: ConfigState, api: client.ApiClient, options: ServeOptions) -> None:
        self.state = state
        self.api = api
        self.options = options

    async def run(self) -> None:
        # Placeholder until the write side lands.
        await asyncio.Event().wait()

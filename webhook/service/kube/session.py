"""An aiohttp session with a kubernetes client Configuration's credentials, for the lean watches.

The client library's calls block a thread each; the watches stream on the event loop instead.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp
from kubernetes import client

from webhook.service.kube.client import authorization

LIST_TIMEOUT_SECONDS = 60  # per page
CONNECT_SECONDS = 10


class ApiSession:
    """An aiohttp session with the credentials of a kubernetes client Configuration.

    The bearer token is read again before each request (in a pod it is a rotated file; the client
    library's refresh hook re-reads it)."""

    def __init__(self, configuration: client.Configuration) -> None:
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._ssl = _ssl_context(configuration)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=LIST_TIMEOUT_SECONDS, sock_connect=CONNECT_SECONDS),
            )
        return self._session

    def headers(self, accept: str) -> dict[str, str]:
        configuration = self.configuration
        headers = {"Accept": accept}
        token = authorization(configuration)
        if token:
            headers["Authorization"] = token
        elif configuration.username and configuration.password:
            pair = f"{configuration.username}:{configuration.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def get(self, url: str, accept: str, timeout: aiohttp.ClientTimeout) -> Any:
        """A GET with the credentials, through the kubeconfig's proxy and TLS server name if any."""
        configuration = self.configuration
        return self.session.get(
            url,
            headers=self.headers(accept),
            timeout=timeout,
            proxy=getattr(configuration, "proxy", None) or None,
            server_hostname=getattr(configuration, "tls_server_name", None) or None,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    if configuration.host.startswith("http://"):
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

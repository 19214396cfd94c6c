"""A closed-loop HTTPS load generator: `concurrency` keep-alive connections to 127.0.0.1.

Each connection sends one request, waits for the whole response, records the latency and sends the
next, until the time or the request budget runs out. It speaks just enough HTTP/1.1 for an
aiohttp server (responses with Content-Length) on a bare `asyncio.Protocol`: no StreamReader, no
aiohttp client, so the client costs as little CPU per request as Python allows (it shares the
machine with the server under test). Loopback only: the host is checked.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOOPBACK = "127.0.0.1"

RequestFactory = Callable[[], tuple[bytes, bytes]]
"""Returns (the request body, a tag) for the next request; the tag groups responses for checks."""


class HttpError(RuntimeError):
    """The server answered something this client cannot read, or closed the connection."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's SSL transport
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._header_end = -1
        self._length = -1
        self._status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection closed by the server: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._header_end < 0:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._header_end = end + 4
            head = bytes(self._buffer[:end]).lower()
            try:
                self._status = int(head[9:12])
                start = head.index(b"\r\ncontent-length:") + 17
                stop = head.find(b"\r\n", start)
                self._length = int(head[start : stop if stop >= 0 else None])
            except ValueError:
                self._fail(HttpError(f"unreadable response head: {head[:200]!r}"))
                return
        if len(self._buffer) >= self._header_end + self._length:
            stop = self._header_end + self._length
            body = bytes(self._buffer[self._header_end : stop])
            del self._buffer[:stop]
            self._header_end = self._length = -1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result((self._status, body))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


@dataclass
class LoadResult:
    """What one load run measured: latencies in nanoseconds, wall time, failures."""

    concurrency: int
    latencies_ns: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # tag -> [responses, responses carrying a JSON patch, responses refused]; filled when checking.
    checked: dict[bytes, list[int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies_ns)
        if not ordered:
            return float("nan")
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[rank] / 1e6

    def max_ms(self) -> float:
        return max(self.latencies_ns) / 1e6 if self.latencies_ns else float("nan")


def client_ssl_context(ca_pem: bytes | None) -> ssl.SSLContext:
    """Verify the server against `ca_pem` (the webhook configuration's caBundle) when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem.decode())
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _head(path: str, port: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
        "Accept: application/json\r\nContent-Length: "
    ).encode()


async def run_load(
    port: int,
    path: str,
    next_request: RequestFactory,
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    ssl_context: ssl.SSLContext,
    host: str = LOOPBACK,
    check: Callable[[bytes, int, bytes], tuple[bool, bool]] | None = None,
) -> LoadResult:
    """Run `concurrency` closed loops for `duration` seconds or `max_requests` requests in all.

    `check(tag, status, body)` (warm-up runs) returns (patched, refused) per response; the
    counts land in `LoadResult.checked`. Latency is from the first byte written to the last
    byte of the response read.
    """
    if host != LOOPBACK:
        raise ValueError(f"the load generator only targets {LOOPBACK}, not {host}")
    loop = asyncio.get_running_loop()
    connections: list[_Connection] = []
    for _ in range(concurrency):
        _, protocol = await loop.create_connection(
            _Connection, host, port, ssl=ssl_context, server_hostname=host
        )
        connections.append(protocol)
    head = _head(path, port)
    result = LoadResult(concurrency)
    latencies = result.latencies_ns
    statuses = result.statuses
    budget = [max_requests]
    clock = time.perf_counter_ns
    deadline = clock() + int(duration * 1e9)

    async def worker(connection: _Connection) -> None:
        while budget[0] > 0:
            budget[0] -= 1
            body, tag = next_request()
            data = b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))
            started = clock()
            try:
                status, answer = await connection.request(data)
            except HttpError:
                result.errors += 1
                return
            finished = clock()
            latencies.append(finished - started)
            statuses[status] = statuses.get(status, 0) + 1
            if check is not None:
                patched, refused = check(tag, status, answer)
                counts = result.checked.setdefault(tag, [0, 0, 0])
                counts[0] += 1
                counts[1] += patched
                counts[2] += refused
            if finished >= deadline:
                return

    began = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    result.elapsed = time.perf_counter() - began
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    await asyncio.sleep(0)
    return result

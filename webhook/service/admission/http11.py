"""A lean HTTP/1.1 server for the one admission endpoint: an `asyncio.Protocol` per connection.

Why not aiohttp here: under load, aiohttp's request and response objects, router and stream writer
took about two fifths of the server's CPU per admission (py-spy, bench/RESULTS.md), more than the
admission decision itself. The apiserver speaks a narrow dialect to a webhook: POST with a
Content-Length body, JSON in and out, keep-alive. This serves exactly that and refuses the rest with
a one-line reason:

- the request head is at most MAX_HEAD_BYTES (431), the body at most `max_body` bytes (413);
- only POST (405); the body goes to `handler` for `path` (query string ignored) and to
  `other_paths` for any other path (404 when there is none); Transfer-Encoding is refused (501: the
  apiserver always sends Content-Length) and so is a missing or malformed Content-Length (411, 400);
- `Expect: 100-continue` is answered; HTTP/1.0 and `Connection: close` close after the answer;
- a request must arrive whole within `request_timeout` s of its first byte, an idle keep-alive
  connection is closed after `idle_timeout` s (slow or silent clients cannot hold connections);
- one request at a time per connection: pipelined requests wait in the buffer, in order.

Errors close the connection after the answer, as nothing after a malformed head can be trusted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from email.utils import formatdate
from typing import Any

import orjson

logger = logging.getLogger("webhook.http")

MAX_HEAD_BYTES = 16 * 1024
_REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}

Handler = Callable[[bytes], Coroutine[Any, Any, tuple[int, bytes]]]
"""An admission body in, (HTTP status, JSON body) out; never raises."""


class _Date:
    """The Date header value, formatted once a second, not once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode("ascii")
        return self._value


_date = _Date()


_INTERNAL_ERROR = (500, b'{"error":"internal error in the webhook"}')


@types.coroutine
def _resume(coroutine: Any, waiting_on: Any) -> Generator[Any, Any, tuple[int, bytes]]:
    """Finish a coroutine that was stepped by hand and is waiting on `waiting_on`: what `await`
    would do had it run in a task from the start (pass what it yields up, what the task sends down)."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as error:  # a cancellation or an error thrown in by the task
            try:
                waiting_on = coroutine.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            continue
        try:
            waiting_on = coroutine.send(sent)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdmissionProtocol(asyncio.Protocol):
    """One connection: parse a request, hand its body to `handler`, write the answer, repeat."""

    def __init__(
        self,
        handler: Handler,
        path: str,
        *,
        other_paths: Handler | None = None,
        max_body: int,
        request_timeout: float = 30.0,
        idle_timeout: float = 90.0,
    ) -> None:
        self._handler = handler
        self._other_paths = other_paths
        self._path = path.encode("ascii")
        self._max_body = max_body
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._transport: Any = None  # asyncio's or uvloop's (SSL) transport
        self._buffer = bytearray()
        self._busy = False  # a request is being answered
        self._closing = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._arm(self._idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._buffer and not self._busy:
            self._deadline = self._loop.time() + self._request_timeout  # a new request began
        self._buffer += data
        if not self._busy:
            self._next_request()
        elif len(self._buffer) > self._max_body + MAX_HEAD_BYTES:
            self._transport.pause_reading()  # a pipelining client waits for its earlier answers

    def eof_received(self) -> bool | None:
        if not self._busy:
            self._close()
        return True  # the answer in progress is still written; then the connection closes

    # Requests ------------------------------------------------------------------------------------

    def _next_request(self) -> None:
        try:
            parsed = self._parse()
        except _RequestError as error:
            self._write(error.status, orjson.dumps({"error": str(error)}), close=True)
            return
        if parsed is None:
            return
        handler, body, close = parsed
        self._busy = True
        # The handler answers at once unless it must wait (a namespace the watch has not delivered
        # yet): run it here until it completes or first waits, and only then give it a task. Saves a
        # task and a loop iteration per request (most of them).
        coroutine = handler(body)
        try:
            waiting_on = coroutine.send(None)
        except StopIteration as done:
            self._finish(done.value, close)
            return
        except Exception:
            self._finish(_INTERNAL_ERROR, True)
            logger.exception("admission handler raised")
            return
        self._loop.create_task(self._answer(_resume(coroutine, waiting_on), close))

    def _parse(self) -> tuple[Handler, bytes, bool] | None:
        """(handler, body, close after answering) of the first whole request in the buffer, or None."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _RequestError(431, f"request head over {MAX_HEAD_BYTES} bytes")
            return None
        lines = bytes(buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _RequestError(400, "malformed request line")
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if not version.startswith(b"HTTP/"):
                raise _RequestError(400, "malformed request line")
            raise _RequestError(505, "only HTTP/1.1 and HTTP/1.0 are served")
        close = version == b"HTTP/1.0"
        length: int | None = None
        expect_continue = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
                raise _RequestError(400, "malformed header line")
            name = name.lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit() or len(value) > 12:
                    raise _RequestError(400, "malformed Content-Length")
                if length is not None and length != int(value):
                    raise _RequestError(400, "conflicting Content-Length headers")
                length = int(value)
            elif name == b"transfer-encoding":
                raise _RequestError(501, "Transfer-Encoding is not supported: send Content-Length")
            elif name == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens:
                    close = False
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    raise _RequestError(400, "unsupported Expect header")
                expect_continue = True
        if method != b"POST":
            raise _RequestError(405, "only POST is served")
        handler = self._handler if target.partition(b"?")[0] == self._path else self._other_paths
        if handler is None:
            raise _RequestError(404, "no admission handler at this path")
        if length is None:
            raise _RequestError(411, "Content-Length is required")
        if length > self._max_body:
            raise _RequestError(413, f"request body over {self._max_body} bytes")
        start = end + 4
        if len(buffer) < start + length:
            if expect_continue and len(buffer) == start:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        return handler, body, close

    async def _answer(self, answer: Awaitable[tuple[int, bytes]], close: bool) -> None:
        try:
            result = await answer
        except Exception:  # the handler never raises; if it did, the connection must still answer
            logger.exception("admission handler raised")
            result, close = _INTERNAL_ERROR, True
        self._finish(result, close)

    def _finish(self, result: tuple[int, bytes], close: bool) -> None:
        status, payload = result
        self._busy = False
        if self._closing or self._transport.is_closing():
            return
        self._write(status, payload, close=close)
        if not close:
            self._transport.resume_reading()
            if self._buffer:
                self._deadline = self._loop.time() + self._request_timeout
                self._next_request()
            else:
                self._deadline = self._loop.time() + self._idle_timeout

    def _write(self, status: int, payload: bytes, *, close: bool) -> None:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n" % (
            status,
            _REASONS.get(status, b"Unknown"),
            len(payload),
            _date(),
        )
        if close:
            self._transport.write(head + b"Connection: close\r\n\r\n" + payload)
            self._close()
        else:
            self._transport.write(head + b"\r\n" + payload)

    def _close(self) -> None:
        self._closing = True
        self._buffer.clear()
        self._transport.close()

    # Timeouts ------------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._deadline = self._loop.time() + seconds
        self._timer = self._loop.call_later(seconds, self._check_deadline)

    def _check_deadline(self) -> None:
        """One timer per connection, re-armed lazily: a request costs a float store, not a timer."""
        self._timer = None
        if self._closing:
            return
        remaining = self._deadline - self._loop.time()
        if remaining > 0 or self._busy:
            self._timer = self._loop.call_later(max(remaining, 1.0), self._check_deadline)
            return
        if self._buffer:
            self._write(408, b'{"error":"request not received in time"}', close=True)
        else:
            self._close()  # idle keep-alive connection


async def start_server(
    handler: Handler,
    path: str,
    *,
    other_paths: Handler | None = None,
    host: str,
    port: int,
    ssl: Any,
    max_body: int,
) -> asyncio.AbstractServer:
    """Listen on host:port over TLS (`ssl`: an SSLContext, reloaded in place on rotation)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: AdmissionProtocol(handler, path, other_paths=other_paths, max_body=max_body),
        host,
        port,
        ssl=ssl,
        reuse_address=True,
    )

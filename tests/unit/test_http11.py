"""The lean HTTP/1.1 admission protocol (webhook/service/admission/http11.py) over plain TCP on 127.0.0.1:
what the apiserver sends is answered, anything else gets one status and a one-line reason."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from webhook.service.admission import http11

PATH = "/mutate-pods"


async def _echo(body: bytes) -> tuple[int, bytes]:
    return 200, orjson.dumps({"length": len(body)})


async def _other(body: bytes) -> tuple[int, bytes]:
    return 200, b'{"other":true}'


class Server:
    def __init__(self, **options):
        self.options = options

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        options = {"max_body": 1000, **self.options}
        self.server = await loop.create_server(
            lambda: http11.AdmissionProtocol(_echo, PATH, **options), "127.0.0.1", 0
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_):
        self.server.close()

    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


def post(body: bytes, path: str = PATH, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_and_pipelined_requests_are_answered_in_order():
    async with Server() as server:
        reader, writer = await server.connect()
        writer.write(post(b"{}"))
        status, headers, body = await read_response(reader)
        assert (status, orjson.loads(body)) == (200, {"length": 2})
        assert headers["content-type"] == "application/json" and "date" in headers
        # Two requests in one write, the second split from its body: both answered, in order.
        writer.write(post(b"abc") + post(b"12345")[:-2])
        await asyncio.sleep(0.05)
        writer.write(b"45")
        assert orjson.loads((await read_response(reader))[2]) == {"length": 3}
        assert orjson.loads((await read_response(reader))[2]) == {"length": 5}
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GET /mutate-pods HTTP/1.1\r\nHost: x\r\n\r\n", 405, "only POST"),
        (post(b"{}", path="/other"), 404, "no admission handler"),
        (b"POST /mutate-pods HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Content-Length is required"),
        (post(b"x" * 1001), 413, "request body over 1000 bytes"),
        (
            b"POST /mutate-pods HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
            "Transfer-Encoding",
        ),
        (b"POST /mutate-pods HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "malformed Content-Length"),
        (b"POST /mutate-pods HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "conflicting"),
        (b"POST /mutate-pods HTTP/1.1\r\nbroken header\r\n\r\n", 400, "malformed header line"),
        (b"POST /mutate-pods\r\n\r\n", 400, "malformed request line"),
        (b"POST /mutate-pods HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 505, "HTTP/1.1"),
        (b"POST /mutate-pods HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431, "request head over"),
        (b"POST /mutate-pods HTTP/1.1\r\nX: " + b"y" * 20000, 431, "request head over"),
    ],
)
async def test_what_is_not_an_admission_request_gets_a_status_and_a_reason_then_close(
    request_bytes: bytes, status: int, reason: str
):
    async with Server() as server:
        reader, writer = await server.connect()
        writer.write(request_bytes)
        got, headers, body = await read_response(reader)
        assert got == status
        assert reason in orjson.loads(body)["error"]
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
        writer.close()


async def test_other_paths_go_to_their_handler_when_given():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: http11.AdmissionProtocol(_echo, PATH, other_paths=_other, max_body=100), "127.0.0.1", 0
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(post(b"{}", path="/else?x=1") + post(b"{}", path=PATH + "?timeout=5s"))
    assert (await read_response(reader))[2] == b'{"other":true}'
    assert orjson.loads((await read_response(reader))[2]) == {"length": 2}
    writer.close()
    server.close()


async def test_expect_continue_http10_and_connection_close():
    async with Server() as server:
        reader, writer = await server.connect()
        writer.write(b"POST /mutate-pods HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        assert (await read_response(reader))[0] == 200
        writer.write(b"POST /mutate-pods HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        reader, writer = await server.connect()
        writer.write(post(b"{}", extra="Connection: close\r\n"))
        assert (await read_response(reader))[1]["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_slow_and_idle_clients_are_disconnected():
    async with Server(request_timeout=0.3, idle_timeout=0.3) as server:
        reader, writer = await server.connect()
        writer.write(b"POST /mutate-pods HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")  # never finished
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        assert status == 408 and b"not received in time" in body
        reader, writer = await server.connect()
        writer.write(post(b"{}"))
        assert (await read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""  # idle keep-alive closed


async def test_a_handler_that_raises_still_answers():
    async def broken(body: bytes) -> tuple[int, bytes]:
        raise RuntimeError("bug")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: http11.AdmissionProtocol(broken, PATH, max_body=100), "127.0.0.1", 0
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(post(b"{}"))
    status, headers, body = await read_response(reader)
    assert status == 500 and b"internal error" in body and headers["connection"] == "close"
    writer.close()
    server.close()


async def test_a_handler_that_waits_is_answered_when_it_is_done():
    """Most answers complete at once; one that waits (a namespace not yet delivered) finishes in a task."""

    async def waits(body: bytes) -> tuple[int, bytes]:
        await asyncio.sleep(0.05)
        if body == b"fail":
            raise RuntimeError("bug after waiting")
        return 200, b'{"waited":true}'

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: http11.AdmissionProtocol(waits, PATH, max_body=100), "127.0.0.1", 0
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(post(b"{}") + post(b"{}"))
    assert (await read_response(reader))[2] == b'{"waited":true}'
    assert (await read_response(reader))[2] == b'{"waited":true}'
    writer.write(post(b"fail"))
    status, headers, _ = await read_response(reader)
    assert status == 500 and headers["connection"] == "close"
    writer.close()
    server.close()

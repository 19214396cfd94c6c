"""The lean watch's event handling: what each watch event does to the callbacks (no network)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from webhook.service.kube.session import ApiSession
from webhook.service.kube.watch import NAMESPACES, Expired, Watcher, WatchError, _refused


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def upsert(self, body: Any) -> None:
        self.calls.append(("upsert", body["metadata"]["name"]))

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))

    def names(self) -> list[str]:
        """What the receiver holds: upserted and not deleted since."""
        held: dict[str, None] = {}
        for call, name in self.calls:
            if call == "upsert":
                held[name] = None
            else:
                held.pop(name, None)
        return list(held)


@pytest.fixture
def watched() -> tuple[Watcher, Recorder]:
    configuration = client.Configuration(host="https://127.0.0.1:1")
    recorder = Recorder()
    watcher = Watcher(ApiSession(configuration), NAMESPACES, recorder.upsert, recorder.delete, recorder.names)
    return watcher, recorder


def event(kind: str, name: str | None = "team-a", version: str = "7", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": version}
    if name is not None:
        metadata["name"] = name
    return {"type": kind, "object": {"metadata": metadata, **extra}}


@contextlib.asynccontextmanager
async def fake_namespaces(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *,
    run: bool = True,
    idle_timeout: float = 150.0,
) -> AsyncIterator[tuple[Watcher, Recorder]]:
    """A Watcher of namespaces against `handler`, an HTTP server for what the real apiserver cannot
    be made to answer on demand; running unless `run` is False; stopped on exit."""
    app = web.Application()
    app.router.add_get(NAMESPACES.path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    recorder = Recorder()
    session = ApiSession(client.Configuration(host=f"http://127.0.0.1:{port}"))
    watcher = Watcher(session, NAMESPACES, recorder.upsert, recorder.delete, recorder.names, idle_timeout)
    task = asyncio.create_task(watcher.run()) if run else None
    try:
        yield watcher, recorder
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
        await runner.cleanup()


INITIAL_EVENTS_END = (
    b'{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5", "annotations": '
    b'{"k8s.io/initial-events-end": "true"}}}}\n'
)
TOO_MANY = b'{"kind": "Status", "message": "storage is (re)initializing", "code": 429}'


async def end_of_initial_events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(INITIAL_EVENTS_END)
    return response


class Collection:
    """Namespaces as a server that may stream lists: a paged list gets one empty page; the n-th
    streamed list (from 1) gets what `stream(n, request, response)` writes. Both are counted."""

    def __init__(self, stream: Callable[[int, web.Request, web.StreamResponse], Awaitable[None]]) -> None:
        self.stream = stream
        self.streams = 0
        self.pages = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if "sendInitialEvents" not in request.query:
            self.pages += 1
            return web.json_response({"items": [], "metadata": {"resourceVersion": "5"}})
        self.streams += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await self.stream(self.streams, request, response)
        return response


def test_added_modified_and_deleted_reach_the_callbacks_and_advance_the_version(
    watched: tuple[Watcher, Recorder],
) -> None:
    watcher, recorder = watched
    watcher.apply_event(event("ADDED", version="5"))
    watcher.apply_event(event("MODIFIED", version="6"))
    watcher.apply_event(event("DELETED", version="7"))
    assert recorder.calls == [("upsert", "team-a"), ("upsert", "team-a"), ("delete", "team-a")]
    assert watcher.resource_version == "7"


def test_a_bookmark_moves_the_version_and_calls_nothing(watched: tuple[Watcher, Recorder]) -> None:
    watcher, recorder = watched
    watcher.apply_event(event("BOOKMARK", name=None, version="42"))
    assert recorder.calls == []
    assert watcher.resource_version == "42"


def test_410_gone_asks_for_a_new_listing(watched: tuple[Watcher, Recorder]) -> None:
    watcher, _ = watched
    with pytest.raises(Expired):
        watcher.apply_event(
            {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
        )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "ERROR", "object": {"code": 500, "message": "etcd\nis down"}}, "etcd is down"),
        ({"type": "ADDED", "object": "not an object"}, "malformed watch event of type 'ADDED'"),
        (["not", "an", "event"], "malformed watch event of type None"),
    ],
)
def test_other_errors_and_malformed_events_are_one_line_errors(
    watched: tuple[Watcher, Recorder], payload: Any, message: str
) -> None:
    watcher, recorder = watched
    with pytest.raises(WatchError) as raised:
        watcher.apply_event(payload)
    assert str(raised.value) == message
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [
        ({"code": 429, "message": "slow down", "details": {"retryAfterSeconds": 3}}, 429, 3.0),
        ({"code": 429, "details": {"retryAfterSeconds": 0}}, 429, None),
        ({"code": 429, "details": {"retryAfterSeconds": -1}}, 429, None),
        ({"code": 429, "details": {"retryAfterSeconds": "3"}}, 429, None),
        ({"code": 429, "details": {"retryAfterSeconds": True}}, 429, None),
        # A resourceVersion the apiserver cannot serve (after an etcd restore): listed again.
        ({"code": 504, "reason": "Timeout", "details": {"retryAfterSeconds": 1}}, None, None),
        ({"code": 500, "message": "watch chan error"}, None, None),
        ({"code": "429", "message": "a code as text"}, None, None),
        ({"code": True, "message": "a code as a boolean"}, None, None),
    ],
)
def test_only_a_429_error_event_is_a_refusal_for_now_with_the_wait_it_asks_for(
    watched: tuple[Watcher, Recorder], status: dict[str, Any], code: int | None, retry_after: float | None
) -> None:
    watcher, _ = watched
    with pytest.raises(WatchError) as raised:
        watcher.apply_event({"type": "ERROR", "object": status})
    assert raised.value.status == code and raised.value.retry_after == retry_after
    assert raised.value.for_now is (code is not None)


@pytest.mark.parametrize(
    ("status", "listed_again"),
    [(b'"code": 429, "details": {"retryAfterSeconds": 1}', False), (b'"code": 500', True)],
)
async def test_an_error_event_ends_a_watch_resumed_on_429_and_listed_again_otherwise(
    status: bytes, listed_again: bool
) -> None:
    """429 (too many requests): the watch is asked for again from the last resourceVersion once
    the wait asked for is over, as client-go's reflector does, not everything listed again. 500:
    listed again."""
    requests: list[dict[str, str]] = []
    release = asyncio.Event()

    async def collection(request: web.Request) -> web.StreamResponse:
        requests.append(dict(request.query))
        if "sendInitialEvents" in request.query and len(requests) == 1:
            return await end_of_initial_events(request)
        response = web.StreamResponse()
        await response.prepare(request)
        if len(requests) == 2:
            await response.write(
                b'{"type": "ADDED", "object": {"metadata": {"name": "team-a", "resourceVersion": "6"}}}\n'
                b'{"type": "ERROR", "object": {"kind": "Status", %s, "message": "no"}}\n' % status
            )
            return response
        await release.wait()  # a quiet watch, or a listing that is not over yet
        return response

    async with fake_namespaces(collection) as (_, recorder):
        while len(requests) < 3:
            await asyncio.sleep(0.05)
        release.set()
        assert ("upsert", "team-a") in recorder.calls
    assert ["sendInitialEvents" in query for query in requests] == [True, False, listed_again]
    if not listed_again:
        assert requests[2].get("resourceVersion") == "6"


@pytest.mark.parametrize(("code", "still_streamed"), [(429, True), (500, False), (504, False)])
async def test_error_events_in_streamed_lists_turn_listings_to_pages_unless_429(
    code: int, still_streamed: bool
) -> None:
    """Twice in a row, a streamed list ended by the server's ERROR event: 500 or 504 is a server
    that cannot serve the stream (client-go lists in pages then too); 429 says nothing of that."""

    async def stream(number: int, request: web.Request, response: web.StreamResponse) -> None:
        if number <= 2:
            error = b'{"type": "ERROR", "object": {"kind": "Status", "code": %d, "message": "no"}}\n'
            await response.write(error % code)
        else:
            await response.write(INITIAL_EVENTS_END)

    collection = Collection(stream)
    async with fake_namespaces(collection.handle, run=False) as (watcher, _):
        for _ in range(2):
            with pytest.raises(WatchError):
                await watcher.relist()
        await watcher.relist()
        assert watcher.synced.is_set()
    assert watcher.streams_lists is still_streamed
    assert (collection.streams, collection.pages) == ((3, 0) if still_streamed else (2, 1))


def test_an_object_without_a_name_is_skipped(watched: tuple[Watcher, Recorder]) -> None:
    watcher, recorder = watched
    watcher.apply_event(event("ADDED", name=None, version="9"))
    assert recorder.calls == []
    assert watcher.resource_version == "9"


def test_the_session_sends_the_configuration_token() -> None:
    configuration = client.Configuration(host="https://127.0.0.1:1", api_key={"authorization": "Bearer abc"})
    headers = ApiSession(configuration).headers("application/json")
    assert headers == {"Accept": "application/json", "Authorization": "Bearer abc"}


async def test_a_silent_connection_is_taken_for_dropped_and_the_kind_listed_again() -> None:
    """A watch that sends its headers and one event, then nothing (a dropped connection that was
    never closed): after the idle timeout the watcher lists again and says so for /readyz."""
    lists = 0
    watches = 0
    release = asyncio.Event()

    async def collection(request: web.Request) -> web.StreamResponse:
        nonlocal lists, watches
        if "sendInitialEvents" in request.query:  # a streamed list, which this server ignores
            lists += 1
        if "watch" not in request.query:
            lists += 1
            items = [{"metadata": {"name": "team-a", "resourceVersion": "5"}}]
            return web.json_response({"items": items, "metadata": {"resourceVersion": "5"}})
        watches += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(
            b'{"type": "ADDED", "object": {"metadata": {"name": "team-b", "resourceVersion": "6"}}}\n'
        )
        await release.wait()  # silent, never closed
        return response

    async with fake_namespaces(collection, idle_timeout=0.3) as (watcher, recorder):
        try:
            for _ in range(100):
                if watcher.last_recovery is not None:
                    break
                await asyncio.sleep(0.05)
            assert watcher.stalls >= 1 and lists >= 2 and watches >= 1
            assert watcher.streams_lists is False  # its streams never ended, twice: listed in pages since
            assert watcher.encoding == "json"  # asked for protobuf first, answered in JSON: read as such
            assert watcher.last_recovery is not None and "listed again at" in watcher.last_recovery
            # team-b arrived by the watch only, and the new listing no longer holds it: deleted.
            assert ("upsert", "team-b") in recorder.calls and ("delete", "team-b") in recorder.calls
        finally:
            release.set()


async def test_a_stream_dropped_on_the_way_is_tried_again() -> None:
    """A stream that breaks before its initial events end (a connection dropped on the way, which
    the real apiserver cannot be made to do on demand): the next listing streams again rather than
    turn to pages for good."""
    added = b'{"type": "ADDED", "object": {"metadata": {"name": "team-a", "resourceVersion": "5"}}}\n'

    async def stream(number: int, request: web.Request, response: web.StreamResponse) -> None:
        await response.write(added)
        if number == 1:
            assert request.transport is not None
            request.transport.close()  # dropped before the end of the initial events
        else:
            await response.write(INITIAL_EVENTS_END)

    collection = Collection(stream)
    async with fake_namespaces(collection.handle, run=False) as (watcher, recorder):
        with contextlib.suppress(Exception):
            await watcher.relist()
        assert watcher.streams_lists is None and collection.streams == 1  # still not known
        await watcher.relist()
        assert watcher.streams_lists is True and collection.streams == 2 and collection.pages == 0
        assert watcher.synced.is_set() and ("upsert", "team-a") in recorder.calls


@pytest.mark.parametrize(("header", "low", "high"), [("2", 1.9, 3.0), ("0", 0.45, 1.0)])
async def test_a_refusal_with_retry_after_is_retried_when_the_server_asked(
    header: str, low: float, high: float
) -> None:
    """429 with Retry-After, as the apiserver answers while its caches fill after a restart: the
    next request comes when asked, neither sooner (nor sooner than 0.5 s) nor on doubling pauses."""
    arrivals: list[float] = []

    async def collection(request: web.Request) -> web.StreamResponse:
        arrivals.append(asyncio.get_running_loop().time())
        if len(arrivals) == 1:
            return web.Response(status=429, body=TOO_MANY, headers={"Retry-After": header})
        return await end_of_initial_events(request)

    async with fake_namespaces(collection) as (watcher, _):
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert low <= arrivals[1] - arrivals[0] < high
        assert watcher.streams_lists is True  # a refusal for now says nothing of the stream


async def test_a_refusal_that_lasts_goes_back_to_doubling_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scaled down: waits as asked of at most 0.2 s, 0.4 s of them in a row; pauses 0.1-0.8 s.
    monkeypatch.setattr("webhook.service.kube.watch.RETRY_AFTER_SECONDS", (0.2, 0.4))
    monkeypatch.setattr("webhook.service.kube.watch.RETRY_SECONDS", (0.1, 0.8))
    arrivals: list[float] = []

    async def collection(request: web.Request) -> web.StreamResponse:
        arrivals.append(asyncio.get_running_loop().time())
        return web.Response(status=429, body=TOO_MANY, headers={"Retry-After": "1"})

    async with fake_namespaces(collection):
        while len(arrivals) < 8:
            await asyncio.sleep(0.05)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.15 < gap < 0.35 for gap in gaps[:4])  # as asked, then the pauses catch up
    assert gaps[5] > 0.7 and gaps[6] > 0.7  # doubled: not a request every 0.2 s for ever


async def test_a_watch_refused_for_now_resumes_where_it_was() -> None:
    """503 on the watch after a listing: the watch is asked for again from the same
    resourceVersion, not replaced by a new listing of everything."""
    requests: list[dict[str, str]] = []
    release = asyncio.Event()

    async def collection(request: web.Request) -> web.StreamResponse:
        requests.append(dict(request.query))
        if "sendInitialEvents" in request.query:
            return await end_of_initial_events(request)
        if len(requests) == 2:
            return web.Response(status=503, body=b'{"kind": "Status", "message": "unavailable", "code": 503}')
        response = web.StreamResponse()
        await response.prepare(request)
        await release.wait()  # a quiet watch
        return response

    async with fake_namespaces(collection):
        while len(requests) < 3:
            await asyncio.sleep(0.05)
        release.set()
    assert ["sendInitialEvents" in query for query in requests] == [True, False, False]
    assert requests[2].get("resourceVersion") == "5"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("30", 30.0),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("²", None),
        ("Wed, 21 Oct 2015", None),
    ],
)
def test_only_whole_seconds_in_retry_after_are_taken(header: str, seconds: float | None) -> None:
    # What else a proxy may send is not a wait, and must not fail the request's handling.
    class Answer:
        def __init__(self) -> None:
            self.status = 429
            self.headers = {"Retry-After": header}

    body = b'{"kind": "Status", "message": "too many requests", "code": 429}'
    error = _refused(Answer(), body)  # type: ignore[arg-type]
    assert error.retry_after == seconds
    assert str(error) == "HTTP 429: too many requests"

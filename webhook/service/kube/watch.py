"""Lean list-and-watch of the objects the snapshot is built from: namespaces and ChaosImageRegistries.

kopf keeps a memory, a throttler and a worker per watched object and queues every object's body
in that worker; at 10,000 namespaces and 10,000 registries that was most of the process's memory
(bench/RESULTS.md). These two watches keep nothing per object but what the state needs: each
event is decoded with orjson, handed to a callback and dropped. Namespaces are read as
PartialObjectMetadata (their labels are all we use), registries whole.

The protocol is the one client-go's reflector speaks: a paged list, then a watch from the list's
resourceVersion with bookmarks; a dropped watch resumes from the last resourceVersion seen; "410
Gone" (or a watch the apiserver cannot resume) lists again, and whatever that listing no longer
holds is deleted. A connection that brings nothing for `idle_timeout` seconds is taken for dead
(the apiserver sends a bookmark on every watch each minute, so a quiet cluster never reaches it): a
middlebox or NAT that silently stopped forwarding would otherwise hold the caches still until the
watch's own deadline, 5-10 minutes on. After such a stall the watcher lists again, since it cannot
know what was lost on the way, and `last_recovery` says when for /readyz.

Namespace events are asked for in protobuf (kube/protobuf.py), and read as JSON where the server
answers in JSON: encoding them costs the apiserver less than half the CPU of JSON.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from webhook.core.models import API_VERSION, PLURAL
from webhook.service.kube import protobuf
from webhook.service.kube.errors import describe_response, one_line, status_text
from webhook.service.kube.session import CONNECT_SECONDS, LIST_TIMEOUT_SECONDS, ApiSession

logger = logging.getLogger("webhook.watch")

LIST_PAGE_SIZE = 500
# Objects handed to the state between two turns of the event loop while a listing is delivered.
DELIVERY_SLICE = 100
# The apiserver ends a watch after timeoutSeconds; clients spread their renewals (client-go: 5-10 min).
WATCH_SECONDS = (300, 600)
RETRY_SECONDS = (0.5, 10.0)  # first and longest pause after a failed request
# A refusal for now with Retry-After (429 while the apiserver's caches fill after a restart, about
# half a minute at 100,000 registries; priority and fairness) is retried when asked, each wait at
# most the first, while the waits in a row add up to less than the second: past that, the pauses
# double again, so that a refusal that lasts does not bring a request a second for ever.
RETRY_AFTER_SECONDS = (60.0, 120.0)
# An answered stream that ends before its initial events: a connection dropped on the way, or a
# server or proxy that ignores sendInitialEvents. After this many in a row, listings go in pages.
UNFINISHED_STREAMS = 2
# Answers to a streamed list that say the server does not offer it (the request is malformed,
# the method or feature unknown to it): listings go in pages. Any other refusal (429 and 5xx while
# it restarts, or 401, 403, 404, which a paged list would get alike) is retried as it is.
STREAM_REFUSED = (400, 405, 422, 501)
MIN_WATCH_SECONDS = 1.0  # a watch ended sooner counts as a failure (pause before the next)
WATCH_GRACE_SECONDS = 30  # past timeoutSeconds, a watch connection is given up
# Nothing received for this long: the connection is dead. The apiserver's watch cache sends every
# watch with allowWatchBookmarks a bookmark each minute (k8s.io/apiserver cacher, 1.27 and later).
WATCH_IDLE_SECONDS = 150.0
# The annotation of the bookmark that ends the initial events of a streamed list.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
METADATA_ONLY_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# Protobuf first: the apiserver encodes metadata in less than half the CPU of JSON (protobuf.py).
METADATA_ONLY_WATCH = (
    f"{protobuf.MEDIA_TYPE};as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

Body = Mapping[str, Any]


@dataclass(frozen=True)
class Resource:
    """A kind to watch: its collection path, a name for logs and whether metadata is enough."""

    kind: str
    path: str
    metadata_only: bool = False


NAMESPACES = Resource("Namespace", "/api/v1/namespaces", metadata_only=True)
REGISTRIES = Resource("ChaosImageRegistry", f"/apis/{API_VERSION}/{PLURAL}")


class WatchError(Exception):
    """A request of the list-and-watch failed; the message is one line for the log.

    `status`: the HTTP status of a refusal; `retry_after`: the seconds the server asked the client
    to wait (its Retry-After header: 1 with 429 while its caches fill after a restart)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def for_now(self) -> bool:
        """Refused for now (429, 5xx): the same request is worth making again."""
        return self.status is not None and (self.status == 429 or self.status >= 500)


def _refused(response: aiohttp.ClientResponse, data: bytes) -> WatchError:
    """The error of an answer other than 200, with the wait the server asked for, if any."""
    retry_after: float | None = None
    header = response.headers.get("Retry-After", "")
    if header.isascii() and header.isdigit():  # seconds; the apiserver sends no HTTP-date form
        retry_after = float(header)
    return WatchError(describe_response(response.status, data), response.status, retry_after)


class ListStreamRefused(Exception):
    """The apiserver does not stream lists as watch events: list in pages."""


class Expired(Exception):
    """The resourceVersion is too old to resume from: list again."""


def _clock() -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime())


class Watcher:
    """List and then watch one kind for ever, calling `upsert(body)` and `delete(name)`.

    `synced` is set once the first complete listing has been delivered."""

    def __init__(
        self,
        api: ApiSession,
        resource: Resource,
        upsert: Callable[[Body], None],
        delete: Callable[[str], None],
        known: Callable[[], Iterable[str]],
        idle_timeout: float = WATCH_IDLE_SECONDS,
    ) -> None:
        self.api = api
        self.idle_timeout = idle_timeout
        self.resource = resource
        self.upsert = upsert
        self.delete = delete
        # The names the receiver holds: a new listing deletes those it lacks. Asked of the receiver
        # rather than kept here too (a second set of 100,000 names is 4 MiB).
        self.known = known
        self.synced = asyncio.Event()
        self.last_error: str | None = None
        # The last stall and the listing that ended it, for /readyz; stalls counts them all.
        self.last_recovery: str | None = None
        self.stalls = 0
        self._stalled_at: str | None = None
        # Whether the apiserver streams lists as watch events (None: not known yet).
        self.streams_lists: bool | None = None
        # Whether the last watch request was answered with 200 (its events then followed).
        self._answered = False
        # Answered streams in a row that ended before their initial events.
        self._unfinished_streams = 0
        # Where a resumed watch starts; None: list first.
        self.resource_version: str | None = None
        # How the apiserver encoded the last watch response: "protobuf" or "json".
        self.encoding: str | None = None

    async def run(self) -> None:
        """For ever: list when needed, then watch; after any failure, pause (doubling up to 10 s,
        or as long as a refusal's Retry-After asks) and go on. Only cancellation ends it."""
        loop = asyncio.get_running_loop()
        pause = RETRY_SECONDS[0]
        waited_as_asked = 0.0  # in a row
        while True:
            began = loop.time()
            asked: float | None = None  # the pause the server asked for
            try:
                if self.resource_version is None:
                    await self.relist()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Expired:
                logger.info("%s watch expired; listing again", self.resource.kind)
                self.resource_version = None
            except aiohttp.SocketTimeoutError:
                # Nothing read for idle_timeout: the connection is silently dead. List again.
                self._stalled()
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                # The connection failed: resume from the same resourceVersion.
                self._failed(error)
            except (WatchError, ValueError) as error:
                self._failed(error)
                if isinstance(error, WatchError) and error.for_now:
                    # Refused for now (the apiserver restarting, overloaded): the same request later,
                    # a watch resumed from where it was.
                    asked = error.retry_after
                else:
                    # The server refused (e.g. a resourceVersion ahead of it after an etcd restore)
                    # or sent what does not parse: list again rather than repeat the same request.
                    self.resource_version = None
            except Exception as error:  # a body we did not foresee: never end the watch for it
                logger.exception("%s list-and-watch failed unexpectedly; listing again", self.resource.kind)
                self.last_error = one_line(error)
                self.resource_version = None
            else:
                if loop.time() - began >= MIN_WATCH_SECONDS:
                    pause = RETRY_SECONDS[0]
                    waited_as_asked = 0.0
                    continue
                # A watch the server ends at once (shutting down, a proxy): not a tight loop.
            if asked is not None and waited_as_asked < RETRY_AFTER_SECONDS[1]:
                # When asked, rather than on pauses doubling past the moment the server is back.
                wait = min(max(asked, RETRY_SECONDS[0]), RETRY_AFTER_SECONDS[0])
                waited_as_asked += wait
                await asyncio.sleep(wait)
                continue
            await asyncio.sleep(max(pause, min(asked or 0.0, RETRY_AFTER_SECONDS[0])))
            pause = min(pause * 2, RETRY_SECONDS[1])

    def _stalled(self) -> None:
        self.stalls += 1
        action = "watch" if self.resource_version else "list"
        self._stalled_at = self._stalled_at or _clock()
        self.last_error = f"stalled since {self._stalled_at}: nothing received for {self.idle_timeout:g} s"
        self.resource_version = None
        logger.warning(
            "%s %s of %s stalled (nothing received for %g s; connection silently dropped?); listing again",
            self.resource.kind,
            action,
            self.resource.path,
            self.idle_timeout,
        )

    def _failed(self, error: BaseException) -> None:
        self.last_error = one_line(error)
        if self._stalled_at is not None:  # still not listed again since a stall: keep saying so
            self.last_error = f"stalled since {self._stalled_at}, then: {self.last_error}"
        logger.warning(
            "%s %s of %s failed: %s; retrying",
            self.resource.kind,
            "watch" if self.resource_version else "list",
            self.resource.path,
            self.last_error,
        )

    def _deliver(self, body: Body, name: str) -> None:
        """Hand one object to the state; one it cannot take must not stop the others."""
        try:
            self.upsert(body)
        except Exception:
            logger.exception("%s %s could not be taken; skipped", self.resource.kind, name)

    async def relist(self) -> None:
        """List everything; whatever the listing no longer holds is deleted.

        As a stream of watch events from the apiserver's watch cache (`sendInitialEvents`; the
        WatchList feature, on by default in Kubernetes 1.32 and from 1.34) where the server offers
        it: at 100,000 ChaosImageRegistries the paged list took the apiserver 28 s (continuation
        pages of custom resources are read from etcd), the stream 12 s, and no page is held in
        memory. Else (a server that refuses it, or whose streams keep ending before their initial
        events) in pages."""
        resource = self.resource
        began = time.monotonic()
        seen: set[str] = set()
        version: str | None = None
        if self.streams_lists is not False:
            try:
                version = await self._streamed_list(seen)
                self.streams_lists = True
                self._unfinished_streams = 0
            except ListStreamRefused as error:
                logger.info(
                    "%s: the API server does not stream lists (%s); listing in pages", resource.kind, error
                )
                self.streams_lists = False
                seen.clear()
            except Exception as error:
                # Unanswered, or refused for now (the apiserver unreachable, or 429 while its
                # caches fill after a restart, as an answer or an error event) says nothing of the
                # feature: the next listing streams again rather than read every page from etcd.
                # Answered, then ended before the initial events did: a dropped connection, a
                # server that ignores sendInitialEvents, or one that cannot serve the stream (it
                # says so with a 500 or 504 error event, as client-go falls back to pages on).
                if self._answered and not _too_many_requests(error):
                    self._unfinished_streams += 1
                    if self._unfinished_streams >= UNFINISHED_STREAMS:
                        logger.warning(
                            "%s: %d streamed lists in a row ended before all was sent; listing in pages",
                            resource.kind,
                            self._unfinished_streams,
                        )
                        self.streams_lists = False
                raise
        how = f"as a stream, {self.encoding}"
        if version is None:
            version, pages = await self._paged_list(seen)
            how = f"in {pages} pages"
        logger.info("listed %d %s in %.1f s (%s)", len(seen), resource.kind, time.monotonic() - began, how)
        for name in [name for name in self.known() if name not in seen]:
            self._remove(name)
        del seen
        self.resource_version = version
        self.last_error = None
        if self._stalled_at is not None:
            self.last_recovery = f"stalled at {self._stalled_at}, listed again at {_clock()}"
            self._stalled_at = None
            logger.info("%s listed again after a stall", self.resource.kind)
        self.synced.set()

    async def _streamed_list(self, seen: set[str]) -> str:
        """Every object as an ADDED event, up to the bookmark that ends the initial events; its
        resourceVersion is returned. Raises ListStreamRefused when the server does not offer it."""
        query: dict[str, str | int] = {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "timeoutSeconds": WATCH_SECONDS[1],
        }
        async for event in self._events(query, refused=STREAM_REFUSED):
            kind, body = _parts(event)
            if kind == "BOOKMARK":
                metadata = body.get("metadata")
                metadata = metadata if isinstance(metadata, dict) else {}
                annotations = metadata.get("annotations")
                version = metadata.get("resourceVersion")
                ended = isinstance(annotations, dict) and annotations.get(INITIAL_EVENTS_END) == "true"
                if ended and isinstance(version, str) and version:
                    return version
                continue
            name = _name_of(body)
            if name is not None and kind == "DELETED":
                seen.discard(name)
                self._remove(name)
            elif name is not None and kind in ("ADDED", "MODIFIED"):
                seen.add(name)
                self._deliver(body, name)
        raise WatchError(f"the stream of {self.resource.kind} ended before all of them were sent")

    async def _paged_list(self, seen: set[str]) -> tuple[str | None, int]:
        """Every object, in pages; the next page is requested before the current one is handed
        over, so the apiserver prepares it while this process parses."""
        accept = METADATA_ONLY_LIST if self.resource.metadata_only else "application/json"
        version: str | None = None
        pages = 0
        next_page: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(
            self._get_json({"limit": LIST_PAGE_SIZE}, accept)
        )
        try:
            while next_page is not None:
                page = await next_page
                pages += 1
                metadata = page.get("metadata") or {}
                version = metadata.get("resourceVersion") or version
                token = metadata.get("continue")
                next_page = None
                if token:
                    query = {"limit": LIST_PAGE_SIZE, "continue": token}
                    next_page = asyncio.ensure_future(self._get_json(query, accept))
                for count, item in enumerate(page.get("items") or (), start=1):
                    name = _name_of(item)
                    if name is not None:
                        seen.add(name)
                        self._deliver(item, name)
                    if count % DELIVERY_SLICE == 0:
                        await asyncio.sleep(0)  # let the next page's request and /readyz go on
                del page
        finally:
            if next_page is not None:
                next_page.cancel()
        return version, pages

    async def _get_json(self, query: Mapping[str, str | int], accept: str) -> dict[str, Any]:
        url = f"{self.api.host}{self.resource.path}?{urlencode(query)}"
        timeout = aiohttp.ClientTimeout(
            total=LIST_TIMEOUT_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=self.idle_timeout
        )
        async with self.api.get(url, accept, timeout) as response:
            data = await response.read()
            if response.status == 410:
                raise Expired()
            if response.status != 200:
                raise _refused(response, data)
        page = orjson.loads(data)
        if not isinstance(page, dict):
            raise WatchError("the list response is not a JSON object")
        return page

    async def _watch(self) -> None:
        query: dict[str, str | int] = {"timeoutSeconds": random.randint(*WATCH_SECONDS)}
        if self.resource_version:
            query["resourceVersion"] = self.resource_version
        async for event in self._events(query):
            self.apply_event(event)

    async def _events(
        self, query: Mapping[str, str | int], refused: tuple[int, ...] = ()
    ) -> AsyncIterator[Any]:
        """The decoded events of one watch request with bookmarks (`query` adds to it); a status
        in `refused` raises ListStreamRefused, 410 Expired, any other but 200 WatchError."""
        resource = self.resource
        seconds = int(query["timeoutSeconds"])
        full_query = {"watch": 1, "allowWatchBookmarks": "true", **query}
        url = f"{self.api.host}{resource.path}?{urlencode(full_query)}"
        accept = METADATA_ONLY_WATCH if resource.metadata_only else "application/json"
        # The server ends the watch after `seconds`: a connection still open well after that is
        # dead (a node or a load balancer gone without a word), and must not hold the state still.
        timeout = aiohttp.ClientTimeout(
            total=seconds + WATCH_GRACE_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=self.idle_timeout
        )
        self._answered = False
        async with self.api.get(url, accept, timeout) as response:
            in_protobuf = response.content_type == protobuf.MEDIA_TYPE
            self.encoding = "protobuf" if in_protobuf else "json"
            if response.status in refused:
                raise ListStreamRefused(describe_response(response.status, await response.read()))
            if response.status == 410:
                raise Expired()
            if response.status != 200:
                raise _refused(response, await response.read())
            self._answered = True
            if in_protobuf:
                async for frame in protobuf.frames(response.content):
                    yield protobuf.decode_event(frame)
            else:
                async for line in _lines(response.content):
                    yield orjson.loads(line)

    def _remove(self, name: str) -> None:
        try:
            self.delete(name)
        except Exception:
            logger.exception("%s %s: its deletion could not be taken; skipped", self.resource.kind, name)

    def apply_event(self, event: Any) -> None:
        """One decoded watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (410: list again)."""
        kind, body = _parts(event)
        name = _name_of(body) if kind != "BOOKMARK" else None
        if name is not None and kind == "DELETED":
            self._remove(name)
        elif name is not None and kind in ("ADDED", "MODIFIED"):
            self._deliver(body, name)
        metadata = body.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        if isinstance(version, str) and version:
            self.resource_version = version


def _too_many_requests(error: BaseException) -> bool:
    """A 429, answered or sent as an error event: a refusal for now, whatever the server supports."""
    return isinstance(error, WatchError) and error.status == 429


def _parts(event: Any) -> tuple[Any, dict[str, Any]]:
    """The type and object of a decoded watch event; an ERROR event raises (410: Expired)."""
    kind = event.get("type") if isinstance(event, dict) else None
    body = event.get("object") if isinstance(event, dict) else None
    if not isinstance(body, dict):
        raise WatchError(f"malformed watch event of type {kind!r}")
    if kind == "ERROR":
        code = body.get("code")
        if code == 410:
            raise Expired()
        if code == 429:  # True == 1: a boolean code never matches
            # Too many requests: the watch resumes where it was once the wait asked for is over,
            # as client-go's reflector does, rather than everything listed again (at 100,000
            # objects, seconds of the apiserver's CPU). Not a 5xx: the apiserver sends 504 and 500
            # for a resourceVersion it cannot serve (after an etcd restore), which a listing repairs.
            raise WatchError(status_text(body), 429, _retry_after_seconds(body))
        raise WatchError(status_text(body))
    return kind, body


def _retry_after_seconds(status: dict[str, Any]) -> float | None:
    """The wait a Status object asks for (`details.retryAfterSeconds`), if it is whole seconds;
    0, which the apiserver's protobuf writes for every Status with details, asks for none."""
    details = status.get("details")
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return float(seconds)
    return None


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The newline-delimited events of a watch response, whatever their size."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _name_of(body: Any) -> str | None:
    metadata = body.get("metadata") if isinstance(body, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) and name else None

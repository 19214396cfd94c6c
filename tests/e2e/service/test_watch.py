"""The lean list-and-watch (webhook/service/watch.py) against the real kube-apiserver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster
from webhook.service.kube import client as kube_client
from webhook.service.kube.session import ApiSession
from webhook.service.kube.watch import NAMESPACES, REGISTRIES, Watcher


class Seen:
    """What a watcher delivered: the last body per name, and the names deleted."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []

    def upsert(self, body: Any) -> None:
        self.bodies[body["metadata"]["name"]] = body

    def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.bodies.pop(name, None)


async def until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def session(control_plane: ControlPlane) -> AsyncIterator[ApiSession]:
    api = ApiSession(kube_client.load_client_configuration(str(control_plane.kubeconfig)))
    yield api
    await api.close()


@contextlib.asynccontextmanager
async def running(watcher: Watcher) -> AsyncIterator[Watcher]:
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_namespaces_arrive_as_metadata_only_with_their_labels(
    session: ApiSession, cluster: Cluster
) -> None:
    seen = Seen()
    before = cluster.namespace("org-a")
    async with running(Watcher(session, NAMESPACES, seen.upsert, seen.delete, seen.bodies.keys)) as watcher:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert before in seen.bodies  # from the listing
        assert watcher.encoding == "protobuf"  # the apiserver's cheaper encoding (kube/protobuf.py)
        assert seen.bodies[before]["kind"] == "PartialObjectMetadata"
        assert set(seen.bodies[before]) == {"kind", "apiVersion", "metadata"}
        after = cluster.namespace("org-b")  # from the watch
        await until(lambda: after in seen.bodies, f"namespace {after}")
        assert seen.bodies[after]["metadata"]["labels"]["chaosregistry.io/organization"] == "org-b"
        cluster.core.patch_namespace(after, {"metadata": {"labels": {"chaosregistry.io/project": "p"}}})
        await until(
            lambda: seen.bodies[after]["metadata"]["labels"].get("chaosregistry.io/project") == "p",
            "the new label",
        )


async def test_registries_are_listed_watched_resumed_and_relisted(
    session: ApiSession, cluster: Cluster
) -> None:
    seen = Seen()
    spec = {"registry": {"server": "mirror.example.com"}}
    first = cluster.registry("first", spec)["metadata"]["name"]
    watcher = Watcher(session, REGISTRIES, seen.upsert, seen.delete, seen.bodies.keys)
    async with running(watcher):
        await asyncio.wait_for(watcher.synced.wait(), 10)
        assert seen.bodies[first]["spec"]["registry"]["server"] == "mirror.example.com"
        cluster.patch_registry("first", {"spec": {"allowOverrides": True}})
        await until(lambda: seen.bodies[first]["spec"].get("allowOverrides") is True, "the update")
        cluster.delete_registry("first")
        await until(lambda: first in seen.deleted, "the deletion")

    # Resumed from the last resourceVersion: what happened while no watch ran is delivered.
    second = cluster.registry("second", spec)["metadata"]["name"]
    async with running(watcher):
        await until(lambda: second in seen.bodies, "the registry created between two watches")

    # A new listing deletes what it no longer holds (the path taken after "410 Gone").
    cluster.delete_registry("second")
    await watcher.relist()
    assert second in seen.deleted and second not in seen.bodies


async def test_a_failing_listing_is_reported_in_one_line_and_retried(session: ApiSession) -> None:
    missing = replace(REGISTRIES, path="/apis/chaosregistry.io/v1alpha1/nosuchresources")
    watcher = Watcher(session, missing, lambda body: None, lambda name: None, tuple)
    async with running(watcher):
        await until(lambda: watcher.last_error is not None, "the error")
        assert watcher.last_error == "HTTP 404: 404 page not found"
        assert not watcher.synced.is_set()


async def test_an_object_the_state_cannot_take_is_skipped_and_the_watch_goes_on(
    session: ApiSession, cluster: Cluster
) -> None:
    seen = Seen()
    spec = {"registry": {"server": "mirror.example.com"}}
    bad = cluster.registry("bad", spec)["metadata"]["name"]

    def upsert(body: Any) -> None:
        if body["metadata"]["name"] == bad:
            raise ValueError("cannot take this one")
        seen.upsert(body)

    watcher = Watcher(session, REGISTRIES, upsert, seen.delete, seen.bodies.keys)
    async with running(watcher):
        await asyncio.wait_for(watcher.synced.wait(), 10)
        good = cluster.registry("good", spec)["metadata"]["name"]
        await until(lambda: good in seen.bodies, "the registry after the one that failed")
        assert bad not in seen.bodies
        assert watcher.last_error is None


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "in pages"])
async def test_a_listing_delivers_every_object_once_and_deletes_what_it_lacks(
    session: ApiSession, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    # Pages of 2 when paged, the next one requested while the current one is delivered.
    monkeypatch.setattr("webhook.service.kube.watch.LIST_PAGE_SIZE", 2)
    spec = {"registry": {"server": "mirror.example.com"}}
    names = [cluster.registry(f"listed-{i}", spec)["metadata"]["name"] for i in range(7)]
    delivered: list[str] = []
    removed: list[str] = []
    gone = f"{cluster.account}-gone"  # held by the receiver, no longer in the cluster

    def upsert(body: Any) -> None:
        delivered.append(body["metadata"]["name"])

    watcher = Watcher(session, REGISTRIES, upsert, removed.append, lambda: [*delivered, gone])
    watcher.streams_lists = None if streamed else False
    await watcher.relist()
    assert watcher.streams_lists is streamed  # the test apiserver (1.35) streams lists
    assert watcher.synced.is_set() and watcher.resource_version
    mine = [name for name in delivered if name in names]
    assert sorted(mine) == sorted(names)
    assert len(delivered) == len(set(delivered))  # each once
    assert removed == [gone]
    # The watch resumes from the listing's resourceVersion: a later change arrives.
    later = cluster.registry("listed-later", spec)["metadata"]["name"]
    async with running(watcher):
        await until(lambda: later in delivered, "the registry created after the listing")


async def test_a_listing_refused_for_now_is_streamed_once_the_apiserver_answers(
    control_plane: ControlPlane, session: ApiSession, cluster: Cluster
) -> None:
    # An apiserver being restarted refuses connections (and may answer 429 while its caches fill,
    # which a test this small rarely sees): a listing that failed that way says nothing of the
    # stream, which must be tried again (read in pages from etcd instead, 100,000 registries took
    # 40-57 s against 9-12 s streamed).
    name = cluster.registry("restarted", {"registry": {"server": "mirror.example.com"}})["metadata"]["name"]
    seen = Seen()
    watcher = Watcher(session, REGISTRIES, seen.upsert, seen.delete, seen.bodies.keys)
    await asyncio.to_thread(control_plane.stop_apiserver, 3.0)
    stopped = True
    try:
        async with running(watcher):
            await until(lambda: watcher.last_error is not None, "a listing refused", timeout=20)
            await asyncio.to_thread(control_plane.start_apiserver)
            stopped = False
            await until(watcher.synced.is_set, "the listing once the apiserver is back", timeout=60)
            assert watcher.streams_lists is True
            assert name in seen.bodies
    finally:
        if stopped:
            await asyncio.to_thread(control_plane.start_apiserver)

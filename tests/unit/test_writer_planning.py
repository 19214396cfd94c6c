"""The write side's planning, without an API server: which statuses it compares with, when a round
is skipped, which copies it plans and records, and how failures are logged.

The writes themselves (status patches, Secret copies, Events) are tested against the real apiserver
in tests/e2e/service (test_status.py, test_secret_copies.py, test_leader.py).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest
from kubernetes import client

from webhook.core.models import SCOPE_LABELS
from webhook.core.status import CopyPlan, SecretCopy, SecretSources
from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState
from webhook.service.writer.copies import CopyInputs, CopyWriter, SourceSecret, intended_record
from webhook.service.writer.events import EventPoster
from webhook.service.writer.failures import FailureLog
from webhook.service.writer.record import CopiesRecord, RecordTooLarge
from webhook.service.writer.statuses import StatusWriter, canonical

NAMESPACE = "chaos-system"
OPTIONS = ServeOptions(namespace=NAMESPACE, identity="test-0")


def registry(name: str = "acme", *, status: dict[str, Any] | None = None, **registry: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": name, "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"scope": {"account": name}, "registry": {"server": "mirror.acme.corp", **registry}},
    }
    if status is not None:
        body["status"] = status
    return body


def state_with(*bodies: dict[str, Any], namespaces: dict[str, dict[str, str]] | None = None) -> ConfigState:
    state = ConfigState()
    for body in bodies:
        state.upsert_registry(body)
    for name, labels in (namespaces or {}).items():
        state.upsert_namespace(name, labels)
    state.rebuild()
    return state


def sources(state: ConfigState) -> SecretSources:
    return SecretSources.of(NAMESPACE, OPTIONS.source_namespaces, state.source_secrets)


def status_writer(state: ConfigState) -> StatusWriter:
    api = client.ApiClient()  # never called: these tests stop before any write
    return StatusWriter(state, api, FailureLog(), EventPoster(api, OPTIONS.identity, 1.0), 1.0)


def copy_writer(state: ConfigState) -> CopyWriter:
    api = client.ApiClient()
    record = CopiesRecord(api, NAMESPACE, "copies", 1.0)
    return CopyWriter(state, api, OPTIONS, record, FailureLog(), 1.0)


# Statuses --------------------------------------------------------------------------------------


async def test_plan_gives_the_desired_status_and_what_the_watch_shows() -> None:
    state = state_with(registry(status={"level": "Organization"}))
    writer = status_writer(state)
    assert state.snapshot is not None
    views, statuses = writer.plan(state.snapshot, sources(state), tuple(state.objects.values()))
    (view,) = views
    assert view.name == "acme" and view.generation == 1
    assert view.status == view.observed == {"level": "Organization"}
    assert statuses["acme"]["level"] == "Account"
    effective = next(c for c in statuses["acme"]["conditions"] if c["type"] == "Effective")
    assert effective["status"] == "True"


async def test_a_status_written_is_compared_until_the_watch_delivers_a_newer_one() -> None:
    """Between our patch and the watch event that carries it, the next round must compare with
    what was written, or it would write the same status again."""
    state = state_with(registry(status={"level": "Organization"}))
    writer = status_writer(state)
    observed = {"level": "Organization"}
    written = {"level": "Account"}
    writer.written["acme"] = (canonical(observed), canonical(written))
    assert writer.current_status("acme", observed) == written
    writer.forget_overtaken()
    assert "acme" in writer.written  # the watch still shows the status from before the write
    state.upsert_registry(registry(status=written))
    assert writer.current_status("acme", written) == written
    writer.forget_overtaken()
    assert writer.written == {}  # delivered: nothing to remember any more
    writer.written["gone"] = (canonical({}), canonical(written))
    writer.forget_overtaken()
    assert writer.written == {}  # the registry was deleted


async def test_a_round_with_the_settled_inputs_plans_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    state = state_with(registry())
    writer = status_writer(state)
    assert state.snapshot is not None
    planned: list[int] = []

    def plan(*args: Any) -> tuple[list[Any], dict[str, Any]]:
        planned.append(1)
        return [], {}

    monkeypatch.setattr(writer, "plan", plan)
    assert await writer.reconcile(state.snapshot, sources(state))
    assert planned == [1] and writer.settled is not None
    assert await writer.reconcile(state.snapshot, sources(state))
    assert planned == [1]  # same configuration, sources and registry objects: skipped
    state.upsert_registry(registry(status={"level": "Account"}))  # a new object, same spec
    assert await writer.reconcile(state.snapshot, sources(state))
    assert planned == [1, 1]


async def test_a_round_whose_planning_fails_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    state = state_with(registry())
    writer = status_writer(state)
    assert state.snapshot is not None

    def plan(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(writer, "plan", plan)
    assert not await writer.reconcile(state.snapshot, sources(state))
    assert writer.settled is None


# Copies ----------------------------------------------------------------------------------------


def private_state() -> ConfigState:
    account = {SCOPE_LABELS[0]: "acme"}
    state = state_with(
        registry(type="Private", secretName="acme-pull"),
        namespaces={
            "team-a": account,
            "team-b": account,
            "kube-system": account,
            NAMESPACE: account,
            "unbound": {},
            "other": {SCOPE_LABELS[0]: "globex"},
        },
    )
    state.set_source_secret(NAMESPACE, "acme-pull", True)
    return state


async def test_copies_go_to_bound_namespaces_never_to_kube_system_nor_the_webhooks_own() -> None:
    state = private_state()
    assert state.snapshot is not None
    plan = copy_writer(state).plan(state.snapshot, sources(state))
    assert [copy.target for copy in plan.copies] == [("team-a", "acme-pull"), ("team-b", "acme-pull")]
    assert {copy.source for copy in plan.copies} == {(NAMESPACE, "acme-pull")}


async def test_copies_go_to_unlabelled_namespaces_too_when_all_are_selected() -> None:
    state = private_state()
    assert state.snapshot is not None
    api = client.ApiClient()
    options = ServeOptions(namespace=NAMESPACE, identity="test-0", select_all_namespaces=True)
    writer = CopyWriter(state, api, options, CopiesRecord(api, NAMESPACE, "copies", 1.0), FailureLog(), 1.0)
    plan = writer.plan(state.snapshot, sources(state))
    # "unbound" gets the default account, which has no Private registry: still no copy there.
    assert [copy.namespace for copy in plan.copies] == ["team-a", "team-b"]


async def test_the_record_is_saved_with_every_copy_about_to_be_made_and_every_one_made() -> None:
    record = {("old", "acme-pull"): f"{NAMESPACE}/acme-pull"}
    desired = {
        ("team-a", "acme-pull"): SecretCopy("team-a", "acme-pull", NAMESPACE, "acme-pull"),
        ("team-b", "acme-pull"): SecretCopy("team-b", "acme-pull", NAMESPACE, "acme-pull"),
    }
    intent = intended_record(record, desired)
    assert intent == {
        ("old", "acme-pull"): f"{NAMESPACE}/acme-pull",  # deleted later, then dropped from the record
        ("team-a", "acme-pull"): f"{NAMESPACE}/acme-pull",
        ("team-b", "acme-pull"): f"{NAMESPACE}/acme-pull",
    }
    assert intent[("team-a", "acme-pull")] is intent[("team-b", "acme-pull")]  # one string per source
    assert record == {("old", "acme-pull"): f"{NAMESPACE}/acme-pull"}  # the record read is left alone


async def test_a_copies_round_is_skipped_while_nothing_changed_and_no_copy_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = private_state()
    snapshot = state.snapshot
    assert snapshot is not None
    writer = copy_writer(state)
    planned: list[int] = []

    def plan(*args: Any) -> Any:
        planned.append(1)
        raise RuntimeError("stop before any write")

    monkeypatch.setattr(writer, "plan", plan)
    writer.done = CopyInputs(snapshot.config, snapshot.namespaces, sources(state), state.source_changes)
    writer.due = math.inf
    await writer.reconcile(snapshot, sources(state))
    assert planned == []
    writer.due = time.monotonic() - 1  # a copy is due a check
    await writer.reconcile(snapshot, sources(state))
    assert planned == [1]
    writer.due = math.inf
    state.set_source_secret(NAMESPACE, "acme-pull", True, modified=True)  # its data may have changed
    await writer.reconcile(snapshot, sources(state))
    assert planned == [1, 1]


# Failures --------------------------------------------------------------------------------------


def test_a_failure_is_logged_once_until_its_text_changes_or_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = FailureLog()
    with caplog.at_level(logging.INFO, logger="webhook.writer"):
        failures.failed("Secret copy a/b", "cannot write Secret copy a/b: 403 Forbidden")
        failures.failed("Secret copy a/b", "cannot write Secret copy a/b: 403 Forbidden")
        failures.failed("Secret copy a/b", "cannot write Secret copy a/b: 500 InternalError")
        failures.succeeded("Secret copy a/b")
        failures.succeeded("Secret copy a/b")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cannot write Secret copy a/b: 403 Forbidden (retrying every round)",
        "cannot write Secret copy a/b: 500 InternalError (retrying every round)",
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["Secret copy a/b: succeeded after earlier failures"]
    assert failures.count == 3


def test_the_loop_starts_each_leadership_with_nothing_cached() -> None:
    from webhook.service.writer import Writer

    state = private_state()
    writer = Writer(state, client.ApiClient(), OPTIONS)
    writer.statuses.written["acme"] = ("{}", "{}")
    writer.copies.verified[("team-a", "acme-pull")] = ("hash", math.inf)
    writer.record.entries = {}
    writer.failures.failed("x", "cannot do x")
    writer._reset()
    assert writer.statuses.written == {} and writer.statuses.settled is None
    assert writer.copies.verified == {} and writer.copies.done is None
    assert writer.record.entries is None  # read again: another leader may have written it
    assert writer.failures.count == 0


async def test_a_round_makes_the_copies_before_it_writes_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods cannot pull without their copy; a status can wait (at 100,000 registries a first round
    of statuses takes minutes). A status that cannot even be computed stops nothing."""
    from webhook.service.writer import Writer

    writer = Writer(private_state(), client.ApiClient(), OPTIONS)
    calls: list[str] = []

    async def copies(snapshot: Any, sources: Any) -> None:
        calls.append("copies")

    async def statuses(snapshot: Any, sources: Any) -> bool:
        calls.append("statuses")
        return False

    monkeypatch.setattr(writer.copies, "reconcile", copies)
    monkeypatch.setattr(writer.statuses, "reconcile", statuses)
    await writer.reconcile()
    await writer.reconcile()
    assert calls == ["copies", "statuses", "copies", "statuses"]


class RecordedEvents:
    """The EventPoster's ConfigMap side, kept in a list (the real one is tested in tests/e2e)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    async def post_about_configmap(self, namespace: str, name: str, reason: str, message: str) -> None:
        self.posted.append((f"{namespace}/{name}", reason, message))


async def test_copies_the_record_cannot_hold_are_not_made_and_an_event_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = private_state()
    writer = copy_writer(state)
    events = RecordedEvents()
    writer.events = events  # type: ignore[assignment]
    source = f"{NAMESPACE}/acme-pull"
    writer.record.entries = {("team-a", "acme-pull"): source, ("gone", "acme-pull"): source}

    def save(entries: Any) -> None:
        if ("team-b", "acme-pull") in entries:
            raise RecordTooLarge(2_000_000)
        writer.record.entries = dict(entries)

    written: list[tuple[str, str]] = []
    deleted: list[tuple[str, str]] = []
    monkeypatch.setattr(writer.record, "save", save)
    monkeypatch.setattr(writer, "_read_source", lambda ns, name: SourceSecret.of("Opaque", {"k": "dg=="}))
    monkeypatch.setattr(writer, "_write_copy", lambda copy, secret: written.append(copy.target) or "created")
    monkeypatch.setattr(writer, "_delete_copy", lambda target: deleted.append(target) or True)
    plan = CopyPlan(
        copies=(
            SecretCopy("team-a", "acme-pull", NAMESPACE, "acme-pull"),
            SecretCopy("team-b", "acme-pull", NAMESPACE, "acme-pull"),
        ),
        skipped=(),
    )
    monkeypatch.setattr(writer.record, "load", lambda: setattr(writer.record, "entries", loaded))
    loaded = {("team-a", "acme-pull"): source}
    await writer._sync(plan)
    assert writer.record.entries is None  # full: read again next round (someone may make room)
    await writer._sync(plan)
    assert written == [("team-a", "acme-pull")]  # recorded: kept current; team-b: never made
    assert deleted == [("gone", "acme-pull")]  # stale ones still go, and the smaller record is saved
    assert writer.record.entries is None
    assert len(events.posted) == 1  # once, not every round
    where, reason, message = events.posted[0]
    assert (where, reason) == (f"{NAMESPACE}/copies", "CopiesRecordFull")
    assert "cannot record 1 new Secret copies in ConfigMap chaos-system/copies" in message
    assert "2,000,000 bytes" in message

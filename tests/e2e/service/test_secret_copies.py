"""Pull secrets reach the pod's namespace (docs/contract.md#pull-secret-copies): the write side
copies the source Secret
into every namespace bound to a Private scope, keeps the copy in sync, removes it when no longer
needed, reports a missing source, and never lets Secret contents reach a log or an Event.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from controlplane.webhook import WebhookProcess
from tests.e2e.service.conftest import WEBHOOK_NAMESPACE, Cluster, wait_for
from tests.reliability import figures
from webhook.service.writer.record import (
    COMPRESSED_KEY,
    GROUPED_KEY,
    LEGACY_KEY,
    MAX_CONFIGMAP_DATA_BYTES,
    data_size,
    pack,
    read_data,
    record_text,
)

TIMEOUT = 20.0
MANAGED_BY = "app.kubernetes.io/managed-by"
COPIES_CONFIGMAP = "chaos-registry-webhook-copies"
SECTION = "copies record"


class Sources:
    """Source Secrets in the webhook's namespace, each with a unique password; deleted afterwards."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names: list[str] = []
        self.passwords: list[str] = []
        self.values: list[str] = []

    def docker_config(self, password: str) -> dict[str, str]:
        auth = base64.b64encode(f"robot:{password}".encode()).decode()
        config = {"auths": {"registry.acme.corp": {"username": "robot", "password": password, "auth": auth}}}
        value = base64.b64encode(json.dumps(config).encode()).decode()
        self.values.extend((value, auth))
        return {".dockerconfigjson": value}

    def password(self) -> str:
        value = f"s3cret-{secrets.token_hex(12)}"
        self.passwords.append(value)
        return value

    def create(self, name: str) -> dict[str, str]:
        data = self.docker_config(self.password())
        self.cluster.core.create_namespaced_secret(
            WEBHOOK_NAMESPACE,
            {"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson", "data": data},
        )
        self.names.append(name)
        return data

    def update(self, name: str) -> dict[str, str]:
        data = self.docker_config(self.password())
        self.cluster.core.patch_namespaced_secret(name, WEBHOOK_NAMESPACE, {"data": data})
        return data

    def delete_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.cluster.core.delete_namespaced_secret(name, WEBHOOK_NAMESPACE)


@pytest.fixture
def sources(cluster: Cluster) -> Iterator[Sources]:
    helper = Sources(cluster)
    try:
        yield helper
    finally:
        helper.delete_all()


def read_secret(cluster: Cluster, namespace: str, name: str) -> Any | None:
    try:
        return cluster.core.read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise


def wait_copy(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> Any:
    """Wait until namespace/name holds exactly `data`; return the copy."""

    def current() -> Any | None:
        secret = read_secret(cluster, namespace, name)
        return secret if secret is not None and dict(secret.data or {}) == data else None

    return wait_for(
        current, timeout=TIMEOUT, interval=0.2, what=f"Secret {namespace}/{name} with the source's data"
    )


def wait_gone(cluster: Cluster, namespace: str, name: str) -> None:
    wait_for(
        lambda: read_secret(cluster, namespace, name) is None,
        timeout=TIMEOUT,
        interval=0.2,
        what=f"Secret {namespace}/{name} to be deleted",
    )


def condition(cluster: Cluster, registry: str, type_: str) -> dict[str, Any] | None:
    status = cluster.get_registry(registry).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}.get(type_)


def wait_condition(cluster: Cluster, registry: str, type_: str, value: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = condition(cluster, registry, type_)
        return found if found is not None and found["status"] == value else None

    return wait_for(check, timeout=TIMEOUT, interval=0.2, what=f"{registry}: {type_}={value}")


def private(secret_name: str, **extra: str) -> dict[str, Any]:
    return {
        "registry": {"server": "registry.acme.corp", "type": "Private", "secretName": secret_name, **extra}
    }


def test_copy_follows_source_binding_and_type(cluster: Cluster, sources: Sources) -> None:
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", {**private(secret), "allowOverrides": True})
    bound = cluster.namespace("retail")
    other = cluster.namespace("retail", "payments")

    copy = wait_copy(cluster, bound, secret, data)
    assert copy.type == "kubernetes.io/dockerconfigjson"
    assert copy.metadata.labels[MANAGED_BY] == "chaos-registry-webhook"
    assert copy.metadata.labels["chaosregistry.io/source"] == f"{WEBHOOK_NAMESPACE}.{secret}"
    assert copy.metadata.annotations["chaosregistry.io/source"] == f"{WEBHOOK_NAMESPACE}/{secret}"
    wait_copy(cluster, other, secret, data)
    wait_condition(cluster, "root", "SecretMissing", "False")

    # The copies are recorded by name (no contents) in the webhook's ConfigMap.
    record = cluster.core.read_namespaced_config_map(COPIES_CONFIGMAP, WEBHOOK_NAMESPACE)
    recorded = json.loads(record.data[GROUPED_KEY])
    assert bound in recorded[f"{WEBHOOK_NAMESPACE}/{secret}"]
    # ...and, for a rollback, in the first release's format, which that release reads.
    assert (bound, secret) in first_release_reader(record.data.get(LEGACY_KEY))

    # The source changes: the copies follow.
    new_data = sources.update(secret)
    wait_copy(cluster, bound, secret, new_data)
    wait_copy(cluster, other, secret, new_data)

    # The namespace loses its binding (account label removed): its copy goes, the other stays.
    cluster.core.patch_namespace(bound, {"metadata": {"labels": {"chaosregistry.io/account": None}}})
    wait_gone(cluster, bound, secret)
    assert read_secret(cluster, other, secret) is not None

    # A project-level registry turns the other namespace's scope Public: that copy goes too.
    cluster.registry("payments", {"registry": {"type": "Public"}}, scope=("retail", "payments"))
    wait_gone(cluster, other, secret)

    def unrecorded() -> bool:
        data = cluster.core.read_namespaced_config_map(COPIES_CONFIGMAP, WEBHOOK_NAMESPACE).data
        recorded = json.loads(data[GROUPED_KEY])
        return not [n for targets in recorded.values() for n in targets if n in (bound, other)]

    wait_for(unrecorded, timeout=TIMEOUT, what="the record to forget the deleted copies")


def test_registry_turning_public_removes_copies(cluster: Cluster, sources: Sources) -> None:
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", private(secret))
    team = cluster.namespace()
    wait_copy(cluster, team, secret, data)

    cluster.patch_registry("root", {"spec": {"registry": {"type": "Public", "secretName": None}}})
    wait_gone(cluster, team, secret)


def test_a_copy_deleted_by_hand_comes_back_at_the_next_check(cluster: Cluster, sources: Sources) -> None:
    # The session webhook resyncs every 2 s, so each copy is checked again within 10-20 s; rounds
    # in between do nothing for copies when nothing they depend on has changed.
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", private(secret))
    team = cluster.namespace()
    wait_copy(cluster, team, secret, data)

    cluster.core.delete_namespaced_secret(secret, team)
    wait_gone(cluster, team, secret)
    restored = wait_for(
        lambda: read_secret(cluster, team, secret), timeout=30, interval=0.5, what="the copy restored"
    )
    assert restored.data == data


def test_secret_missing_until_the_source_exists(cluster: Cluster, sources: Sources) -> None:
    secret = f"{cluster.account}-later"
    cluster.registry("root", private(secret))
    team = cluster.namespace()

    missing = wait_condition(cluster, "root", "SecretMissing", "True")
    assert missing["reason"] == "SecretNotFound"
    assert f"Secret {WEBHOOK_NAMESPACE}/{secret} does not exist" in missing["message"]
    assert read_secret(cluster, team, secret) is None

    data = sources.create(secret)
    found = wait_condition(cluster, "root", "SecretMissing", "False")
    assert found["reason"] == "SecretFound"
    wait_copy(cluster, team, secret, data)

    # Deleting the source revokes the copies.
    cluster.core.delete_namespaced_secret(secret, WEBHOOK_NAMESPACE)
    wait_condition(cluster, "root", "SecretMissing", "True")
    wait_gone(cluster, team, secret)


def test_source_namespace_must_be_allowed(cluster: Cluster) -> None:
    secret = f"{cluster.account}-pull"
    # kube-public is not a --secret-source-namespace of the session webhook.
    cluster.registry("root", private(secret, secretNamespace="kube-public"))
    team = cluster.namespace()
    found = wait_condition(cluster, "root", "SecretMissing", "True")
    assert found["reason"] == "SecretNamespaceNotAllowed"
    assert found["message"] == "secretNamespace kube-public is not allowed: add it to secretSourceNamespaces"
    assert read_secret(cluster, team, secret) is None


def test_a_secret_the_webhook_did_not_make_is_left_alone(cluster: Cluster, sources: Sources) -> None:
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    team = cluster.namespace()
    own = {"token": base64.b64encode(b"the team's own").decode()}
    cluster.core.create_namespaced_secret(team, {"metadata": {"name": secret}, "data": own})
    elsewhere = cluster.namespace()
    cluster.registry("root", private(secret))
    wait_copy(cluster, elsewhere, secret, data)  # the writer has run over both namespaces
    assert dict(read_secret(cluster, team, secret).data) == own

    cluster.delete_registry("root")
    wait_gone(cluster, elsewhere, secret)
    assert dict(read_secret(cluster, team, secret).data) == own


def test_secret_contents_never_reach_logs_or_events(
    cluster: Cluster, sources: Sources, webhook: WebhookProcess
) -> None:
    """The serve log names Secrets but holds none of their contents: not the password, not its
    base64 in the `auth` field, not the Secret's data value; nor does any Event."""
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", private(secret))
    team = cluster.namespace()
    wait_copy(cluster, team, secret, data)
    data = sources.update(secret)
    wait_copy(cluster, team, secret, data)

    log = webhook.log_file.read_text(errors="replace")
    assert f"{cluster.account}-pull" in log  # the log does name the copies...
    events = cluster.core.list_event_for_all_namespaces().items
    texts = [log, *(e.message or "" for e in events)]
    assert len(sources.passwords) == 2
    for needle in [*sources.passwords, *sources.values]:
        for text in texts:
            assert needle not in text  # ...but never what is in them


# The copies record across versions and near its size limit ------------------------------------


def first_release_reader(text: str | None) -> dict[tuple[str, str], str]:
    """How the first release reads copies.json (its code, in substance): a list, or else nothing."""
    entries = json.loads(text) if text else []
    return {
        (e["namespace"], e["name"]): e["source"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("namespace", "name", "source"))
    }


def edit_record(cluster: Cluster, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
    """Replace the record's data as another writer would (guarded by resourceVersion, retried)."""
    edit_configmap(cluster, lambda configmap: setattr(configmap, "data", change(dict(configmap.data or {}))))


def edit_configmap(cluster: Cluster, change: Callable[[Any], None]) -> None:
    """Change the record's ConfigMap in place and replace it (guarded by resourceVersion, retried)."""
    for _ in range(20):
        configmap = cluster.core.read_namespaced_config_map(COPIES_CONFIGMAP, WEBHOOK_NAMESPACE)
        change(configmap)
        try:
            cluster.core.replace_namespaced_config_map(COPIES_CONFIGMAP, WEBHOOK_NAMESPACE, configmap)
            return
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
    raise AssertionError("the record kept changing under the test")


CHAOS_POD = "examples/pods/litmus-runner.yaml"


class ChaosPods:
    """Chaos pods created (dry run) all along a test: admission goes on whatever the writer does."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.admitted = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stored = self.cluster.create_pod(self.namespace, CHAOS_POD, dry_run=True)
            except Exception as error:  # counted: the test asserts there were none
                self.errors.append(str(error)[:200])
            else:
                if stored["spec"]["containers"][0]["image"].startswith("registry.acme.corp/"):
                    self.admitted += 1
                else:
                    self.errors.append(f"not rewritten: {stored['spec']['containers'][0]['image']}")
            time.sleep(0.05)

    def __enter__(self) -> ChaosPods:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_copy_the_first_release_recorded_after_a_rollback_is_deleted_on_roll_forward(
    cluster: Cluster, sources: Sources
) -> None:
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", private(secret))
    team = cluster.namespace()
    wait_copy(cluster, team, secret, data)

    # Rolled back, the first release made a copy (labelled as ours) that nothing wants any more
    # and, as it does, replaced the record with copies.json alone.
    stale = cluster.namespace(labels={"chaosregistry.io/account": f"{cluster.account}-elsewhere"})
    labels = {MANAGED_BY: "chaos-registry-webhook"}
    body = {"metadata": {"name": secret, "labels": labels}, "data": data}
    cluster.core.create_namespaced_secret(stale, body)

    def first_release_write(current: dict[str, str]) -> dict[str, str]:
        record = {
            (e["namespace"], e["name"]): e["source"] for e in json.loads(current.get(LEGACY_KEY) or "[]")
        }
        record[(stale, secret)] = f"{WEBHOOK_NAMESPACE}/{secret}"
        listed = [{"namespace": ns, "name": n, "source": src} for (ns, n), src in record.items()]
        return {LEGACY_KEY: json.dumps(listed)}

    with ChaosPods(cluster, team) as pods:
        edit_record(cluster, first_release_write)
        started = time.monotonic()
        # Rolled forward: the next change makes the writer save, find the record changed, read it
        # again, and delete the copy only the first release's format names.
        wait_copy(cluster, cluster.namespace(), secret, data)
        wait_gone(cluster, stale, secret)
        seconds = time.monotonic() - started
    assert read_secret(cluster, team, secret) is not None
    assert pods.errors == [] and pods.admitted > 0
    figures.record(SECTION, "rollback: stale copy deleted after (s)", round(seconds, 1))
    figures.record(SECTION, "rollback: chaos pods admitted meanwhile", pods.admitted)


def record_full_events(cluster: Cluster) -> list[Any]:
    events = kubernetes.client.EventsV1Api(cluster.api).list_namespaced_event(WEBHOOK_NAMESPACE).items
    return [e for e in events if e.reason == "CopiesRecordFull" and e.regarding.name == COPIES_CONFIGMAP]


def test_a_record_near_the_configmap_limit_makes_an_event_and_no_unrecorded_copy(
    cluster: Cluster, sources: Sources
) -> None:
    secret = f"{cluster.account}-pull"
    data = sources.create(secret)
    cluster.registry("root", private(secret))
    team = cluster.namespace()
    wait_copy(cluster, team, secret, data)
    padding_key = "test-padding.json"  # a key this release does not know: kept on every save
    events_before = len(record_full_events(cluster))

    def fill(configmap: Any) -> None:
        # The record packed, as the writer keeps it past the plain limit, and padding up to the
        # limit's last byte: whatever one more copy adds, packed or not, cannot fit.
        data, binary = dict(configmap.data or {}), dict(configmap.binary_data or {})
        packed = pack(record_text(read_data(data, binary)))
        kept = {k: v for k, v in data.items() if k not in (LEGACY_KEY, GROUPED_KEY)}
        binary[COMPRESSED_KEY] = packed
        used = data_size(kept, binary) + len(padding_key)
        configmap.data = {**kept, padding_key: "x" * (MAX_CONFIGMAP_DATA_BYTES - used)}
        configmap.binary_data = binary

    def unfill(current: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in current.items() if k != padding_key}

    try:
        with ChaosPods(cluster, team) as pods:
            edit_configmap(cluster, fill)
            later = cluster.namespace()
            started = time.monotonic()
            event = wait_for(
                lambda: record_full_events(cluster)[events_before:] or None,
                timeout=TIMEOUT,
                what="a CopiesRecordFull Event",
            )[0]
            event_seconds = time.monotonic() - started
            assert f"ConfigMap {WEBHOOK_NAMESPACE}/{COPIES_CONFIGMAP}" in event.note
            assert "over the 1,048,576 a ConfigMap holds" in event.note
            assert event.type == "Warning"
            time.sleep(5)  # two more rounds (resync 2 s): still no copy the record could not name
            assert read_secret(cluster, later, secret) is None
            assert len(record_full_events(cluster)) == events_before + 1  # posted once
            # The record is read again each round while full: room made, the copy follows.
            edit_record(cluster, unfill)
            wait_copy(cluster, later, secret, data)
        configmap = cluster.core.read_namespaced_config_map(COPIES_CONFIGMAP, WEBHOOK_NAMESPACE)
        assert later in json.loads(configmap.data[GROUPED_KEY])[f"{WEBHOOK_NAMESPACE}/{secret}"]
        assert pods.errors == [] and pods.admitted > 0
        figures.record(SECTION, "full: Event after (s)", round(event_seconds, 1))
        figures.record(SECTION, "full: chaos pods admitted meanwhile", pods.admitted)
        figures.record(SECTION, "full: Event note", event.note)
    finally:
        edit_record(cluster, unfill)

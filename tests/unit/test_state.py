"""ConfigState: watched objects become snapshots; only changes admission can see rebuild the config."""

from __future__ import annotations

from typing import Any

from webhook.service import metrics
from webhook.service.state import ConfigState


def registry(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": "acme", "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"scope": {"account": "acme"}, "registry": {"server": "mirror.acme.corp"}, **spec},
    }


async def test_status_only_changes_reach_the_writer_but_rebuild_nothing() -> None:
    state = ConfigState()
    state.upsert_registry(registry())
    config = state.rebuild().config
    state.upsert_registry({**registry(), "status": {"level": "Account"}})
    assert state.objects["acme"].status == {"level": "Account"}
    assert state.rebuild().config is config  # the same compiled configuration, memo and all
    await state.wait_changed()  # and the writer was told


async def test_spec_changes_rebuild_the_configuration() -> None:
    state = ConfigState()
    state.upsert_registry(registry())
    config = state.rebuild().config
    state.upsert_registry(registry(allowOverrides=True))
    rebuilt = state.rebuild().config
    assert rebuilt is not config
    assert next(iter(rebuilt.index.entries())).allow_overrides is True


async def test_a_resource_that_turns_invalid_leaves_the_configuration() -> None:
    state = ConfigState()
    state.upsert_registry(registry())
    state.rebuild()
    broken = registry()
    broken["spec"]["registry"] = {"server": "https://mirror.acme.corp"}
    state.upsert_registry(broken)
    assert len(state.rebuild().config.index) == 0
    assert state.objects["acme"].problems


async def test_statuses_are_kept_compressed_and_read_back_whole() -> None:
    state = ConfigState()
    status = {"level": "Account", "conditions": [{"type": "Effective", "status": "True"}]}
    state.upsert_registry({**registry(), "status": status})
    kept = state.objects["acme"]
    assert len(kept.status_data) < 100  # not orjson's bytes: those hold a 4 KiB buffer each
    assert kept.status == status


async def test_statuses_given_as_mapping_views_are_kept_too() -> None:
    from types import MappingProxyType

    state = ConfigState()
    conditions = (MappingProxyType({"type": "Effective", "status": "True"}),)
    state.upsert_registry({**registry(), "status": MappingProxyType({"conditions": conditions})})
    assert state.objects["acme"].status == {"conditions": [{"type": "Effective", "status": "True"}]}


async def test_a_published_snapshot_keeps_its_namespaces_while_the_state_changes() -> None:
    state = ConfigState()
    state.upsert_namespace("team-a", {"chaosregistry.io/account": "acme"})
    state.upsert_namespace("team-b", {"chaosregistry.io/account": "acme"})
    first = state.rebuild()
    # Nothing changed: the next snapshot reads the same namespaces (the writer compares by identity).
    assert state.rebuild().namespaces is first.namespaces
    state.upsert_namespace("team-a", {"chaosregistry.io/account": "other"})
    state.delete_namespace("team-b")
    state.upsert_namespace("team-c", {})
    assert dict(first.namespaces) == {
        "team-a": {"chaosregistry.io/account": "acme"},
        "team-b": {"chaosregistry.io/account": "acme"},
    }
    second = state.rebuild()
    assert second.namespaces is not first.namespaces
    assert dict(second.namespaces) == {"team-a": {"chaosregistry.io/account": "other"}, "team-c": {}}
    assert sorted(state.namespace_names()) == ["team-a", "team-c"]


async def test_a_new_configuration_forgets_what_the_old_one_resolved_namespaces_to() -> None:
    state = ConfigState()
    state.upsert_registry(registry())
    state.upsert_namespace("team-a", {"chaosregistry.io/account": "acme"})
    snapshot = state.rebuild()
    pod = {
        "metadata": {"labels": {"ddcr.app/name": "chaos-ddcr"}},
        "spec": {"containers": [{"name": "runner", "image": "docker.io/harness/chaos-ddcr:1.47.0"}]},
    }
    assert snapshot.admit(pod, "team-a").patch[0]["value"] == "mirror.acme.corp/harness/chaos-ddcr:1.47.0"
    record = snapshot.namespaces["team-a"]
    assert record.resolved is not None  # type: ignore[attr-defined]
    # Kept, the old configuration's Rewriter (and all it caches) would outlive it.
    state.upsert_registry(registry(registry={"server": "mirror.example.net"}))
    rebuilt = state.rebuild()
    assert record.resolved is None  # type: ignore[attr-defined]
    assert rebuilt.admit(pod, "team-a").patch[0]["value"] == "mirror.example.net/harness/chaos-ddcr:1.47.0"


async def test_only_our_namespace_labels_are_kept() -> None:
    state = ConfigState()
    labels = {
        "chaosregistry.io/account": "acme",
        "chaosregistry.io/inject": "false",
        "kubernetes.io/metadata.name": "team-a",
        "istio-injection": "enabled",
    }
    state.upsert_namespace("team-a", labels)
    snapshot = state.rebuild()
    assert snapshot.namespaces["team-a"] == {
        "chaosregistry.io/account": "acme",
        "chaosregistry.io/inject": "false",
    }
    state.upsert_namespace("team-a", {**labels, "istio-injection": "disabled"})
    assert state.rebuild().namespaces["team-a"] == snapshot.namespaces["team-a"]


def gauge(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name)


def named(name: str, created: str, scope: dict[str, str], **spec: Any) -> dict[str, Any]:
    body = registry(scope=scope, **spec)
    body["metadata"] = {**body["metadata"], "name": name, "creationTimestamp": created}
    return body


async def test_blocked_and_conflicting_resources_are_counted_per_configuration() -> None:
    state = ConfigState()
    state.upsert_registry(named("acme", "2024-01-01T00:00:00Z", {"account": "acme"}, allowOverrides=False))
    state.upsert_registry(named("team", "2024-01-01T00:00:00Z", {"account": "acme", "organization": "o"}))
    state.upsert_registry(named("late", "2024-02-01T00:00:00Z", {"account": "acme", "organization": "o"}))
    state.rebuild()
    assert gauge("chaos_registry_blocked_resources") == 2  # team and late, under acme's lock
    assert gauge("chaos_registry_conflicting_resources") == 1  # late: team is older at its scope
    state.delete_registry("late")
    state.rebuild()
    assert gauge("chaos_registry_blocked_resources") == 1
    assert gauge("chaos_registry_conflicting_resources") == 0

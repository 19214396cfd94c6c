"""Status written by the webhook's write side behind the real apiserver
(docs/contract.md#the-chaosimageregistry-resource).

The session `webhook` replica holds the Lease and resyncs every 2 s; each test uses its own
account, so its registries resolve only among themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster, wait_for

TIMEOUT = 20.0


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get_registry(name).get("status") or {}
    return result


def conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status(cluster, name).get("conditions") or []}


def wait_status(
    cluster: Cluster, name: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the registry's status until `check` holds; return that status."""

    def ready() -> dict[str, Any] | None:
        current = status(cluster, name)
        return current if current and check(current) else None

    return wait_for(ready, timeout=TIMEOUT, interval=0.2, what=f"{cluster.account}-{name}: {what}")


def condition_is(type_: str, value: str, reason: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(current: dict[str, Any]) -> bool:
        found = {c["type"]: c for c in current.get("conditions") or []}.get(type_)
        return (
            found is not None and found["status"] == value and (reason is None or found["reason"] == reason)
        )

    return check


def events_for(cluster: Cluster, full_name: str) -> list[Any]:
    result = cluster.core.list_namespaced_event("default", field_selector=f"involvedObject.name={full_name}")
    return list(result.items)


def test_status_across_the_four_levels(cluster: Cluster) -> None:
    account = cluster.account
    cluster.registry("acct", {"registry": {"server": "acct.example.com"}, "allowOverrides": True})
    cluster.registry("org", {"registry": {"server": "org.example.com"}}, scope=("retail",))
    cluster.registry("proj", {"registry": {"server": "proj.example.com"}}, scope=("retail", "payments"))
    cluster.registry("infra", {"registry": {"type": "Public"}}, scope=("retail", "payments", "prod"))

    expected = {
        "acct": ("Account", account, "acct.example.com"),
        "org": ("Organization", f"{account}/retail", "org.example.com"),
        "proj": ("Project", f"{account}/retail/payments", "org.example.com"),
        "infra": ("Infrastructure", f"{account}/retail/payments/prod", "org.example.com"),
    }
    for name, (level, scope, server) in expected.items():
        current = wait_status(
            cluster, name, lambda s: len(s.get("conditions") or []) == 4, "all four conditions"
        )
        assert (current["level"], current["scope"], current["effectiveServer"], current["effectiveType"]) == (
            level,
            scope,
            server,
            "Public",
        )
        assert current["observedGeneration"] == 1

    for name in ("acct", "org"):
        found = conditions(cluster, name)
        assert (found["Effective"]["status"], found["Effective"]["reason"]) == ("True", "Applied")
        assert found["Blocked"]["status"] == "False"
    blocker = f"{account}-org"
    for name in ("proj", "infra"):
        found = conditions(cluster, name)
        assert (found["Effective"]["status"], found["Effective"]["reason"]) == ("False", "Blocked")
        assert found["Blocked"]["status"] == "True"
        assert found["Blocked"]["message"] == (
            f"a higher scope is blocking this configuration: ChaosImageRegistry {blocker} at organization "
            f"{account}/retail has allowOverrides false; "
            f"please enable override from organization {account}/retail"
        )
        assert found["Conflicting"]["status"] == "False"
        assert found["SecretMissing"]["status"] == "False"
        for condition in found.values():
            assert condition["lastTransitionTime"].endswith("Z")
            assert condition["observedGeneration"] == 1


def test_kubectl_get_shows_level_scope_server_type_and_blocked(
    cluster: Cluster, control_plane: ControlPlane
) -> None:
    account = cluster.account
    cluster.registry("root", {"registry": {"server": "root.example.com", "type": "Public"}})
    cluster.registry(
        "team",
        {"registry": {"server": "team.example.com", "type": "Private", "secretName": "x"}},
        scope=("retail",),
    )
    wait_status(cluster, "team", condition_is("Blocked", "True"), "Blocked")
    wait_status(cluster, "root", condition_is("Blocked", "False"), "not Blocked")

    output = control_plane.kubectl("get", "cir", f"{account}-root", f"{account}-team").stdout
    header, *rows = output.strip().splitlines()
    assert header.split()[:8] == ["NAME", "LEVEL", "SCOPE", "SERVER", "TYPE", "BLOCKED", "IMAGES", "AGE"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table[f"{account}-root"][1:6] == ["Account", account, "root.example.com", "Public", "False"]
    # Server and type are what is in effect for the scope (status), not the spec's own: the blocked
    # team registry's scope gets root's; Blocked comes from the condition.
    assert table[f"{account}-team"][1:6] == [
        "Organization",
        f"{account}/retail",
        "root.example.com",
        "Public",
        "True",
    ]


def test_conflicting_names_the_older_winner(cluster: Cluster) -> None:
    account = cluster.account
    # Created in this order within the same second, so the tie is broken by name: "a-first" wins.
    cluster.registry("a-first", {"registry": {"server": "first.example.com"}, "allowOverrides": True})
    cluster.registry("b-second", {"registry": {"server": "second.example.com"}, "allowOverrides": True})

    loser = wait_status(
        cluster, "b-second", condition_is("Conflicting", "True", "OlderResourceWins"), "Conflicting"
    )
    found = {c["type"]: c for c in loser["conditions"]}
    assert (
        f"ChaosImageRegistry {account}-a-first has the same scope {account}"
        in found["Conflicting"]["message"]
    )
    assert (found["Effective"]["status"], found["Effective"]["reason"]) == ("False", "Conflicting")
    assert loser["effectiveServer"] == "first.example.com"
    winner = wait_status(cluster, "a-first", condition_is("Effective", "True"), "Effective")
    assert {c["type"]: c["status"] for c in winner["conditions"]}["Conflicting"] == "False"

    # The winner goes: the other one takes over and its Conflicting condition clears.
    cluster.delete_registry("a-first")
    now_winner = wait_status(cluster, "b-second", condition_is("Effective", "True", "Applied"), "Effective")
    assert now_winner["effectiveServer"] == "second.example.com"
    assert condition_is("Conflicting", "False")(now_winner)


def test_observed_generation_follows_spec_changes(cluster: Cluster) -> None:
    cluster.registry("root", {"registry": {"server": "one.example.com"}})
    first = wait_status(cluster, "root", lambda s: s.get("observedGeneration") == 1, "observedGeneration 1")
    assert first["effectiveServer"] == "one.example.com"
    effective_since = {c["type"]: c["lastTransitionTime"] for c in first["conditions"]}

    cluster.patch_registry("root", {"spec": {"registry": {"server": "two.example.com"}}})
    assert cluster.get_registry("root")["metadata"]["generation"] == 2
    second = wait_status(
        cluster,
        "root",
        lambda s: s.get("observedGeneration") == 2 and s.get("effectiveServer") == "two.example.com",
        "observedGeneration 2",
    )
    assert {c["observedGeneration"] for c in second["conditions"]} == {2}
    # Nothing changed state: every condition keeps its transition time.
    assert {c["type"]: c["lastTransitionTime"] for c in second["conditions"]} == effective_since

    # Locking the account blocks a new organization resource; unlocking clears it again.
    cluster.registry("org", {"registry": {"server": "org.example.com"}}, scope=("retail",))
    wait_status(cluster, "org", condition_is("Blocked", "True"), "Blocked")
    cluster.patch_registry("root", {"spec": {"allowOverrides": True}})
    cleared = wait_status(cluster, "org", condition_is("Blocked", "False"), "Blocked cleared")
    assert condition_is("Effective", "True")(cleared)
    assert wait_status(cluster, "root", lambda s: s.get("observedGeneration") == 3, "observedGeneration 3")


def test_event_posted_when_blocked(cluster: Cluster) -> None:
    account = cluster.account
    cluster.registry("root", {"registry": {"server": "root.example.com"}})
    cluster.registry("team", {"registry": {"server": "team.example.com"}}, scope=("retail",))
    wait_status(cluster, "team", condition_is("Blocked", "True"), "Blocked")

    def blocked_events() -> list[Any]:
        return [e for e in events_for(cluster, f"{account}-team") if e.reason == "Blocked"]

    events = wait_for(blocked_events, timeout=TIMEOUT, what="a Blocked Event")
    event = events[0]
    assert event.type == "Warning"
    assert event.involved_object.kind == "ChaosImageRegistry"
    assert event.involved_object.uid == cluster.get_registry("team")["metadata"]["uid"]
    assert f"ChaosImageRegistry {account}-root at account {account}" in event.message
    # kubectl describe finds it (events of cluster-scoped objects live in "default").
    assert "Blocked" in cluster.control_plane.kubectl("describe", "cir", f"{account}-team").stdout
    # One Event per transition to True, not one per round: let two resyncs (2 s each) pass.
    time.sleep(4.5)
    assert len(blocked_events()) == 1
    assert not [e for e in events_for(cluster, f"{account}-root") if e.reason == "Blocked"]

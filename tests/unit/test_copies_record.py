"""The writer's record of Secret copies (copies.json in its ConfigMap): compact, and read back whole."""

from __future__ import annotations

import json

from webhook.service.writer.record import parse_record, record_text


def test_the_record_is_grouped_by_source_and_reads_back_the_same() -> None:
    record = {
        ("team-a", "acme-pull"): "chaos-system/acme-pull",
        ("team-b", "acme-pull"): "chaos-system/acme-pull",
        ("team-c", "renamed"): "secrets/other-pull",
    }
    text = record_text(record)
    assert json.loads(text) == {
        "chaos-system/acme-pull": ["team-a", "team-b"],
        "secrets/other-pull": ["team-c/renamed"],
    }
    assert parse_record(text) == record


def test_ten_thousand_copies_fit_a_configmap_with_room_to_spare() -> None:
    record = {
        (f"bench-a{i // 40}-o{i % 3}-p{i % 9}-i{i % 27}-{i}", "acme-pull"): "chaos-system/acme-pull"
        for i in range(10_000)
    }
    assert len(record_text(record).encode()) < 400_000  # a ConfigMap holds at most 1 MiB


def test_the_first_format_is_still_read() -> None:
    text = json.dumps([{"namespace": "team-a", "name": "acme-pull", "source": "chaos-system/acme-pull"}])
    assert parse_record(text) == {("team-a", "acme-pull"): "chaos-system/acme-pull"}


def test_what_does_not_parse_is_dropped_not_guessed() -> None:
    assert parse_record("{not json") == {}
    assert parse_record(json.dumps({"no-slash": ["team-a"], "ns/name": "not a list"})) == {}
    assert parse_record(json.dumps({"ns/name": ["", 7, "team-a"]})) == {("team-a", "name"): "ns/name"}

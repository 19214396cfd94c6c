"""The writer's record of Secret copies (copies.json in its ConfigMap): compact, and read back whole."""

from __future__ import annotations

import base64
import gzip
import json
import random
import string

import pytest

from webhook.service.writer import record as record_module
from webhook.service.writer.record import (
    COMPRESSED_KEY,
    GROUPED_KEY,
    LEGACY_KEY,
    MAX_CONFIGMAP_DATA_BYTES,
    RecordTooLarge,
    data_size,
    legacy_record_text,
    pack,
    parse_record,
    read_data,
    record_data,
    record_text,
    unpack,
)


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


def previous_release_reader(text: str | None) -> dict[tuple[str, str], str]:
    """How the first release reads copies.json (its code, in substance): a list, or else nothing."""
    entries = json.loads(text) if text else []
    return {
        (e["namespace"], e["name"]): e["source"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("namespace", "name", "source"))
    }


RECORD = {
    ("team-a", "acme-pull"): "chaos-system/acme-pull",
    ("team-b", "acme-pull"): "chaos-system/acme-pull",
    ("team-c", "renamed"): "secrets/other-pull",
}


def test_the_first_release_reads_every_copy_after_a_rollback() -> None:
    saved = record_data(RECORD, {})
    data = saved.data
    assert saved.left_out == () and saved.binary == {}
    assert previous_release_reader(data[LEGACY_KEY]) == RECORD
    assert parse_record(data[GROUPED_KEY]) == RECORD
    assert read_data(data) == RECORD


def test_both_keys_are_read_whichever_release_wrote_last() -> None:
    # The first release, after a rollback, rewrote copies.json alone (and a stale v2 may remain).
    first = {("team-d", "acme-pull"): "chaos-system/acme-pull"}
    data = {GROUPED_KEY: record_text(RECORD), LEGACY_KEY: legacy_record_text(first)}
    assert read_data(data) == {**RECORD, **first}
    # The format of copies.json written by the release before this one (grouped, one key).
    assert read_data({LEGACY_KEY: record_text(RECORD)}) == RECORD


def test_keys_of_a_later_release_are_kept_on_save() -> None:
    later_binary = {"copies.v3.bin": base64.b64encode(b"later").decode()}
    saved = record_data(RECORD, {"copies.v3.json": "[]"}, later_binary)
    assert saved.data["copies.v3.json"] == "[]"
    assert saved.binary == later_binary


def big_record(count: int) -> dict[tuple[str, str], str]:
    return {(f"bench-team-{i:06d}", "acme-pull"): "chaos-system/acme-pull" for i in range(count)}


def test_both_formats_are_kept_up_to_about_9500_copies() -> None:
    saved = record_data(big_record(9_000), {})
    assert saved.left_out == () and set(saved.data) == {GROUPED_KEY, LEGACY_KEY}


def test_near_the_limit_the_first_release_format_is_left_out() -> None:
    saved = record_data(big_record(10_000), {})
    assert saved.left_out == (LEGACY_KEY,) and set(saved.data) == {GROUPED_KEY} and saved.binary == {}
    assert data_size(saved.data) <= MAX_CONFIGMAP_DATA_BYTES


def test_past_the_plain_limit_the_record_is_kept_gzipped_and_reads_back_whole() -> None:
    # 100,000 bound namespaces, a fifth under a Private registry, its copies in 52,500 of them.
    record = big_record(52_500)
    saved = record_data(record, {})
    assert saved.left_out == (GROUPED_KEY, LEGACY_KEY)
    assert set(saved.data) == set() and set(saved.binary) == {COMPRESSED_KEY}
    assert len(base64.b64decode(saved.binary[COMPRESSED_KEY])) < MAX_CONFIGMAP_DATA_BYTES // 4
    assert read_data(saved.data, saved.binary) == record
    assert previous_release_reader(saved.data.get(LEGACY_KEY)) == {}, "what a rollback would not see"


def test_beyond_what_even_gzip_fits_nothing_is_saved() -> None:
    names = random.Random(7)
    letters = string.ascii_letters + string.digits
    record = {
        ("".join(names.choices(letters, k=40)), "acme-pull"): "chaos-system/acme-pull" for _ in range(60_000)
    }
    with pytest.raises(RecordTooLarge, match=r"over the 1,048,576 a ConfigMap holds"):
        record_data(record, {})


def test_every_key_is_read_plain_or_packed() -> None:
    packed = {("team-e", "acme-pull"): "chaos-system/acme-pull"}
    data = {GROUPED_KEY: record_text(RECORD)}
    assert read_data(data, {COMPRESSED_KEY: pack(record_text(packed))}) == {**RECORD, **packed}


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        base64.b64encode(b"not gzip").decode(),
        base64.b64encode(gzip.compress(b"\xff\xfe not text")).decode(),
        base64.b64encode(gzip.compress(b"[]")[:-6]).decode(),  # cut short
        base64.b64encode(gzip.compress(b"[]") + gzip.compress(b"{}")).decode(),  # followed by more
    ],
)
def test_a_packed_record_that_does_not_unpack_is_read_as_empty(value: str) -> None:
    assert unpack(value) is None
    assert read_data({GROUPED_KEY: record_text(RECORD)}, {COMPRESSED_KEY: value}) == RECORD


def test_a_packed_record_that_unpacks_to_too_much_is_read_as_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_module, "MAX_RECORD_TEXT_BYTES", 1_000)
    assert unpack(pack(record_text(big_record(100)))) is None
    assert unpack(pack(record_text(RECORD))) == record_text(RECORD)

"""The protobuf watch events of object metadata (webhook/service/kube/protobuf.py), from bytes laid
out as the apiserver writes them; tests/e2e/service/test_watch.py reads the real apiserver's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.service.kube import protobuf
from webhook.service.kube.errors import describe_response
from webhook.service.kube.protobuf import ProtobufError, decode_event, decode_status, frames
from webhook.service.kube.watch import NAMESPACES, Expired, Watcher, WatchError


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def number_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def entry(key: str, value: str) -> bytes:
    return field(1, key) + field(2, value)


def envelope(kind: str, raw: bytes, api_version: str = "meta.k8s.io/v1") -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def event(event_type: str, kind: str, raw: bytes) -> bytes:
    return field(1, event_type) + field(2, field(1, envelope(kind, raw)))


def object_meta(name: str, version: str, labels: dict[str, str], annotations: dict[str, str]) -> bytes:
    """Every kind of field ObjectMeta has, in its field order, around the four that are read."""
    managed = field(1, "kubectl") + field(2, "Update") + field(7, field(1, '{"f:metadata":{}}'))
    return (
        field(1, name)
        + field(2, "")
        + field(5, "5f69e249-cc89-44fa-b83f-adf810e0edb5")  # uid
        + field(6, version)
        + number_field(7, 3)  # generation
        + field(8, number_field(1, 1_795_000_000) + number_field(2, 0))  # creationTimestamp
        + b"".join(field(11, entry(key, value)) for key, value in labels.items())
        + b"".join(field(12, entry(key, value)) for key, value in annotations.items())
        + field(14, "example.com/finalizer")
        + field(17, managed)  # managedFields: a two-byte tag
    )


def namespace_event(
    event_type: str = "ADDED",
    name: str = "team-a",
    version: str = "42",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    meta = object_meta(name, version, labels or {}, annotations or {})
    return event(event_type, "PartialObjectMetadata", field(1, meta))


def status(code: int, reason: str, message: str) -> bytes:
    return field(1, b"") + field(2, "Failure") + field(3, message) + field(4, reason) + number_field(6, code)


def test_an_event_reads_as_its_json_counterpart() -> None:
    labels = {"chaosregistry.io/account": "acme", "kubernetes.io/metadata.name": "team-a"}
    decoded = decode_event(namespace_event(labels=labels, annotations={"note": "x"}))
    assert decoded == {
        "type": "ADDED",
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {
                "name": "team-a",
                "resourceVersion": "42",
                "labels": labels,
                "annotations": {"note": "x"},
            },
        },
    }


def test_long_strings_and_entries_written_in_another_order_are_read() -> None:
    long_value = "v" * 300  # a two-byte length, past the short-entry fast path
    swapped = field(2, "second") + field(1, "first")
    meta = field(1, "team-b") + field(11, entry("long", long_value)) + field(11, swapped) + field(6, "7")
    decoded = decode_event(event("MODIFIED", "PartialObjectMetadata", field(1, meta)))
    assert decoded["type"] == "MODIFIED"
    assert decoded["object"]["metadata"] == {
        "name": "team-b",
        "resourceVersion": "7",
        "labels": {"long": long_value, "first": "second"},
    }


def test_fixed_width_fields_are_skipped() -> None:
    meta = field(1, "team-c") + varint(9 << 3 | 1) + b"\x00" * 8 + varint(10 << 3 | 5) + b"\x00" * 4
    assert decode_event(event("ADDED", "PartialObjectMetadata", field(1, meta)))["object"]["metadata"] == {
        "name": "team-c"
    }


def test_the_bookmark_that_ends_the_initial_events_keeps_its_annotation() -> None:
    end = {"k8s.io/initial-events-end": "true"}
    bookmark = namespace_event("BOOKMARK", name="", version="900", annotations=end)
    metadata = decode_event(bookmark)["object"]["metadata"]
    assert metadata["annotations"] == end
    assert metadata["resourceVersion"] == "900"


USUAL_EVENTS = {
    "labels and annotations": namespace_event(
        labels={"chaosregistry.io/account": "acme"}, annotations={"a": "b"}
    ),
    "no labels": namespace_event("DELETED"),
    "long strings": namespace_event(
        name="n" * 200, labels={"k": "v" * 300}, annotations={"long": "w" * 20_000}
    ),
    "a namespace being deleted": event(
        "MODIFIED",
        "PartialObjectMetadata",
        field(
            1,
            object_meta("team-z", "8", {}, {})
            + field(9, number_field(1, 1_795_000_100))
            + number_field(10, 30),
        ),
    ),
    "the initial events' end": namespace_event(
        "BOOKMARK", name="", version="900", annotations={"k8s.io/initial-events-end": "true"}
    ),
}


@pytest.mark.parametrize("frame", USUAL_EVENTS.values(), ids=USUAL_EVENTS.keys())
def test_the_usual_shape_is_read_in_one_pass_as_field_by_field(frame: bytes) -> None:
    usual = protobuf._usual_event(frame)
    assert usual is not None
    assert usual == protobuf._event_by_fields(frame)


@pytest.mark.parametrize(
    "frame",
    [
        event("ERROR", "Status", status(410, "Expired", "too old")),
        event("ADDED", "Namespace", field(1, object_meta("team-a", "1", {}, {}))),
        event("ADDED", "PartialObjectMetadata", field(1, object_meta("team-a", "1", {}, {})) + field(2, "")),
        field(2, field(1, envelope("PartialObjectMetadata", field(1, b"")))) + field(1, "ADDED"),
        event("ADDED", "PartialObjectMetadata", field(1, field(1, "c") + varint(9 << 3 | 1) + b"\x00" * 8)),
        event("ADDED", "PartialObjectMetadata", field(1, field(1, "c") + field(3000, "a three-byte tag"))),
    ],
    ids=[
        "a Status",
        "another kind",
        "another field of the object",
        "fields in another order",
        "a fixed64",
        "a field past 2047",
    ],
)
def test_other_layouts_are_left_to_the_field_by_field_reader(frame: bytes) -> None:
    assert protobuf._usual_event(frame) is None
    assert decode_event(frame) == protobuf._event_by_fields(frame)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_whatever_the_usual_shape_reader_takes_reads_the_same_field_by_field(data: st.DataObject) -> None:
    frame = bytearray(data.draw(st.sampled_from(list(USUAL_EVENTS.values()))))
    for _ in range(data.draw(st.integers(0, 3))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    usual = protobuf._usual_event(bytes(frame))
    if usual is not None:
        assert usual == protobuf._event_by_fields(bytes(frame))


def test_an_error_event_carries_its_status_to_the_watch() -> None:
    watcher = Watcher(None, NAMESPACES, lambda body: None, lambda name: None, tuple)  # type: ignore[arg-type]
    gone = decode_event(event("ERROR", "Status", status(410, "Expired", "too old resource version: 5 (90)")))
    assert gone["object"] == {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 5 (90)",
    }
    with pytest.raises(Expired):
        watcher.apply_event(gone)
    failed = decode_event(event("ERROR", "Status", status(500, "InternalError", "etcd is down")))
    with pytest.raises(WatchError, match=r"^etcd is down$") as raised:
        watcher.apply_event(failed)
    assert not raised.value.for_now  # a 500 in the stream: listed again


@pytest.mark.parametrize(("seconds", "taken"), [(3, 3.0), (0, None), (-1, None)])
def test_an_error_event_in_protobuf_carries_the_wait_it_asks_for(seconds: int, taken: float | None) -> None:
    watcher = Watcher(None, NAMESPACES, lambda body: None, lambda name: None, tuple)  # type: ignore[arg-type]
    details = field(1, "namespaces") + number_field(5, seconds & (2**64 - 1))  # int32 as protobuf writes it
    slow_down = status(429, "TooManyRequests", "slow down") + field(5, details)
    with pytest.raises(WatchError) as raised:
        watcher.apply_event(decode_event(event("ERROR", "Status", slow_down)))
    assert raised.value.status == 429 and raised.value.retry_after == taken


def test_an_error_response_in_protobuf_is_read_and_anything_else_is_not() -> None:
    body = envelope("Status", status(403, "Forbidden", "namespaces is forbidden"), api_version="v1")
    assert decode_status(body) == {
        "kind": "Status",
        "code": 403,
        "reason": "Forbidden",
        "message": "namespaces is forbidden",
    }
    assert describe_response(403, body) == "HTTP 403: namespaces is forbidden"  # a watch's error line
    assert decode_status(b'{"kind": "Status"}') is None
    assert decode_status(envelope("PartialObjectMetadata", b"")) is None
    assert decode_status(b"k8s\x00\x0a\xff") is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (field(1, "ADDED") + field(2, field(1, b"{}")), "without the k8s protobuf envelope"),
        (field(1, "ADDED") + varint(2 << 3 | 3), "field 2 has wire type 3"),
        (field(1, b"\xff\xfe"), "not UTF-8"),
        (field(1, "ADDED") + b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "malformed varint"),
        (namespace_event()[:-1], "past the end"),
    ],
    ids=["no envelope", "a group", "not UTF-8", "an endless varint", "cut short"],
)
def test_malformed_frames_are_one_error_naming_the_fault(frame: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode_event(frame)


def test_every_truncation_of_an_event_is_a_protobuf_error() -> None:
    whole = namespace_event(labels={"chaosregistry.io/account": "acme"})
    for length in range(len(whole)):
        with pytest.raises(ProtobufError):
            decode_event(whole[:length])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_corruption_decodes_or_is_a_protobuf_error_never_another_exception(data: st.DataObject) -> None:
    frame = bytearray(namespace_event(labels={"chaosregistry.io/project": "p"}, annotations={"a": "b"}))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_event(bytes(frame))
    except ProtobufError:
        return
    assert isinstance(decoded["object"]["metadata"], dict)


class Chunks:
    """What `frames` reads of a response: its body in the given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def read_frames(chunks: list[bytes]) -> list[bytes]:
    stream: Any = Chunks(chunks)
    return [frame async for frame in frames(stream)]


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def test_frames_are_whole_whatever_the_chunks() -> None:
    payloads = [namespace_event(name=f"team-{i}") for i in range(3)] + [b""]
    body = b"".join(framed(payload) for payload in payloads)
    for size in (1, 3, 4, 5, 64, len(body)):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        assert await read_frames(chunks) == payloads


async def test_an_oversized_or_unfinished_frame_is_an_error() -> None:
    with pytest.raises(ProtobufError, match="at most"):
        await read_frames([(protobuf.MAX_FRAME_BYTES + 1).to_bytes(4, "big")])
    with pytest.raises(ProtobufError, match="ended within a frame"):
        await read_frames([framed(namespace_event())[:-3]])

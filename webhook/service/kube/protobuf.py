"""The watch events of object metadata in Kubernetes' protobuf encoding, read without a schema.

At 100,000 namespaces the apiserver spent 1.8-2.9 s of CPU encoding their metadata as JSON, and
0.8-0.9 s as protobuf (bench/RESULTS.md, item 32): a second or two sooner ready where the apiserver
is slower than this process, and less load on it from every replica's listing.

Only what the namespace watch reads is decoded: the event's type and, of the object's ObjectMeta,
name, resourceVersion, labels and annotations (the end-of-initial-events bookmark); of an ERROR
event's Status, code, reason, message and the wait it asks for. Everything else (managedFields
above all) is skipped by its length. An event laid out as the apiserver writes it is read in one
pass (`_usual_event`); any other layout, and anything malformed, field by field
(`_event_by_fields`), which also words every error.

The layout is Kubernetes' wire contract (k8s.io/apimachinery generated.proto and the protobuf
serializer), stated here as much as is used:

- a watch response is frames, each a 4-byte big-endian length and a `WatchEvent`
  {1: type string, 2: object RawExtension {1: raw bytes}};
- `raw` is the envelope: the 4 bytes `k8s\\0`, then `Unknown` {1: TypeMeta {1: apiVersion,
  2: kind}, 2: raw bytes (the object), 3: contentEncoding, 4: contentType};
- `PartialObjectMetadata` {1: ObjectMeta}; ObjectMeta {1: name, 6: resourceVersion,
  11: labels, 12: annotations}, each map a repeated entry {1: key, 2: value};
- `Status` {3: message, 4: reason, 5: details StatusDetails {5: retryAfterSeconds (varint)},
  6: code (varint)}.

Events come out shaped as their JSON counterparts (`{"type": ..., "object": {"metadata": ...}}`),
so the watch handles both encodings alike. Malformed input raises ProtobufError (a ValueError)
naming what was wrong; the watch then lists again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
ENVELOPE_MAGIC = b"k8s\x00"
# A larger frame is not an event of object metadata (etcd stores objects of at most 1.5 MiB by default).
MAX_FRAME_BYTES = 16 * 1024 * 1024

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """A frame that does not decode as a watch event of object metadata."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    raise ProtobufError("a malformed varint")


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message at data[pos:end];
    a varint field has its value as start and -1 as end; fixed-width fields are skipped."""
    fields = []
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == _LENGTH:
            size = data[pos] if pos < end else 0x80
            if size < 0x80:
                pos += 1
            else:
                size, pos = _varint(data, pos, end)
            if pos + size > end:
                raise ProtobufError(f"field {number} runs past the end of its message")
            fields.append((number, pos, pos + size))
            pos += size
        elif wire == _VARINT:
            value, pos = _varint(data, pos, end)
            fields.append((number, value, -1))
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            raise ProtobufError(f"field {number} has wire type {wire}, which Kubernetes does not use")
    if pos != end:
        raise ProtobufError("a field runs past the end of its message")
    return fields


def _text(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode()
    except UnicodeDecodeError as error:
        raise ProtobufError("a string is not UTF-8") from error


def _string_map(data: bytes, start: int, end: int, into: dict[str, str]) -> None:
    """One map entry {1: key, 2: value} into `into`."""
    # As the apiserver writes a short entry: 0x0a, key length, key, 0x12, value length, value.
    # Read directly, it costs a fifth less per namespace than through `_fields` (14.5 against 18 us).
    if data[start] == 0x0A and (key_size := data[start + 1]) < 0x80:
        key_end = start + 2 + key_size
        if key_end + 2 <= end and data[key_end] == 0x12 and key_end + 2 + data[key_end + 1] == end:
            into[_text(data, start + 2, key_end)] = _text(data, key_end + 2, end)
            return
    key = value = ""
    for number, field_start, field_end in _fields(data, start, end):
        if number == 1 and field_end >= 0:
            key = _text(data, field_start, field_end)
        elif number == 2 and field_end >= 0:
            value = _text(data, field_start, field_end)
    into[key] = value


def _object_meta(data: bytes, start: int, end: int) -> dict[str, Any]:
    """name, resourceVersion, labels and annotations of the ObjectMeta at data[start:end]."""
    metadata: dict[str, Any] = {}
    for number, field_start, field_end in _fields(data, start, end):
        if field_end < 0:
            continue
        if number == 1:
            metadata["name"] = _text(data, field_start, field_end)
        elif number == 6:
            metadata["resourceVersion"] = _text(data, field_start, field_end)
        elif number == 11:
            _string_map(data, field_start, field_end, metadata.setdefault("labels", {}))
        elif number == 12:
            _string_map(data, field_start, field_end, metadata.setdefault("annotations", {}))
    return metadata


def _status(data: bytes, start: int, end: int) -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status"}
    for number, field_start, field_end in _fields(data, start, end):
        if number == 3 and field_end >= 0:
            status["message"] = _text(data, field_start, field_end)
        elif number == 4 and field_end >= 0:
            status["reason"] = _text(data, field_start, field_end)
        elif number == 5 and field_end >= 0:
            for detail, value, detail_end in _fields(data, field_start, field_end):
                # retryAfterSeconds, an int32: always written, 0 when no wait is asked for; a
                # negative one arrives as a ten-byte varint.
                if detail == 5 and detail_end < 0 and 0 < value < 2**31:
                    status["details"] = {"retryAfterSeconds": value}
        elif number == 6 and field_end < 0:
            status["code"] = field_start
    return status


def _unwrap(data: bytes, start: int, end: int) -> tuple[str, str, int, int]:
    """The apiVersion, kind and the bounds of the object inside an envelope at data[start:end]."""
    if data[start : start + 4] != ENVELOPE_MAGIC:
        raise ProtobufError("an object without the k8s protobuf envelope")
    api_version, kind, object_start, object_end = "", "", start + 4, start + 4
    for number, field_start, field_end in _fields(data, start + 4, end):
        if number == 1 and field_end >= 0:
            for type_number, type_start, type_end in _fields(data, field_start, field_end):
                if type_number == 1 and type_end >= 0:
                    api_version = _text(data, type_start, type_end)
                elif type_number == 2 and type_end >= 0:
                    kind = _text(data, type_start, type_end)
        elif number == 2 and field_end >= 0:
            object_start, object_end = field_start, field_end
    return api_version, kind, object_start, object_end


# The envelope's field 1, the TypeMeta {1: apiVersion, 2: kind}, of an object in a metadata watch.
_TYPE_META = b"\x0a\x0emeta.k8s.io/v1\x12\x15PartialObjectMetadata"
_PARTIAL_TYPE_META = bytes((0x0A, len(_TYPE_META))) + _TYPE_META
# ObjectMeta's fields read by the usual-shape reader, by their one-byte tags (wire type 2).
_NAME_TAG, _VERSION_TAG, _LABELS_TAG, _ANNOTATIONS_TAG = 0x0A, 0x32, 0x5A, 0x62
# Its varint fields: generation (7) and deletionGracePeriodSeconds (10), skipped.
_VARINT_TAGS = (0x38, 0x50)


def _usual_event(frame: bytes) -> dict[str, Any] | None:
    """The event of one object's metadata in the shape the apiserver writes it, read in one pass;
    None for anything else (a Status, another layout, anything malformed), which `_event_by_fields`
    then reads, and words the error of.

    That general reader lists every field of each nested message before it looks at one; this
    reads the same 100,000 namespace events in about two thirds of its time (bench/RESULTS.md). Each
    length is read where the layout puts it and every byte is still accounted for: a field of
    ObjectMeta the watch does not use is skipped by its length, and a frame that does not end where
    its lengths say is not taken."""
    try:
        return _read_usual_event(frame)
    except (ProtobufError, IndexError):
        return None


def _read_usual_event(frame: bytes) -> dict[str, Any] | None:
    size = len(frame)
    # WatchEvent {1: type, 2: RawExtension {1: raw}}, each length one byte or a varint.
    if size < 2 or frame[0] != 0x0A or (type_size := frame[1]) >= 0x80:
        return None
    pos = 2 + type_size
    event_type = _text(frame, 2, pos)
    for tag in (0x12, 0x0A):  # the RawExtension, then its raw bytes: both run to the frame's end
        if pos >= size or frame[pos] != tag:
            return None
        length, pos = _varint(frame, pos + 1, size)
        if pos + length != size:
            return None
    # The envelope: magic, TypeMeta, then the object (Unknown's fields 3 and 4 follow it, empty).
    type_meta_end = pos + 4 + len(_PARTIAL_TYPE_META)
    if frame[pos : pos + 4] != ENVELOPE_MAGIC or frame[pos + 4 : type_meta_end] != _PARTIAL_TYPE_META:
        return None
    pos = type_meta_end
    if pos >= size or frame[pos] != 0x12:
        return None
    length, pos = _varint(frame, pos + 1, size)
    object_end = pos + length
    if object_end > size or frame[object_end:] not in (b"", b"\x1a\x00\x22\x00"):
        return None
    # PartialObjectMetadata {1: ObjectMeta}, and nothing else.
    if pos >= object_end or frame[pos] != 0x0A:
        return None
    length, pos = _varint(frame, pos + 1, object_end)
    if pos + length != object_end:
        return None
    metadata: dict[str, Any] = {}
    while pos < object_end:
        tag = frame[pos]
        if tag in _VARINT_TAGS:
            _, pos = _varint(frame, pos + 1, object_end)
            continue
        if tag & 7 != _LENGTH:
            return None
        if tag < 0x80:
            pos += 1
        elif pos + 1 < object_end and frame[pos + 1] < 0x80:  # fields 16-2047, e.g. managedFields
            pos += 2
        else:
            return None
        length = frame[pos] if pos < object_end else 0x80
        if length < 0x80:
            pos += 1
        else:
            length, pos = _varint(frame, pos, object_end)
        end = pos + length
        if end > object_end:
            return None
        if tag == _NAME_TAG:
            metadata["name"] = _text(frame, pos, end)
        elif tag == _VERSION_TAG:
            metadata["resourceVersion"] = _text(frame, pos, end)
        elif tag == _LABELS_TAG:
            _string_map(frame, pos, end, metadata.setdefault("labels", {}))
        elif tag == _ANNOTATIONS_TAG:
            _string_map(frame, pos, end, metadata.setdefault("annotations", {}))
        pos = end
    return {
        "type": event_type,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata},
    }


def decode_event(frame: bytes) -> dict[str, Any]:
    """One frame of a watch of PartialObjectMetadata as its JSON counterpart would decode."""
    usual = _usual_event(frame)
    return usual if usual is not None else _event_by_fields(frame)


def _event_by_fields(frame: bytes) -> dict[str, Any]:
    """Any layout of the event, each message's fields listed and then read."""
    try:
        event_type, envelope = "", (0, 0)
        for number, start, end in _fields(frame, 0, len(frame)):
            if number == 1 and end >= 0:
                event_type = _text(frame, start, end)
            elif number == 2 and end >= 0:
                for raw_number, raw_start, raw_end in _fields(frame, start, end):
                    if raw_number == 1 and raw_end >= 0:
                        envelope = (raw_start, raw_end)
        api_version, kind, start, end = _unwrap(frame, *envelope)
        if kind == "Status":
            return {"type": event_type, "object": _status(frame, start, end)}
        metadata: dict[str, Any] = {}
        for number, field_start, field_end in _fields(frame, start, end):
            if number == 1 and field_end >= 0:
                metadata = _object_meta(frame, field_start, field_end)
    except IndexError as error:  # a varint or a length cut short at a message's end
        raise ProtobufError("a truncated field") from error
    return {"type": event_type, "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}}


def decode_status(body: bytes) -> dict[str, Any] | None:
    """The Status of an error response in protobuf, shaped as its JSON; None if it is not one."""
    try:
        _, kind, start, end = _unwrap(body, 0, len(body))
        return _status(body, start, end) if kind == "Status" else None
    except (ProtobufError, IndexError):
        return None


async def frames(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The length-prefixed frames of a protobuf watch response, whatever the chunks' bounds."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer = buffer + chunk if buffer else chunk
        pos, size = 0, len(buffer)
        while size - pos >= 4:
            length = int.from_bytes(buffer[pos : pos + 4], "big")
            if length > MAX_FRAME_BYTES:
                raise ProtobufError(f"a frame of {length} bytes (at most {MAX_FRAME_BYTES})")
            if size - pos - 4 < length:
                break
            yield buffer[pos + 4 : pos + 4 + length]
            pos += 4 + length
        buffer = buffer[pos:]
    if buffer:
        raise ProtobufError(f"the stream ended within a frame ({len(buffer)} bytes left)")

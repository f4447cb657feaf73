"""The envelope: how an event lives in a stream entry.

Fields (all plain strings, so any language's Redis client can produce):
``id`` event id (producer-chosen or UUIDv7), ``type``, ``v`` schema version,
``data`` JSON of the payload, and ``attempt`` (1-based) where an entry is retried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from pipeline.errors import DecodeError
from schemas.base import REGISTRY, EventModel, lookup

Fields = dict[bytes, bytes]


def uuid7() -> str:
    """A time-ordered UUIDv7 (RFC 9562) as text."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded stream entry."""

    id: str
    type: str
    v: int
    data: EventModel
    attempt: int = 1


def encode(event: EventModel, *, event_id: str | None = None, attempt: int = 1) -> dict[str, str]:
    """The stream fields of ``event``. ``event_id`` defaults to a fresh UUIDv7."""
    fields = {
        "id": event_id or uuid7(),
        "type": event.EVENT_TYPE,
        "v": str(event.EVENT_VERSION),
        "data": event.model_dump_json(by_alias=True),
    }
    if attempt != 1:
        fields["attempt"] = str(attempt)
    return fields


def _text(raw: Mapping[bytes, bytes], name: bytes) -> str:
    value = raw.get(name)
    if value is None:
        raise DecodeError(f"missing field {name.decode()!r}", raw)
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise DecodeError(f"field {name.decode()!r} is not UTF-8", raw) from None


def _int(raw: Mapping[bytes, bytes], name: bytes, default: int | None = None) -> int:
    if default is not None and name not in raw:
        return default
    text = _text(raw, name)
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise DecodeError(f"field {name.decode()!r} is not a positive integer: {text!r}", raw)
    return int(text)


def decode(raw: Mapping[bytes, bytes] | None) -> Envelope:
    """Decode an entry's raw fields; raises ``DecodeError`` (carrying them) when invalid."""
    # fast path for a well-formed entry; anything unusual takes the careful path below,
    # which says exactly what is wrong
    try:
        assert raw is not None
        version_raw = raw[b"v"]
        attempt_raw = raw.get(b"attempt", b"1")
        if (version_raw.isdigit() and attempt_raw.isdigit() and len(version_raw) < 10
                and len(attempt_raw) < 10):
            event_id = raw[b"id"].decode()
            event_type = raw[b"type"].decode()
            attempt = int(attempt_raw)
            model = REGISTRY.get((event_type, int(version_raw)))
            if model is not None and 0 < len(event_id) <= 200 and attempt >= 1:
                payload = model.model_validate_json(raw[b"data"])
                return Envelope(event_id, event_type, int(version_raw), payload, attempt)
    except (AssertionError, KeyError, AttributeError, UnicodeDecodeError, ValidationError):
        pass
    return _decode_carefully(raw)


def _decode_carefully(raw: Mapping[bytes, bytes] | None) -> Envelope:
    if not raw:
        raise DecodeError("empty entry", raw)
    event_id = _text(raw, b"id")
    if not event_id or len(event_id) > 200:
        raise DecodeError("field 'id' must be 1-200 characters", raw)
    event_type = _text(raw, b"type")
    version = _int(raw, b"v")
    attempt = _int(raw, b"attempt", 1)
    if attempt < 1:
        raise DecodeError("field 'attempt' must be >= 1", raw)
    model = lookup(event_type, version)
    if model is None:
        raise DecodeError(f"unknown event type {event_type!r} version {version}", raw)
    data = raw.get(b"data")
    if data is None:
        raise DecodeError("missing field 'data'", raw)
    try:
        payload = model.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(f"invalid {event_type} data: {_summary(exc)}", raw) from None
    return Envelope(event_id, event_type, version, payload, attempt)


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def text_fields(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """Raw fields as text, for display (undecodable bytes shown escaped)."""
    return {
        k.decode(errors="backslashreplace"): v.decode(errors="backslashreplace")
        for k, v in raw.items()
    }

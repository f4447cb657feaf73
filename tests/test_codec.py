"""The envelope codec and the event schemas."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from pipeline.codec import decode, encode, uuid7
from pipeline.errors import DecodeError
from schemas import JobProgress, JobRequested, PushNotification
from schemas.base import EventModel, register


def _raw(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_an_event_round_trips_through_stream_fields():
    event = JobRequested(job_id="q:1", queue="q",
                         payload=PushNotification(phoneNumber="4153518743", message="hi"))
    fields = encode(event, event_id="e-1")
    assert fields["type"] == "job.requested" and fields["v"] == "1" and "attempt" not in fields
    assert '"phoneNumber":"4153518743"' in fields["data"]
    env = decode(_raw(fields))
    assert (env.id, env.type, env.v, env.attempt) == ("e-1", "job.requested", 1, 1)
    assert env.data == event


def test_the_attempt_field_is_carried():
    fields = encode(JobProgress(job_id="q:1", queue="q", percent=50), attempt=3)
    assert decode(_raw(fields)).attempt == 3


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "empty entry"),
        ({"type": "job.progress", "v": "1", "data": "{}"}, "missing field 'id'"),
        ({"id": "1", "v": "1", "data": "{}"}, "missing field 'type'"),
        ({"id": "1", "type": "job.progress", "data": "{}"}, "missing field 'v'"),
        ({"id": "1", "type": "job.progress", "v": "1"}, "missing field 'data'"),
        ({"id": "1", "type": "job.progress", "v": "2", "data": "{}"}, "unknown event type"),
        ({"id": "1", "type": "job.progress", "v": "-1", "data": "{}"}, "not a positive integer"),
        ({"id": "1", "type": "job.progress", "v": "1", "attempt": "0", "data": "{}"}, ">= 1"),
        ({"id": "1", "type": "job.progress", "v": "1", "data": "[]"}, "invalid job.progress"),
        ({"id": "1", "type": "job.progress", "v": "1",
          "data": '{"job_id":"q:1","queue":"q","percent":"50"}'}, "percent"),
        ({"id": "1", "type": "job.progress", "v": "1",
          "data": '{"job_id":"q:1","queue":"q","percent":150}'}, "percent"),
    ],
)
def test_invalid_entries_raise_a_decode_error_carrying_the_raw_fields(fields, reason):
    raw = _raw(fields)
    with pytest.raises(DecodeError) as err:
        decode(raw)
    assert reason in err.value.reason
    assert err.value.raw == raw


def test_models_are_frozen_strict_and_forbid_unknown_fields():
    p = PushNotification(phoneNumber="4153518743", message="hi")
    with pytest.raises(ValidationError):
        p.message = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PushNotification(phoneNumber=4153518743, message="hi")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PushNotification.model_validate({"phoneNumber": "4153518743", "message": "x", "y": 1})
    with pytest.raises(ValidationError):
        JobProgress.model_validate_json('{"job_id":"q:1","queue":"q","percent":"1abc"}')


def test_uuid7_is_a_time_ordered_version_7_uuid():
    ids = [uuid7() for _ in range(100)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 for u in parsed)
    assert len(set(ids)) == 100
    stamps = [u.int >> 80 for u in parsed]
    assert stamps == sorted(stamps)


def test_a_type_can_be_registered_once():
    @register
    class Mine(EventModel):
        EVENT_TYPE = "test.codec.mine"
        x: int

    assert decode(_raw(encode(Mine(x=1)))).data == Mine(x=1)
    with pytest.raises(TypeError):

        @register
        class Other(EventModel):
            EVENT_TYPE = "test.codec.mine"


@pytest.mark.parametrize("value", ["q\n", "q\r", "a b", "", "x" * 101, "q:"])
def test_names_and_topics_refuse_a_trailing_newline_and_other_characters(value):
    from pipeline.errors import ConfigError
    from pipeline.keys import check_name, check_topic

    with pytest.raises(ConfigError):
        check_name("queue", value)
    with pytest.raises(ConfigError):
        check_topic(value if value != "q:" else "q:\n")

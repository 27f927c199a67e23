"""Envelopes: validation, defaults, UTC, wire codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import orjson
import pytest
from pydantic import ValidationError

from common.errors import MalformedMessageError, PayloadTooLargeError, RemoteActionError
from common.models import DomainAction, DomainActionResponse, ErrorDetail
from common.models.codec import decode_action, decode_response, encode_action, encode_response


def test_defaults_are_derived() -> None:
    action = DomainAction(action_type="user.create", data={"name": "ada"})
    assert isinstance(action.action_id, UUID)
    assert action.target_service == "user"
    assert action.correlation_id == str(action.action_id)
    assert action.trace_id
    assert action.timestamp.tzinfo is not None and action.timestamp.utcoffset() == timedelta(0)
    assert action.handler_name == "_handle_user_create"


def test_derived_fields_given_as_null_or_absent_in_json_are_derived() -> None:
    action_id = uuid4()
    for doc in (
        b'{"action_id": "%s", "action_type": "user.create"}' % str(action_id).encode(),
        b'{"action_id": "%s", "action_type": "user.create", "target_service": null, '
        b'"correlation_id": null, "trace_id": null}' % str(action_id).encode(),
    ):
        action = decode_action({b"action": doc}, 10_000)
        assert action.target_service == "user"
        assert action.correlation_id == str(action_id)
        assert action.trace_id == action_id.hex


def test_times_in_json_are_taken_as_utc() -> None:
    doc = (
        b'{"action_type": "a.b", "timestamp": "2030-01-01T12:00:00+02:00",'
        b' "deadline": "2030-01-01T12:00:00"}'
    )
    action = decode_action({b"action": doc}, 10_000)
    assert action.timestamp == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert action.timestamp.utcoffset() == timedelta(0)
    assert action.deadline == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    zulu = decode_action(
        {b"action": b'{"action_type": "a.b", "timestamp": "2030-01-01T12:00Z"}'}, 99
    )
    assert zulu.timestamp == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_malformed_summary_names_the_bad_fields_only() -> None:
    doc = b'{"action_type": "a.b", "timestamp": "junk", "target_service": "BAD"}'
    with pytest.raises(MalformedMessageError) as info:
        decode_action({b"action": doc}, 10_000)
    message = str(info.value)
    assert message == (
        "timestamp: Input should be a valid datetime; "
        "target_service: String should match pattern '^[a-z][a-z0-9_-]{0,62}$'"
    )


@pytest.mark.parametrize(
    "bad", ["User.create", "user", "user..create", "1user.create", "user create", ""]
)
def test_action_type_is_validated(bad: str) -> None:
    with pytest.raises(ValidationError, match="action_type"):
        DomainAction(action_type=bad)


def test_dashes_become_underscores_in_handler_names() -> None:
    assert DomainAction(action_type="my-svc.do-it").handler_name == "_handle_my_svc_do_it"


def test_timestamps_are_normalised_to_utc() -> None:
    local = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    action = DomainAction(action_type="a.b", timestamp=local, deadline=datetime(2030, 1, 1))
    assert action.timestamp == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert action.deadline is not None and action.deadline.tzinfo == UTC


def test_deadline_expiry() -> None:
    past = DomainAction(action_type="a.b", deadline=datetime.now(UTC) - timedelta(seconds=1))
    future = DomainAction(action_type="a.b", deadline=datetime.now(UTC) + timedelta(minutes=1))
    assert past.is_expired() and not future.is_expired()
    assert not DomainAction(action_type="a.b").is_expired()


def test_uuid_ids_are_accepted_as_strings() -> None:
    tenant = uuid4()
    action = DomainAction(action_type="a.b", tenant_id=tenant, correlation_id=tenant)
    assert action.tenant_id == str(tenant) and action.correlation_id == str(tenant)
    with pytest.raises(ValidationError, match="trace_id"):
        DomainAction(action_type="a.b", trace_id="x" * 201)


def test_actions_are_immutable() -> None:
    action = DomainAction(action_type="a.b")
    with pytest.raises(ValidationError):
        action.action_type = "c.d"  # type: ignore[misc]


def test_seed_style_response_derives_success() -> None:
    ok = DomainActionResponse(
        action_type="x.y.response", correlation_id="c", trace_id="t", status_code=200, data={"r": 1}
    )
    bad = DomainActionResponse(status_code=503)
    assert ok.success and not bad.success
    assert ok.raise_for_error() is ok
    with pytest.raises(RemoteActionError) as info:
        DomainActionResponse(
            success=False, status_code=422, error=ErrorDetail(error_type="Invalid", message="no")
        ).raise_for_error()
    assert info.value.error is not None and info.value.error.message == "no"
    assert info.value.status_code == 422


def test_response_json_from_other_producers_gets_the_same_rules() -> None:
    bare = decode_response(b'{"status_code": 404}')
    assert not bare.success and bare.status_code == 404
    assert decode_response(b'{"status_code": 404, "success": true}').success
    assert decode_response(b"{}").success and decode_response(b"{}").status_code == 200
    ids = uuid4()
    built = DomainActionResponse(correlation_id=ids, trace_id=ids)  # type: ignore[arg-type]
    assert built.correlation_id == str(ids) and built.trace_id == str(ids)


def test_codec_round_trip() -> None:
    action = DomainAction(action_type="a.b", data={"n": 1, "s": "é"}, metadata={"k": [1, 2]})
    fields = encode_action(action, 10_000)
    decoded = decode_action({k.encode(): v for k, v in fields.items()}, 10_000)
    assert decoded == action
    response = DomainActionResponse(action_id=action.action_id, data={"x": 1})
    assert decode_response(encode_response(response)) == response


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({b"action": b"not json"}, "Invalid JSON"),
        ({b"action": b"{}"}, "action_type"),
        ({b"action": b'{"action_type": 5}'}, "action_type"),
        ({b"action": b'{"action_type": "a.b", "data": []}'}, "data"),
        ({b"action": b"\xff\xfe\x00junk"}, "JSON"),
        ({b"other": b"x"}, "no 'action' field"),
    ],
)
def test_malformed_entries_raise(fields: dict[bytes, bytes], message: str) -> None:
    with pytest.raises(MalformedMessageError, match=message):
        decode_action(fields, 10_000)


def test_payload_size_is_bounded_both_ways() -> None:
    action = DomainAction(action_type="a.b", data={"blob": "x" * 5000})
    with pytest.raises(PayloadTooLargeError):
        encode_action(action, 1000)
    fields = encode_action(action, 100_000)
    with pytest.raises(PayloadTooLargeError):
        decode_action({b"action": fields["action"]}, 1000)


@pytest.mark.parametrize(
    "field", ["action_type", "origin_service", "target_service", "callback_action_type"]
)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_names_in_actions_are_matched_whole(field: str, suffix: str) -> None:
    value = ("user.create" if field.endswith("action_type") else "user") + suffix
    fields: dict[str, str] = {"action_type": "user.create", field: value}
    with pytest.raises(ValidationError, match=field):
        DomainAction(**fields)  # type: ignore[arg-type]
    with pytest.raises(MalformedMessageError, match=field):
        decode_action({b"action": orjson.dumps(fields)}, 10_000)


UNCONVERTIBLE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("field", ["timestamp", "deadline"])
@pytest.mark.parametrize("when", UNCONVERTIBLE_TIMES)
def test_a_time_that_cannot_be_converted_to_utc_is_invalid(field: str, when: str) -> None:
    with pytest.raises(ValidationError, match=field):
        DomainAction(action_type="a.b", **{field: when})  # type: ignore[arg-type]
    aware = datetime.fromisoformat(when)
    with pytest.raises(ValidationError, match=field):
        DomainAction(action_type="a.b", **{field: aware})  # type: ignore[arg-type]
    doc = orjson.dumps({"action_type": "a.b", field: when})
    with pytest.raises(MalformedMessageError, match=field):
        decode_action({b"action": doc}, 10_000)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z"])
def test_the_extreme_utc_times_are_valid(when: str) -> None:
    doc = orjson.dumps({"action_type": "a.b", "timestamp": when, "deadline": when})
    action = decode_action({b"action": doc}, 10_000)
    assert action.timestamp == action.deadline == datetime.fromisoformat(when)

"""Fuzzing the wire format: whatever bytes arrive, decoding yields a valid envelope or raises
:class:`MessageError` (the worker dead-letters that as ``malformed`` at once), nothing else.

An exception of any other type would crash the delivery, be retried ``max_retries`` times and
land as ``max_retries`` much later (an ``OverflowError`` from a time that cannot be converted to
UTC did exactly that)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import MessageError
from common.models import DomainAction, DomainActionResponse
from common.models.codec import decode_action, decode_response, encode_action, encode_response

_LIMIT = 1 << 20
_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ACTION_FIELDS = list(DomainAction.model_fields)
RESPONSE_FIELDS = list(DomainActionResponse.model_fields)

# Values near the edges of what the models convert: times at the ends of the calendar with the
# largest offsets, numbers past every integer and float range, ids of every shape.
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
edge_times = st.builds(
    lambda when, zone: when.replace(tzinfo=zone).isoformat(),
    st.sampled_from(
        [
            datetime.min,
            datetime.max,
            datetime(1, 1, 2),
            datetime(9999, 12, 30),
            datetime(1970, 1, 1),
        ]
    )
    | st.datetimes(),
    st.none() | st.just(UTC) | offsets,
)
edge_strings = (
    edge_times
    | st.sampled_from(
        [
            "",
            "\n",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999+23:59",
            "0000-00-00T00:00:00",
            "2030-02-30T00:00:00",
            "2030-01-01T24:00:00",
            "2030-01-01T00:00:00+99:99",
            "now",
            "nan",
            "inf",
            "-inf",
            "1e999",
            "00000000-0000-0000-0000-000000000000",
            "user.create",
            "user.create\n",
            "app:dev:{api}:reply:c1\n",
        ]
    )
    | st.text(max_size=40)
)
edge_numbers = (
    st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 253402300800, -62135596801])
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_scalars = st.none() | st.booleans() | edge_numbers | edge_strings
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _action_doc() -> dict[str, Any]:
    action = DomainAction(
        action_type="svc.do",
        origin_service="api",
        callback_queue_name="app:dev:{api}:reply:c1",
        callback_action_type="api.done",
        deadline=datetime(2030, 1, 1, tzinfo=UTC),
        tenant_id="t",
        data={"a": 1},
        metadata={"m": [1, 2]},
    )
    doc: dict[str, Any] = orjson.loads(encode_action(action, _LIMIT)["action"])
    return doc


def _response_doc() -> dict[str, Any]:
    response = DomainActionResponse(
        action_type="svc.do.response", correlation_id="c", status_code=500, data={"x": 1}
    )
    doc: dict[str, Any] = orjson.loads(encode_response(response))
    doc["error"] = {"error_type": "E", "message": "m", "details": {}}
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``base`` with some fields replaced by edge values, removed, or nested into junk."""
    doc = dict(base)
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from([*names, "unknown"]))
        action = draw(st.sampled_from(["replace", "replace", "delete", "edge_time"]))
        if action == "delete":
            doc.pop(name, None)
        elif action == "edge_time":
            doc[name] = draw(edge_times)
        else:
            doc[name] = draw(json_values)
    return doc


def _dumps(doc: Any) -> bytes:
    """JSON as any producer may write it (integers of any size, unlike orjson)."""
    return json.dumps(doc, ensure_ascii=False).encode()


def _check_action(raw: bytes) -> None:
    try:
        action = decode_action({b"action": raw}, _LIMIT)
    except MessageError:
        return
    assert isinstance(action, DomainAction)
    assert action.timestamp.utcoffset() == timedelta(0)
    assert action.deadline is None or action.deadline.utcoffset() == timedelta(0)


def _check_response(raw: bytes) -> None:
    try:
        response = decode_response(raw)
    except MessageError:
        return
    assert isinstance(response, DomainActionResponse)


@_FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_are_malformed(raw: bytes) -> None:
    _check_action(raw)
    _check_response(raw)


@_FUZZ
@given(json_values)
def test_arbitrary_json_documents_decode_or_are_malformed(doc: Any) -> None:
    raw = _dumps(doc)
    _check_action(raw)
    _check_response(raw)


@_FUZZ
@given(mutated(_action_doc(), ACTION_FIELDS))
def test_mutated_actions_decode_or_are_malformed(doc: dict[str, Any]) -> None:
    _check_action(_dumps(doc))


@_FUZZ
@given(mutated(_response_doc(), RESPONSE_FIELDS))
def test_mutated_responses_decode_or_are_malformed(doc: dict[str, Any]) -> None:
    _check_response(_dumps(doc))


@_FUZZ
@given(st.sampled_from(["timestamp", "deadline"]), edge_times)
def test_any_time_with_any_offset_decodes_to_utc_or_is_malformed(field: str, when: str) -> None:
    _check_action(_dumps({"action_type": "svc.do", field: when}))


@_FUZZ
@given(st.binary(max_size=60), st.integers(0, 200))
def test_truncated_and_spliced_documents_decode_or_are_malformed(junk: bytes, cut: int) -> None:
    raw = _dumps(_action_doc())
    _check_action(raw[:cut] + junk)
    _check_action(raw[:cut] + junk + raw[cut:])
    response = _dumps(_response_doc())
    _check_response(response[:cut] + junk)


@pytest.mark.parametrize("depth", [100, 10_000, 100_000])
def test_deeply_nested_documents_decode_or_are_malformed(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    _check_action(b'{"action_type": "svc.do", "data": {"x": ' + nested + b"}}")
    _check_action(nested)
    _check_response(b'{"status_code": 200, "data": {"x": ' + nested + b"}}")
    _check_response(b"{" + b'"a":{' * depth + b"}" * (depth + 1))

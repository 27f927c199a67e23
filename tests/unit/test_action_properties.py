"""Properties of the envelope: whatever a producer builds survives the wire unchanged, and
whatever is decoded obeys the contract (UTC times, string ids, derived defaults)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
from hypothesis import given
from hypothesis import strategies as st

from common.models import DomainAction
from common.models.actions import ACTION_TYPE_PATTERN
from common.models.codec import decode_action, encode_action

_LIMIT = 1 << 20

zones = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
times = st.builds(
    lambda when, zone: when.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2100, 1, 1)),
    zones,
)
ids = st.none() | st.uuids() | st.text(max_size=200)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
actions = st.builds(
    DomainAction,
    action_type=st.from_regex(ACTION_TYPE_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 200),
    timestamp=times,
    deadline=st.none() | times,
    correlation_id=ids,
    trace_id=ids,
    tenant_id=ids,
    user_id=ids,
    session_id=ids,
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    metadata=st.dictionaries(st.text(max_size=10), json_values, max_size=2),
)


def _utc(value: datetime | None) -> bool:
    return value is None or value.utcoffset() == timedelta(0)


@given(actions)
def test_an_action_survives_the_wire_unchanged(action: DomainAction) -> None:
    fields = encode_action(action, _LIMIT)
    decoded = decode_action({k.encode(): v for k, v in fields.items()}, _LIMIT)
    assert decoded == action
    assert _utc(decoded.timestamp) and _utc(decoded.deadline)


@given(actions)
def test_built_actions_obey_the_contract(action: DomainAction) -> None:
    assert _utc(action.timestamp) and _utc(action.deadline)
    assert action.target_service == action.action_type.split(".", 1)[0]
    for name in ("correlation_id", "trace_id", "tenant_id", "user_id", "session_id"):
        value: Any = getattr(action, name)
        assert value is None or type(value) is str, name
    assert action.correlation_id is not None and action.trace_id is not None


@given(st.uuids(), times, st.booleans())
def test_json_from_other_producers_gets_the_same_defaults(
    action_id: UUID, when: datetime, nulls: bool
) -> None:
    doc: dict[str, Any] = {
        "action_id": str(action_id),
        "action_type": "svc.do",
        "timestamp": when.isoformat(),
    }
    if nulls:
        doc |= {"target_service": None, "correlation_id": None, "trace_id": None}
    action = decode_action({b"action": orjson.dumps(doc)}, _LIMIT)
    assert action.target_service == "svc"
    assert action.correlation_id == str(action_id) and action.trace_id == action_id.hex
    expected = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    assert action.timestamp == expected and _utc(action.timestamp)

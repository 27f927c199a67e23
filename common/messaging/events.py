"""The ``Event`` envelope of topic messages, and its wire format.

A topic entry holds one field, ``event``, whose value is the event's JSON: ``name``, ``data``
(the payload handlers receive), ``timestamp`` (UTC), ``source`` (the publishing service),
``event_id``, ``trace_id``, ``correlation_id``, an optional partition ``key`` and an optional
W3C ``traceparent`` (see :mod:`common.observability.tracing`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import MalformedMessageError, PayloadTooLargeError
from common.models.codec import entry_field, summarise

__all__ = ["EVENT_FIELD", "EVENT_FIELD_BYTES", "Event", "decode_event", "encode_event"]

EVENT_FIELD = "event"
EVENT_FIELD_BYTES = EVENT_FIELD.encode()


def _new_id() -> str:
    return uuid4().hex


class Event(BaseModel):
    """One message on a topic. Handlers receive its ``data`` (or the whole event)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    data: Any = None
    timestamp: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str | None = None
    event_id: str = Field(default_factory=_new_id, min_length=1, max_length=128)
    trace_id: str = Field(default_factory=lambda data: data.get("event_id") or _new_id())
    correlation_id: str = Field(default_factory=lambda data: data.get("event_id") or _new_id())
    key: str | None = Field(default=None, max_length=1024)
    # The W3C trace context of the span that published it (when tracing is on).
    traceparent: str | None = Field(default=None, max_length=512)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp cannot be converted to UTC") from None


_validate_event = Event.__pydantic_validator__.validate_json


def encode_event(event: Event, max_bytes: int) -> dict[str, bytes]:
    """The stream fields of ``event``; raises if it is larger than ``max_bytes``."""
    try:
        payload = event.__pydantic_serializer__.to_json(event)
    except Exception as exc:  # data that JSON cannot carry
        raise TypeError(f"event data cannot be serialised to JSON: {exc}") from None
    if len(payload) > max_bytes:
        raise PayloadTooLargeError(len(payload), max_bytes)
    return {EVENT_FIELD: payload}


def decode_event(fields: dict[bytes, bytes], max_bytes: int) -> Event:
    """Validate a topic entry into an :class:`Event` or raise a ``MessageError``."""
    raw = entry_field(fields, EVENT_FIELD_BYTES, max_bytes)
    try:
        event: Event = _validate_event(raw)
    except ValidationError as exc:
        raise MalformedMessageError(summarise(exc)) from None
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise MalformedMessageError(f"payload: {exc}") from None
    return event

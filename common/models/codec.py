"""Wire format: how envelopes are stored in stream entries and reply lists.

A stream entry holds one field, ``action``, whose value is the action's JSON. Decoding goes
straight from the bytes Redis returned to the validated model, with the size checked first.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from common.errors import MalformedMessageError, PayloadTooLargeError
from common.models.actions import DomainAction, DomainActionResponse

__all__ = [
    "ACTION_FIELD",
    "ACTION_FIELD_BYTES",
    "decode_action",
    "decode_response",
    "dumps",
    "encode_action",
    "encode_response",
    "entry_field",
    "summarise",
]

ACTION_FIELD = "action"
ACTION_FIELD_BYTES = ACTION_FIELD.encode()  # the same, as stream entries come back from Redis
# The compiled validators, called directly: model_validate_json adds a Python frame per call.
_validate_action = DomainAction.__pydantic_validator__.validate_json
_validate_response = DomainActionResponse.__pydantic_validator__.validate_json


def dumps(value: Any) -> bytes:
    """JSON-encode plain data (dicts of str, numbers, datetimes, UUIDs)."""
    return orjson.dumps(value, default=str)


def encode_action(action: DomainAction, max_bytes: int) -> dict[str, bytes]:
    """The stream fields of ``action``; raises if the payload is larger than ``max_bytes``."""
    payload = action.__pydantic_serializer__.to_json(action)
    if len(payload) > max_bytes:
        raise PayloadTooLargeError(len(payload), max_bytes)
    return {ACTION_FIELD: payload}


def entry_field(fields: dict[bytes, bytes], field: bytes, max_bytes: int) -> bytes:
    """The envelope field of a stream entry; ``MessageError`` if missing or too large."""
    raw = fields.get(field)
    if raw is None:
        present = sorted(k.decode("utf-8", "replace") for k in fields)
        raise MalformedMessageError(f"entry has no {field.decode()!r} field (fields: {present})")
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(len(raw), max_bytes)
    return raw


def decode_action(fields: dict[bytes, bytes], max_bytes: int) -> DomainAction:
    """Validate a stream entry into a :class:`DomainAction` or raise a ``MessageError``."""
    raw = entry_field(fields, ACTION_FIELD_BYTES, max_bytes)
    try:
        action: DomainAction = _validate_action(raw)
    except ValidationError as exc:
        raise MalformedMessageError(summarise(exc)) from None
    return action


def encode_response(response: DomainActionResponse) -> bytes:
    return response.__pydantic_serializer__.to_json(response)


def decode_response(raw: bytes) -> DomainActionResponse:
    try:
        response: DomainActionResponse = _validate_response(raw)
    except ValidationError as exc:
        raise MalformedMessageError(summarise(exc)) from None
    return response


def summarise(exc: ValidationError) -> str:
    """One line per bad field (at most five): a field with several union branches reports the
    first branch's error, and derived defaults skipped because of another field are left out."""
    parts: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        if err["type"] == "default_factory_not_called":
            continue
        field = str(err["loc"][0]) if err["loc"] else "payload"
        parts.setdefault(field, f"{field}: {err['msg']}")
    return "; ".join(list(parts.values())[:5])

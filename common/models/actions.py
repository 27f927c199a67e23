"""The envelopes that travel on the streams: actions, their responses and error details."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Union
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import CoreSchema, core_schema

from common.errors import RemoteActionError
from common.naming import SERVICE_NAME

__all__ = [
    "ACTION_TYPE_PATTERN",
    "ActionType",
    "DomainAction",
    "DomainActionResponse",
    "ErrorDetail",
]

ACTION_TYPE_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$"
# A dotted lowercase action type, e.g. ``user.create``. The models' patterns run in pydantic's
# Rust regex engine, where ``$`` is the end of the text; in Python's ``re``, ``$`` also matches
# before a final newline: check with ``re.fullmatch`` there.
ActionType = Annotated[str, StringConstraints(max_length=200, pattern=ACTION_TYPE_PATTERN)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00: before datetime.min once in UTC
        raise ValueError("cannot be converted to UTC: out of range") from None


class ErrorDetail(BaseModel):
    """What went wrong, as a caller sees it."""

    model_config = ConfigDict(frozen=True)

    error_type: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException, **details: Any) -> ErrorDetail:
        return cls(error_type=type(exc).__name__, message=str(exc) or repr(exc), details=details)


_SERVICE_PATTERN = rf"^{SERVICE_NAME}$"


def _from_action_id(data: dict[str, Any], derive: Callable[[UUID], str]) -> str | None:
    action_id = data.get("action_id")
    return derive(action_id) if isinstance(action_id, UUID) else None


def _target_of(data: dict[str, Any]) -> str | None:
    action_type = data.get("action_type")
    return action_type.split(".", 1)[0] if isinstance(action_type, str) else None


def _correlation_of(data: dict[str, Any]) -> str | None:
    return _from_action_id(data, str)


def _trace_of(data: dict[str, Any]) -> str | None:
    return _from_action_id(data, attrgetter("hex"))


def _derived_when_null(derive: Callable[[dict[str, Any]], str | None]) -> Any:
    """For a field given as an explicit ``null``: the derived value (from fields validated
    before it), as when the field is absent."""

    def fill(value: None, info: ValidationInfo) -> str | None:
        return derive(info.data)

    return AfterValidator(fill)


if TYPE_CHECKING:
    _Id = str | None
    _Target = str | None
    _Correlation = str | None
    _Trace = str | None
    _ResponseId = str | None
    _UtcDatetime = datetime
else:
    # Ids are strings; a UUID given in code is accepted and stored as its string. Every check
    # is part of the compiled validator, so a well-formed JSON action (the hot path) runs no
    # Python while it is validated. Python runs only for the rare branches: a UUID object, a
    # derived field given as null, a time that is naive or not in UTC.
    _IdStr = Annotated[str, StringConstraints(max_length=200)]
    _IdUUID = Annotated[UUID, AfterValidator(str)]

    def _nullable(*choices: Any, derive: Callable[[dict[str, Any]], str | None] | None) -> Any:
        null = None if derive is None else Annotated[None, _derived_when_null(derive)]
        return Annotated[Union[(*choices, null)], Field(union_mode="left_to_right")]

    _Id = _nullable(_IdStr, _IdUUID, derive=None)
    _Target = _nullable(
        Annotated[str, StringConstraints(pattern=_SERVICE_PATTERN)], derive=_target_of
    )
    _Correlation = _nullable(_IdStr, _IdUUID, derive=_correlation_of)
    _Trace = _nullable(_IdStr, _IdUUID, derive=_trace_of)
    _ResponseId = _nullable(str, _IdUUID, derive=None)

    class _UtcDatetime(datetime):
        """A datetime in UTC: one with offset 0 is taken as it is (in Rust); a naive one is
        taken as UTC; any other offset is converted."""

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> CoreSchema:
            return core_schema.union_schema(
                [
                    core_schema.datetime_schema(tz_constraint=0),
                    core_schema.no_info_after_validator_function(
                        _as_utc, core_schema.datetime_schema()
                    ),
                ],
                mode="left_to_right",
                custom_error_type="datetime_type",
            )


class DomainAction(BaseModel):
    """An action one service asks another to perform.

    Derived defaults: ``target_service`` (first segment of ``action_type``),
    ``correlation_id`` (the action id) and ``trace_id`` (the action id's hex) when absent or
    null; times are in UTC (a naive time is taken as UTC). Validation happens inside
    pydantic's compiled validator, with no Python for a well-formed JSON action.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    action_id: UUID = Field(default_factory=uuid4)
    action_type: ActionType
    timestamp: _UtcDatetime = Field(default_factory=_utcnow)
    origin_service: str | None = Field(None, pattern=_SERVICE_PATTERN)
    target_service: _Target = Field(default_factory=_target_of)
    correlation_id: _Correlation = Field(default_factory=_correlation_of)
    trace_id: _Trace = Field(default_factory=_trace_of)
    tenant_id: _Id = None
    user_id: _Id = None
    session_id: _Id = None
    callback_queue_name: str | None = Field(None, max_length=512)
    callback_action_type: ActionType | None = None
    deadline: _UtcDatetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def handler_name(self) -> str:
        """Name of the worker method that handles this action type."""
        return handler_name_for(self.action_type)

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.deadline is not None and (now or _utcnow()) >= self.deadline


def handler_name_for(action_type: str) -> str:
    return "_handle_" + action_type.replace(".", "_").replace("-", "_")


def _success_of(data: dict[str, Any]) -> bool:
    return bool(data["status_code"] < 400)


class DomainActionResponse(BaseModel):
    """The answer to a pseudo-synchronous action."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action_id: UUID | None = None
    action_type: str | None = None
    correlation_id: _ResponseId = None
    trace_id: _ResponseId = None
    status_code: int = Field(200, ge=100, le=599)
    # Unless given, success follows the status code (a response built with only a code).
    success: bool = Field(default_factory=_success_of)
    data: dict[str, Any] = Field(default_factory=dict)
    error: ErrorDetail | None = None
    timestamp: datetime = Field(default_factory=_utcnow)

    def raise_for_error(self) -> DomainActionResponse:
        """Return ``self`` if successful, else raise :class:`RemoteActionError`."""
        if not self.success:
            raise RemoteActionError(self.error, self.status_code)
        return self

"""The envelopes that travel on the streams: actions, their responses and error details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID, uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from common.errors import RemoteActionError

__all__ = ["ACTION_TYPE_PATTERN", "DomainAction", "DomainActionResponse", "ErrorDetail"]

ACTION_TYPE_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _id_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


class ErrorDetail(BaseModel):
    """What went wrong, as a caller sees it."""

    model_config = ConfigDict(frozen=True)

    error_type: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException, **details: Any) -> ErrorDetail:
        return cls(error_type=type(exc).__name__, message=str(exc) or repr(exc), details=details)


_SERVICE_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
_ZERO = timedelta(0)
_ID_FIELDS = ("correlation_id", "trace_id", "tenant_id", "user_id", "session_id")

if TYPE_CHECKING:
    _Id = str | None
else:
    # Ids are strings; a UUID given in code is accepted and stored as its string (converted
    # in the one after-validator, so that validating JSON runs no Python per field).
    _Id = Annotated[
        Annotated[str, StringConstraints(max_length=200)] | UUID | None,
        Field(union_mode="left_to_right"),
    ]


class DomainAction(BaseModel):
    """An action one service asks another to perform.

    Every check runs inside pydantic's compiled validator except one after-validator, which
    fills the derived defaults: ``target_service`` (first segment of ``action_type``),
    ``correlation_id`` (the action id), ``trace_id``, and UTC for times given without it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    action_id: UUID = Field(default_factory=uuid4)
    action_type: str = Field(max_length=200, pattern=ACTION_TYPE_PATTERN)
    timestamp: datetime = Field(default_factory=_utcnow)
    origin_service: str | None = Field(None, pattern=_SERVICE_PATTERN)
    target_service: str | None = Field(None, pattern=_SERVICE_PATTERN)
    correlation_id: _Id = None
    trace_id: _Id = None
    tenant_id: _Id = None
    user_id: _Id = None
    session_id: _Id = None
    callback_queue_name: str | None = Field(None, max_length=512)
    callback_action_type: str | None = Field(None, max_length=200, pattern=ACTION_TYPE_PATTERN)
    deadline: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _defaults(self) -> DomainAction:
        # Frozen model: derived values are set once, here, straight in the instance dict
        # (this runs for every decoded action, so it stays lean).
        d = self.__dict__
        if d["target_service"] is None:
            d["target_service"] = self.action_type.split(".", 1)[0]
        if d["correlation_id"] is None:
            d["correlation_id"] = str(self.action_id)
        if d["trace_id"] is None:
            d["trace_id"] = self.action_id.hex
        for name in _ID_FIELDS:
            if d[name].__class__ is UUID:
                d[name] = str(d[name])
        stamp = d["timestamp"]
        if stamp.tzinfo is not UTC and stamp.utcoffset() != _ZERO:
            d["timestamp"] = _as_utc(stamp)
        deadline = d["deadline"]
        if deadline is not None and deadline.tzinfo is not UTC and deadline.utcoffset() != _ZERO:
            d["deadline"] = _as_utc(deadline)
        return self

    @property
    def handler_name(self) -> str:
        """Name of the worker method that handles this action type."""
        return handler_name_for(self.action_type)

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.deadline is not None and (now or _utcnow()) >= self.deadline


def handler_name_for(action_type: str) -> str:
    return "_handle_" + action_type.replace(".", "_").replace("-", "_")


class DomainActionResponse(BaseModel):
    """The answer to a pseudo-synchronous action."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action_id: UUID | None = None
    action_type: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    success: bool = True
    status_code: int = Field(200, ge=100, le=599)
    data: dict[str, Any] = Field(default_factory=dict)
    error: ErrorDetail | None = None
    timestamp: datetime = Field(default_factory=_utcnow)

    @field_validator("correlation_id", "trace_id", mode="before")
    @classmethod
    def _ids_as_str(cls, value: Any) -> Any:
        return _id_to_str(value)

    @model_validator(mode="before")
    @classmethod
    def _success_from_status(cls, values: Any) -> Any:
        # A response built by hand with only a status code gets a matching `success`.
        if isinstance(values, dict) and "success" not in values and "status_code" in values:
            code = values["status_code"]
            if isinstance(code, int):
                values = {**values, "success": code < 400}
        return values

    def raise_for_error(self) -> DomainActionResponse:
        """Return ``self`` if successful, else raise :class:`RemoteActionError`."""
        if not self.success:
            raise RemoteActionError(self.error, self.status_code)
        return self

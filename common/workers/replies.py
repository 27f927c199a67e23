"""Turning a handler's result into what goes back to the sender: a reply or a callback."""

from __future__ import annotations

import logging
from typing import Any

from common.clients.queue_manager import KeyKind, ParsedKey, QueueManager
from common.config import CommonAppSettings
from common.errors import InvalidKeyError, MessageError
from common.models.actions import DomainAction, DomainActionResponse, ErrorDetail
from common.models.codec import encode_action, encode_response
from common.observability.tracing import TRACEPARENT
from common.workers.outcome import ListPush, StreamAdd, Write

__all__ = ["ReplyBuilder", "check_result", "to_response"]

logger = logging.getLogger(__name__)


def check_result(action: DomainAction, result: Any) -> None:
    """Raise ``TypeError`` unless a handler returned a dict, a response or None."""
    if result is not None and not isinstance(result, (dict, DomainActionResponse)):
        raise TypeError(
            f"handler for {action.action_type} returned {type(result).__name__}; "
            "expected dict, DomainActionResponse or None"
        )


def to_response(action: DomainAction, result: Any) -> DomainActionResponse:
    """Normalise a handler's return value (dict, response or None) into a response."""
    if isinstance(result, DomainActionResponse):
        update: dict[str, Any] = {}
        if result.action_id is None:
            update["action_id"] = action.action_id
        if result.action_type is None:
            update["action_type"] = f"{action.action_type}.response"
        if result.correlation_id is None:
            update["correlation_id"] = action.correlation_id
        if result.trace_id is None:
            update["trace_id"] = action.trace_id
        return result.model_copy(update=update) if update else result
    check_result(action, result)
    return DomainActionResponse(
        action_id=action.action_id,
        action_type=f"{action.action_type}.response",
        correlation_id=action.correlation_id,
        trace_id=action.trace_id,
        success=True,
        status_code=200,
        data=result or {},
    )


def error_response(
    action: DomainAction, error: ErrorDetail, status_code: int
) -> DomainActionResponse:
    return DomainActionResponse(
        action_id=action.action_id,
        action_type=f"{action.action_type}.response",
        correlation_id=action.correlation_id,
        trace_id=action.trace_id,
        success=False,
        status_code=status_code,
        error=error,
    )


class ReplyBuilder:
    """Builds the writes that answer an action, after checking where they would go."""

    def __init__(
        self, service_name: str, queues: QueueManager, settings: CommonAppSettings
    ) -> None:
        self.service_name = service_name
        self.queues = queues
        self.settings = settings
        self._parsed: dict[str, ParsedKey] = {}

    def _parse(self, key: str) -> ParsedKey:
        """``QueueManager.parse`` with a small cache: callers reuse a few reply keys, and
        every answered action checks its target, then writes to it."""
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self.queues.parse(key)  # raises for a foreign key: never cached
            if len(self._parsed) >= 1024:
                self._parsed.clear()
            self._parsed[key] = parsed
        return parsed

    def check_target(self, action: DomainAction) -> None:
        """Raise :class:`InvalidKeyError` unless the action's reply target is one of ours."""
        if action.callback_queue_name is None:
            return
        parsed = self._parse(action.callback_queue_name)
        if parsed.kind is KeyKind.DEAD_LETTER:
            raise InvalidKeyError("a dead-letter stream is not a reply target")
        if parsed.kind is KeyKind.ACTIONS and action.callback_action_type is None:
            raise InvalidKeyError("a callback stream needs a callback_action_type")

    def writes(self, action: DomainAction, response: DomainActionResponse) -> tuple[Write, ...]:
        """The reply (pseudo-sync) or callback (async with callback) for ``response``."""
        target = action.callback_queue_name
        if target is None:
            return ()
        parsed = self._parse(target)
        if parsed.kind is KeyKind.REPLY:
            return (ListPush(target, encode_response(response), self.settings.reply_ttl_s),)
        callback = DomainAction(
            action_type=action.callback_action_type or f"{action.action_type}.callback",
            origin_service=self.service_name,
            target_service=parsed.service,
            correlation_id=action.correlation_id,
            trace_id=action.trace_id,
            tenant_id=action.tenant_id,
            user_id=action.user_id,
            session_id=action.session_id,
            data=response.data,
            metadata={
                "in_reply_to": str(action.action_id),
                "success": response.success,
                "status_code": response.status_code,
                "error": response.error.model_dump() if response.error else None,
                # The sender's trace context (tracing on): the callback is in its trace.
                **({TRACEPARENT: tp} if (tp := action.metadata.get(TRACEPARENT)) else {}),
            },
        )
        return (StreamAdd(target, encode_action(callback, self.settings.max_payload_bytes)),)

    def failure_writes(
        self, action: DomainAction | None, error: ErrorDetail, status_code: int
    ) -> tuple[Write, ...]:
        """Tell the sender its action failed for good (if it asked for an answer)."""
        if action is None or action.callback_queue_name is None:
            return ()
        try:
            self.check_target(action)
            return self.writes(action, error_response(action, error, status_code))
        except (ValueError, MessageError) as exc:  # a foreign target, an oversized callback
            logger.warning(
                "cannot tell the sender of action %s that it failed: %s", action.action_id, exc
            )
            return ()

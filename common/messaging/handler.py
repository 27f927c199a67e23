"""A declarative handler: the user's function plus what it promises (schemas, output, retries).

:meth:`Handler.run` turns one event into the engine's outcome:

- the payload is validated against ``input_schema`` first: an invalid payload would be invalid
  on every attempt, so it is dead-lettered at once (reason ``malformed``), never retried;
- :class:`~common.errors.RetryLaterError` asks for a retry after its delay,
  :class:`~common.errors.NonRetryableError` dead-letters at once, any other exception is retried
  with the handler's retry policy (``on_error`` runs once the last attempt has failed);
- the return value is validated against ``output_schema`` and published to ``output_topic``,
  written before the message is ACKed (never one without the other); ``None`` publishes
  nothing and is not a failure; a result that fails its schema is dead-lettered at once;
- ``on_success(payload, result)`` runs after a success (an error in it is logged, not retried).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.errors import NonRetryableError, RetryLaterError
from common.messaging.context import ActionContext
from common.messaging.events import Event, encode_event
from common.messaging.injection import Call, build_call
from common.messaging.partitions import event_stream
from common.models.actions import ErrorDetail
from common.observability.tracing import current_traceparent
from common.workers.outcome import Ack, DeadLetter, DeadLetterReason, Fail, Outcome, StreamAdd
from common.workers.retry import RetryPolicy

__all__ = ["Handler", "Hook", "publish_write"]

logger = logging.getLogger(__name__)

Hook = Callable[..., Awaitable[None]]


def publish_write(
    queues: QueueManager,
    settings: CommonAppSettings,
    topic: str,
    data: Any,
    *,
    cause: Event | None = None,
    name: str | None = None,
    key: str | None = None,
) -> StreamAdd:
    """The write that publishes ``data`` on ``topic`` (as an :class:`Event` that keeps the
    trace and correlation ids of ``cause``, and its partition ``key`` unless ``key`` is given:
    so per-key order carries along a chain of partitioned topics)."""
    if key is None and cause is not None:
        key = cause.key
    event = Event(
        name=name or topic,
        data=data,
        source=settings.service_name,
        key=key,
        **(
            {
                "trace_id": cause.trace_id,
                "correlation_id": cause.correlation_id,
                "traceparent": current_traceparent(),  # None unless tracing is on
            }
            if cause is not None
            else {}
        ),
    )
    stream = event_stream(queues, settings, topic, event)
    return StreamAdd(stream, encode_event(event, settings.max_payload_bytes))


def _wants_model(func: Callable[..., Any], schema: type[BaseModel] | None) -> bool:
    """Whether the handler's first parameter is annotated with a pydantic model (it then gets
    the validated model; otherwise a dict)."""
    if schema is None:
        return False
    params = list(inspect.signature(func).parameters.values())
    if not params:
        return False
    annotation = params[0].annotation
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == schema.__name__
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@dataclass(eq=False)
class Handler:
    """One handler and its options (see the module docstring)."""

    func: Callable[..., Awaitable[Any]]
    name: str
    input_schema: type[BaseModel] | None = None
    output_schema: type[BaseModel] | None = None
    output_topic: str | None = None
    dlq_topic: str | None = None
    policy: RetryPolicy | None = None
    # Overrides of the settings' policy (e.g. {"max_retries": 3}) when no policy is given.
    retry: Mapping[str, Any] = field(default_factory=dict)
    pass_event: bool = False  # the first parameter gets the Event, not its data
    retry_on_error: bool = True  # False: a failure is dead-lettered at once (seed 000)
    on_success: Hook | None = None
    on_error: Hook | None = None
    call: Call = field(init=False, repr=False)
    _model_in: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.call = build_call(self.func)
        self._model_in = _wants_model(self.func, self.input_schema)

    def policy_from(self, default: RetryPolicy) -> RetryPolicy | None:
        """This handler's retry policy: its own, or ``default`` with its overrides, or None
        (the consumer's)."""
        if self.policy is not None:
            return self.policy
        if self.retry:
            return dataclasses.replace(default, **self.retry)
        return None

    def payload(self, event: Event) -> Any:
        """What the handler's first parameter gets; raises ``ValidationError``."""
        if self.pass_event:
            return event
        if self.input_schema is None:
            return event.data
        model = self.input_schema.model_validate(event.data)
        return model if self._model_in else model.model_dump(mode="json")

    async def run(
        self,
        event: Event,
        context: ActionContext,
        queues: QueueManager,
        settings: CommonAppSettings,
        policy: RetryPolicy,
    ) -> Outcome:
        try:
            payload = self.payload(event)
        except ValidationError as exc:
            return DeadLetter(DeadLetterReason.MALFORMED, _invalid("input", exc))
        try:
            result = await self.call(payload, context, event)
        except RetryLaterError as exc:
            return Fail(ErrorDetail.from_exception(exc), exc.delay, exc)
        except NonRetryableError as exc:
            await self._on_error(payload, exc)
            return DeadLetter(DeadLetterReason.NON_RETRYABLE, ErrorDetail.from_exception(exc))
        except Exception as exc:
            if not self.retry_on_error:
                await self._on_error(payload, exc)
                return DeadLetter(DeadLetterReason.NON_RETRYABLE, ErrorDetail.from_exception(exc))
            if not policy.should_retry(context.delivery_count):
                await self._on_error(payload, exc)
            return Fail(ErrorDetail.from_exception(exc), None, exc)
        writes: tuple[StreamAdd, ...] = ()
        if result is not None:
            try:
                data = self._output(result)
                if self.output_topic is not None:
                    writes = (
                        publish_write(queues, settings, self.output_topic, data, cause=event),
                    )
            except (ValidationError, TypeError, ValueError) as exc:
                # The same result would come out of every attempt: no retry.
                error = (
                    _invalid("output", exc)
                    if isinstance(exc, ValidationError)
                    else ErrorDetail.from_exception(exc)
                )
                return DeadLetter(DeadLetterReason.NON_RETRYABLE, error)
        if self.on_success is not None:
            try:
                await self.on_success(payload, result)
            except Exception:
                logger.exception("%s: on_success failed (the message stays handled)", self.name)
        return Ack(writes)

    def _output(self, result: Any) -> Any:
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        if self.output_schema is not None:
            result = self.output_schema.model_validate(result).model_dump(mode="json")
        return result

    async def _on_error(self, payload: Any, error: BaseException) -> None:
        if self.on_error is None:
            return
        try:
            await self.on_error(payload, error)
        except Exception:
            logger.exception("%s: on_error failed", self.name)


def _invalid(which: str, exc: ValidationError) -> ErrorDetail:
    return ErrorDetail(
        error_type="ValidationError",
        message=f"{which} does not match its schema: {exc.error_count()} error(s)",
        details={
            "errors": exc.errors(include_url=False, include_context=False, include_input=False)
        },
    )

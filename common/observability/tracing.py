"""OpenTelemetry tracing of sends and handlings (the optional extra ``tracing``).

Off by default, and then free: OpenTelemetry is not imported and nothing is wrapped. Switch it
on before the workers, clients and producers are made, with :func:`enable` (optionally with a
``TracerProvider``; otherwise the global one) or the environment variable
``COMMON_TRACING=1``. Each object decides once, when it is constructed, whether it traces.

When on:

- every send of a :class:`~common.clients.BaseRedisClient` (``send_action_async``,
  ``send_actions_async``, ``send_action_async_with_callback``: kind PRODUCER;
  ``send_action_pseudo_sync``: kind CLIENT, until the reply) and every
  :meth:`Producer.send_event <common.messaging.producer.Producer.send_event>` is a span, whose
  W3C ``traceparent`` travels in the envelope: ``metadata["traceparent"]`` of a
  :class:`~common.models.DomainAction`, ``Event.traceparent`` of an event;
- every action a :class:`~common.workers.BaseWorker` handles and every event a declarative
  handler handles is a span (kind CONSUMER) whose parent is the envelope's ``traceparent``:
  a pseudo-sync call across two services is one trace, and sends made inside a handler are
  children of its span.

Span names are ``send <action type>``, ``call <action type>``, ``publish <topic>`` and
``process <action type or event name>``; attributes follow OpenTelemetry's messaging
conventions (``messaging.system`` is ``redis``) plus ``common.trace_id``, the envelope's own
trace id (which log lines carry).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from common.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TracerProvider

__all__ = [
    "ENV_VAR",
    "TRACEPARENT",
    "current_span_ids",
    "current_traceparent",
    "disable",
    "enable",
    "is_enabled",
    "trace_client",
    "trace_producer",
    "trace_subscriber",
    "trace_worker",
]

ENV_VAR = "COMMON_TRACING"
TRACEPARENT = "traceparent"
_TRUE = frozenset({"1", "true", "yes", "on"})


class _Otel:
    """What tracing needs from OpenTelemetry: made (and OpenTelemetry imported) only when on."""

    def __init__(self, provider: TracerProvider | None) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "tracing needs OpenTelemetry: pip install 'redis-streams-common[tracing]'"
            ) from exc
        from common import __version__

        self.trace = trace
        self.kind = trace.SpanKind
        self.error = trace.Status(trace.StatusCode.ERROR)
        self.tracer = trace.get_tracer("common", __version__, tracer_provider=provider)
        self.propagator = TraceContextTextMapPropagator()

    def parent(self, traceparent: Any) -> Context | None:
        """The context of the span that sent an envelope carrying ``traceparent``."""
        if not isinstance(traceparent, str) or not traceparent:
            return None
        return self.propagator.extract({TRACEPARENT: traceparent})

    def traceparent(self) -> str | None:
        """The ``traceparent`` of the current span."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        return carrier.get(TRACEPARENT)


_otel: _Otel | None = None
_from_env = os.environ.get(ENV_VAR, "").strip().lower() in _TRUE


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Trace the workers, clients and producers constructed from now on (with
    ``tracer_provider``, or the global provider of ``opentelemetry.trace``)."""
    global _otel, _from_env
    _otel = _Otel(tracer_provider)
    _from_env = False


def disable() -> None:
    """Stop tracing the objects constructed from now on (those made before keep their choice)."""
    global _otel, _from_env
    _otel = None
    _from_env = False


def is_enabled() -> bool:
    """Whether objects constructed now are traced."""
    return _otel is not None or _from_env


def _active() -> _Otel | None:
    global _otel, _from_env
    if _otel is None and _from_env:
        _from_env = False
        _otel = _Otel(None)
    return _otel


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (None when tracing is off)."""
    return _otel.traceparent() if _otel is not None else None


def current_span_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, or None (tracing off, no span)."""
    if _otel is None:
        return None
    context = _otel.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _action_attributes(action: Any, stream: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "redis",
        "messaging.operation.type": operation,
        "messaging.destination.name": stream,
        "messaging.message.id": str(action.action_id),
        "messaging.message.conversation_id": action.correlation_id or "",
        "common.action_type": action.action_type,
        "common.trace_id": action.trace_id or "",
    }


def _with_traceparent(otel: _Otel, action: Any) -> Any:
    traceparent = otel.traceparent()
    if traceparent is None:
        return action
    return action.model_copy(update={"metadata": {**action.metadata, TRACEPARENT: traceparent}})


def trace_client(client: Any) -> None:
    """Trace the sends of a ``BaseRedisClient`` (when tracing is on; else nothing)."""
    otel = _active()
    if otel is None:
        return
    tracer, producer_kind = otel.tracer, otel.kind.PRODUCER

    def traced_send(name: str) -> None:
        send: Callable[..., Awaitable[Any]] = getattr(client, name)

        async def traced(action: Any, *args: Any, **kwargs: Any) -> Any:
            attributes = _action_attributes(action, client.stream_for(action), "send")
            with tracer.start_as_current_span(
                f"send {action.action_type}", kind=producer_kind, attributes=attributes
            ):
                return await send(_with_traceparent(otel, action), *args, **kwargs)

        setattr(client, name, traced)

    traced_send("send_action_async")
    traced_send("send_action_async_with_callback")

    call: Callable[..., Awaitable[Any]] = client.send_action_pseudo_sync

    async def traced_call(action: Any, *args: Any, **kwargs: Any) -> Any:
        attributes = _action_attributes(action, client.stream_for(action), "send")
        with tracer.start_as_current_span(
            f"call {action.action_type}", kind=otel.kind.CLIENT, attributes=attributes
        ) as span:
            response = await call(_with_traceparent(otel, action), *args, **kwargs)
            span.set_attribute("common.status_code", response.status_code)
            if not response.success:
                span.set_status(otel.error)
            return response

    client.send_action_pseudo_sync = traced_call

    send_many: Callable[..., Awaitable[Any]] = client.send_actions_async

    async def traced_send_many(actions: Any) -> Any:
        actions = list(actions)
        with tracer.start_as_current_span(
            "send batch",
            kind=producer_kind,
            attributes={
                "messaging.system": "redis",
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(actions),
            },
        ):
            return await send_many([_with_traceparent(otel, a) for a in actions])

    client.send_actions_async = traced_send_many


def trace_worker(worker: Any) -> None:
    """Trace the actions a ``BaseWorker`` handles (when tracing is on; else nothing)."""
    otel = _active()
    if otel is None:
        return
    tracer, consumer_kind = otel.tracer, otel.kind.CONSUMER
    handle: Callable[[Any], Awaitable[Any]] = worker._handle_action
    stream = worker.action_stream_name
    group, consumer = worker.consumer_group_name, worker.consumer_name

    async def traced(action: Any) -> Any:
        attributes = _action_attributes(action, stream, "process")
        attributes["messaging.consumer.group.name"] = group
        attributes["messaging.client.id"] = consumer
        with tracer.start_as_current_span(
            f"process {action.action_type}",
            context=otel.parent(action.metadata.get(TRACEPARENT)),
            kind=consumer_kind,
            attributes=attributes,
        ):
            return await handle(action)

    worker._handle_action = traced


def _event_attributes(event: Any, topic: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "redis",
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        "messaging.message.id": event.event_id,
        "messaging.message.conversation_id": event.correlation_id,
        "common.event": event.name,
        "common.trace_id": event.trace_id,
    }


def trace_producer(producer: Any) -> None:
    """Trace the events a ``Producer`` publishes (when tracing is on; else nothing)."""
    otel = _active()
    if otel is None:
        return
    tracer, producer_kind = otel.tracer, otel.kind.PRODUCER
    send_event: Callable[[str, Any], Awaitable[str]] = producer.send_event

    async def traced(topic: str, event: Any) -> str:
        with tracer.start_as_current_span(
            f"publish {topic}",
            kind=producer_kind,
            attributes=_event_attributes(event, topic, "send"),
        ):
            traceparent = otel.traceparent()
            if traceparent is not None:
                event = event.model_copy(update={TRACEPARENT: traceparent})
            return await send_event(topic, event)

    producer.send_event = traced


def trace_subscriber(subscriber: Any) -> None:
    """Trace the events a ``TopicSubscriber``'s handlers handle (when tracing is on)."""
    otel = _active()
    if otel is None:
        return
    tracer, consumer_kind = otel.tracer, otel.kind.CONSUMER
    run: Callable[..., Awaitable[Any]] = subscriber._run_handler
    group, consumer = subscriber.group, subscriber.consumer

    async def traced(handler: Any, event: Any, context: Any, *args: Any) -> Any:
        attributes = _event_attributes(event, context.stream, "process")
        attributes["messaging.consumer.group.name"] = group
        attributes["messaging.client.id"] = consumer
        attributes["common.handler"] = handler.name
        with tracer.start_as_current_span(
            f"process {event.name}",
            context=otel.parent(event.traceparent),
            kind=consumer_kind,
            attributes=attributes,
        ) as span:
            outcome = await run(handler, event, context, *args)
            error = getattr(outcome, "error", None)
            if error is not None:  # Fail or DeadLetter: the handler raised, or its data is bad
                span.set_status(otel.trace.Status(otel.trace.StatusCode.ERROR, error.message))
                span.set_attribute("error.type", error.error_type)
            return outcome

    subscriber._run_handler = traced

"""Structured logs: which delivery a log line is about, and an opt-in JSON formatter.

While a worker runs a handler, the delivery's service, consumer and (envelope) trace id are
bound in a context variable (:func:`bind_delivery`), so that every log line written meanwhile,
by the toolkit or by the handler's own loggers, can say which action or event it is about:
:class:`JsonFormatter` writes them as fields, and :class:`DeliveryLogFilter` puts them on each
record (``%(trace_id)s``) for any other formatter. Nothing is configured by default: the
``common`` logger only has a ``NullHandler``; :func:`configure_json_logging` opts in.

The binding costs a little per message, so it is switched on only once something reads it:
making a :class:`JsonFormatter` or a :class:`DeliveryLogFilter` (or calling
:func:`enable_delivery_context`) switches it on for the workers constructed from then on.
Configure logging before the workers are made (as any application does at start-up).

Connection URLs in messages and tracebacks are written with their passwords redacted.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from common.secrets import redact_url

__all__ = [
    "DeliveryLogFilter",
    "JsonFormatter",
    "bind_delivery",
    "bind_subscriber",
    "bind_worker",
    "configure_json_logging",
    "current_trace_id",
    "delivery_context_enabled",
    "enable_delivery_context",
    "redact_text",
    "reset_delivery",
]

# (service, consumer, trace id) of the delivery whose handler is running, if any.
_delivery: ContextVar[tuple[str, str, str | None] | None] = ContextVar(
    "common_delivery", default=None
)

_wanted = False  # is the delivery context read by anybody (a JsonFormatter, a filter)?

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def bind_delivery(service: str, consumer: str, trace_id: str | None) -> Token[Any]:
    """Say, until :func:`reset_delivery`, that the running code handles a delivery of
    ``service``'s ``consumer`` with ``trace_id`` (what log lines then carry)."""
    return _delivery.set((service, consumer, trace_id))


def reset_delivery(token: Token[Any]) -> None:
    """Undo the :func:`bind_delivery` that returned ``token``."""
    _delivery.reset(token)


def current_trace_id() -> str | None:
    """The envelope trace id of the action or event being handled, if any."""
    bound = _delivery.get()
    return bound[2] if bound is not None else None


def enable_delivery_context() -> None:
    """Bind the delivery context in the workers constructed from now on."""
    global _wanted
    _wanted = True


def delivery_context_enabled() -> bool:
    return _wanted


def bind_worker(worker: Any) -> None:
    """Make a ``BaseWorker`` bind each action's context while its handler runs (if enabled)."""
    if not _wanted:
        return
    handle: Callable[[Any], Awaitable[Any]] = worker._handle_action
    service, consumer = worker.service_name, worker.consumer_name

    async def bound(action: Any) -> Any:
        token = _delivery.set((service, consumer, action.trace_id))
        try:
            return await handle(action)
        finally:
            _delivery.reset(token)

    worker._handle_action = bound


def bind_subscriber(subscriber: Any) -> None:
    """Make a ``TopicSubscriber`` bind each event's context while its handler runs (if
    enabled)."""
    if not _wanted:
        return
    run: Callable[..., Awaitable[Any]] = subscriber._run_handler
    service, consumer = subscriber.settings.service_name, subscriber.consumer

    async def bound(handler: Any, event: Any, *args: Any) -> Any:
        token = _delivery.set((service, consumer, event.trace_id))
        try:
            return await run(handler, event, *args)
        finally:
            _delivery.reset(token)

    subscriber._run_handler = bound


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class DeliveryLogFilter(logging.Filter):
    """Adds ``service``, ``consumer`` and ``trace_id`` to each record (None outside a
    handler, unless the record has them already). Attach it to a handler."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        enable_delivery_context()

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _delivery.get()
        for index, name in enumerate(("service", "consumer", "trace_id")):
            if getattr(record, name, None) is None:
                setattr(record, name, bound[index] if bound is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then, when known, ``service``, ``consumer``, ``trace_id`` (the envelope's),
    ``otel_trace_id`` and ``span_id`` (when OpenTelemetry tracing is on and a span is
    current), ``exception`` and ``stack``. ``service`` is the default service name."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service
        enable_delivery_context()

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        bound = _delivery.get()
        service = getattr(record, "service", None) or (bound[0] if bound else self.service)
        consumer = getattr(record, "consumer", None) or (bound[1] if bound else None)
        trace_id = getattr(record, "trace_id", None) or (bound[2] if bound else None)
        if service:
            doc["service"] = service
        if consumer:
            doc["consumer"] = consumer
        if trace_id:
            doc["trace_id"] = trace_id
        from common.observability import tracing  # no cycle at import time; no OTel import

        ids = tracing.current_span_ids()
        if ids is not None:
            doc["otel_trace_id"], doc["span_id"] = ids
        if record.exc_info:
            doc["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exception"] = redact_text(record.exc_text)
        if record.stack_info:
            doc["stack"] = redact_text(self.formatStack(record.stack_info))
        return orjson.dumps(doc, default=str).decode()


def configure_json_logging(
    level: int | str = logging.INFO,
    *,
    stream: IO[str] | None = None,
    service: str | None = None,
    logger: str = "common",
) -> logging.Handler:
    """Write ``logger``'s records (default: the toolkit's; ``""``: every logger) as JSON lines
    on ``stream`` (default stderr) at ``level``; returns the handler (remove it to undo)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(DeliveryLogFilter())
    target = logging.getLogger(logger)
    target.addHandler(handler)
    target.setLevel(level)
    return handler

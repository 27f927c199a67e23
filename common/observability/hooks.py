"""The hooks the toolkit's constructors call: each decides once what its object records.

A worker, subscriber, client or producer calls its hook once, when it is constructed; the hook
wraps the object's methods (as instance attributes) only for what is switched on then:

- detailed metrics (:mod:`common.observability.handler_metrics`): handlings counted by type
  and timed;
- tracing (:mod:`common.observability.tracing`): spans around sends and handlers;
- the delivery log context (:mod:`common.observability.logs`, on once a
  :class:`~common.observability.logs.JsonFormatter` or
  :class:`~common.observability.logs.DeliveryLogFilter` exists): the handled message's service,
  consumer and trace id bound while its handler runs.

With all off, nothing is wrapped: the hot path is exactly what it is without this module.
"""

from __future__ import annotations

from typing import Any

from common.observability import handler_metrics, logs, tracing

__all__ = [
    "instrument_client",
    "instrument_producer",
    "instrument_subscriber",
    "instrument_worker",
]


def instrument_worker(worker: Any) -> None:
    """Hook of ``BaseWorker.__init__``: wraps ``_process_delivery`` (detailed metrics) and
    ``_handle_action`` (tracing, log context) if they are on."""
    handler_metrics.measure_worker(worker)
    tracing.trace_worker(worker)
    logs.bind_worker(worker)


def instrument_subscriber(subscriber: Any) -> None:
    """Hook of ``TopicSubscriber.__init__``: wraps ``_run_handler`` if anything is on (the
    metrics' timing innermost, so that it leaves out the span and the log context)."""
    handler_metrics.measure_subscriber(subscriber)
    tracing.trace_subscriber(subscriber)
    logs.bind_subscriber(subscriber)


def instrument_client(client: Any) -> None:
    """Hook of ``BaseRedisClient.__init__``: wraps the send methods if tracing is on."""
    tracing.trace_client(client)


def instrument_producer(producer: Any) -> None:
    """Hook of ``Producer.__init__``: wraps ``send_event`` if tracing is on."""
    tracing.trace_producer(producer)

"""Detailed metrics: handlings by type and a handler latency histogram (opt-in).

Off by default, and then free: ``prometheus_client`` is not imported and nothing is wrapped.
Switch it on before the workers and subscribers are made, with :func:`enable_detailed` (also
re-exported by :mod:`common.ops.metrics`) or the environment variable
``COMMON_METRICS_DETAILED=1``; like tracing, each object decides once, when it is constructed.

When on, every delivery whose handler ran is counted and timed (``time.perf_counter``, from
the processor taking the entry to the handler's outcome, decoding included):

- ``common_action_handled_total`` and ``common_action_failed_total`` by ``service``, ``stream``
  and ``type`` (the action type, or the event's name for a declarative handler): an ``Ack`` is
  handled; a failure (a retry, a non-retryable error, an invalid result or input) is failed;
- ``common_handler_duration_seconds``, a histogram by ``service`` and ``type``: its count is
  handled + failed.

Deliveries no handler ran for are not counted here (malformed entries, expired deadlines,
refused reply targets, unknown action types, events nobody handles): the dead-letter counter
(by reason) of :mod:`common.ops.metrics` has them, and their types cannot grow the label set.
The labelled children are cached per stream and type, so a handling costs two dict look-ups,
two clock reads, one ``inc`` and one ``observe``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from common.errors import ConfigurationError

__all__ = [
    "BUCKETS",
    "ENV_VAR",
    "detailed_collectors",
    "detailed_enabled",
    "disable_detailed",
    "enable_detailed",
    "measure_subscriber",
    "measure_worker",
]

ENV_VAR = "COMMON_METRICS_DETAILED"
_TRUE = frozenset({"1", "true", "yes", "on"})
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""The histogram's upper bounds in seconds (sub-millisecond handlers are common here)."""

# Dead-letter reasons (DeadLetterReason values) of deliveries whose handler did not run.
_NOT_RUN = frozenset(
    {"malformed", "payload_too_large", "refused_target", "expired", "unknown_action"}
)


class _Instruments:
    """The three metrics: made (and ``prometheus_client`` imported) once, when first needed."""

    def __init__(self) -> None:
        try:
            from prometheus_client import Counter, Histogram
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "detailed metrics need prometheus-client: "
                "pip install 'redis-streams-common[metrics]'"
            ) from exc
        labels = ["service", "stream", "type"]
        # registry=None: the collectors of common.ops.metrics (or, in multi-process mode, the
        # files under PROMETHEUS_MULTIPROC_DIR) expose them, not the global default registry.
        self.handled = Counter(
            "common_action_handled", "Handlings that succeeded, by type.", labels, registry=None
        )
        self.failed = Counter(
            "common_action_failed", "Handlings that failed, by type.", labels, registry=None
        )
        self.duration = Histogram(
            "common_handler_duration_seconds",
            "Time from taking a delivery to its handler's outcome.",
            ["service", "type"],
            buckets=BUCKETS,
            registry=None,
        )

    def children(self, service: str, stream: str, kind: str) -> tuple[Any, Any, Any]:
        """(handled, failed, duration) of one service, stream and type."""
        return (
            self.handled.labels(service, stream, kind),
            self.failed.labels(service, stream, kind),
            self.duration.labels(service, kind),
        )


_instruments: _Instruments | None = None
_on = False
_from_env = os.environ.get(ENV_VAR, "").strip().lower() in _TRUE


def enable_detailed() -> None:
    """Count and time the handlings of the workers and subscribers constructed from now on."""
    global _on, _from_env
    _active_instruments()  # fails now (clearly) if prometheus-client is missing
    _on, _from_env = True, False


def disable_detailed() -> None:
    """Stop measuring objects constructed from now on (those made before keep their choice)."""
    global _on, _from_env
    _on, _from_env = False, False


def detailed_enabled() -> bool:
    """Whether objects constructed now are measured."""
    return _on or _from_env


def _active_instruments() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def _active() -> _Instruments | None:
    return _active_instruments() if detailed_enabled() else None


def detailed_collectors() -> Iterable[Any]:
    """The metrics to expose: none until detailed metrics were first switched on."""
    return (
        ()
        if _instruments is None
        else (
            _instruments.handled,
            _instruments.failed,
            _instruments.duration,
        )
    )


Children = tuple[Any, Any, Any]


def measure_worker(worker: Any) -> None:
    """Count and time a ``BaseWorker``'s handlings (when detailed metrics are on; else
    nothing): wraps ``_process_delivery``."""
    instruments = _active()
    if instruments is None:
        return
    from common.workers.outcome import Ack, DeadLetter  # here: the workers import this module

    process: Callable[[Any], Awaitable[Any]] = worker._process_delivery
    service, first_stream = worker.service_name, worker.stream
    cache: dict[tuple[str, str], Children] = {}
    clock = time.perf_counter

    def record(delivery: Any, outcome: Any, elapsed: float) -> None:
        action = delivery.payload
        if action is None or (type(outcome) is DeadLetter and outcome.reason in _NOT_RUN):
            return  # no handler ran: not decoded, expired, refused, unknown type
        key = (delivery.stream or first_stream, action.action_type)
        children = cache.get(key)
        if children is None:
            children = cache[key] = instruments.children(service, key[0], key[1])
        (children[0] if type(outcome) is Ack else children[1]).inc()
        children[2].observe(elapsed)

    async def measured(delivery: Any) -> Any:
        started = clock()
        try:
            outcome = await process(delivery)
        except Exception:
            record(delivery, None, clock() - started)  # the engine makes it a Fail
            raise
        record(delivery, outcome, clock() - started)
        return outcome

    worker._process_delivery = measured


def measure_subscriber(subscriber: Any) -> None:
    """Count and time a ``TopicSubscriber``'s handlings (when detailed metrics are on; else
    nothing): wraps ``_run_handler``, the run of the handler an event's route picked."""
    instruments = _active()
    if instruments is None:
        return
    from common.workers.outcome import Ack

    run: Callable[..., Awaitable[Any]] = subscriber._run_handler
    service = subscriber.settings.service_name
    cache: dict[tuple[str, str], Children] = {}
    clock = time.perf_counter

    def children_of(stream: str, name: str) -> Children:
        children = cache.get((stream, name))
        if children is None:
            children = cache[(stream, name)] = instruments.children(service, stream, name)
        return children

    async def measured(handler: Any, event: Any, context: Any, *args: Any) -> Any:
        started = clock()
        try:
            outcome = await run(handler, event, context, *args)
        except Exception:
            children = children_of(context.stream, event.name)
            children[1].inc()
            children[2].observe(clock() - started)
            raise
        elapsed = clock() - started
        children = children_of(context.stream, event.name)
        (children[0] if type(outcome) is Ack else children[1]).inc()
        children[2].observe(elapsed)
        return outcome

    subscriber._run_handler = measured

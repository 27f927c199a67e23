"""Detailed metrics: handlings by type and a handler latency histogram (opt-in).

Off by default, and then free: nothing is wrapped. Switch it on before the workers and
subscribers are made, with :func:`enable_detailed` (also re-exported by
:mod:`common.ops.metrics`) or the environment variable ``COMMON_METRICS_DETAILED=1``; like
tracing, each object decides once, when it is constructed.

When on, every delivery whose handler ran is counted and timed (``time.perf_counter``, from
the processor taking the entry to the handler's outcome, decoding included) into a
:class:`Tally` per service, stream and type (the action type, or the event's name for a
declarative handler): plain integers and a list of bucket counts, no lock and no
``prometheus_client`` call per message (about a dict look-up, two clock reads, a ``bisect``
and three additions). :mod:`common.ops.metrics` turns the tallies into metrics when Prometheus
scrapes (and :mod:`common.ops.multiprocess` mirrors them for ``run --processes``):

- ``common_handled_by_type_total`` and ``common_failed_by_type_total`` by ``service``, ``stream``
  and ``type``: an ``Ack`` is handled; a failure (a retry, a non-retryable error, an invalid
  result or input) is failed;
- ``common_handler_duration_seconds``, a histogram by ``service`` and ``type`` (:data:`BUCKETS`);
  its count is handled + failed.

Deliveries no handler ran for are not counted here (malformed entries, expired deadlines,
refused reply targets, unknown action types, events nobody handles): the dead-letter counter
(by reason) of :mod:`common.ops.metrics` has them, and their types cannot grow the label set.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "BUCKETS",
    "ENV_VAR",
    "Tally",
    "detailed_enabled",
    "disable_detailed",
    "enable_detailed",
    "measure_subscriber",
    "measure_worker",
    "tallies",
]

ENV_VAR = "COMMON_METRICS_DETAILED"
_TRUE = frozenset({"1", "true", "yes", "on"})
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""The histogram's upper bounds in seconds (sub-millisecond handlers are common here); a last
bucket, +Inf, takes the rest."""

# Dead-letter reasons (DeadLetterReason values) of deliveries whose handler did not run.
_NOT_RUN = frozenset(
    {"malformed", "payload_too_large", "refused_target", "expired", "unknown_action"}
)


class Tally:
    """The handlings of one service, stream and type: counts and the duration histogram
    (``buckets[i]``: durations <= ``BUCKETS[i]`` and above the bound before; the last: above
    every bound). Only ever grows."""

    __slots__ = ("buckets", "failed", "handled", "seconds")

    def __init__(self) -> None:
        self.handled = 0
        self.failed = 0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0  # the durations' sum

    def add(self, ok: bool, elapsed: float) -> None:
        if ok:
            self.handled += 1
        else:
            self.failed += 1
        self.buckets[bisect_left(BUCKETS, elapsed)] += 1
        self.seconds += elapsed


_tallies: dict[tuple[str, str, str], Tally] = {}
_on = False
_from_env = os.environ.get(ENV_VAR, "").strip().lower() in _TRUE


def enable_detailed() -> None:
    """Count and time the handlings of the workers and subscribers constructed from now on."""
    global _on, _from_env
    _on, _from_env = True, False


def disable_detailed() -> None:
    """Stop measuring objects constructed from now on (those made before keep their choice)."""
    global _on, _from_env
    _on, _from_env = False, False


def detailed_enabled() -> bool:
    """Whether objects constructed now are measured."""
    return _on or _from_env


def tallies() -> dict[tuple[str, str, str], Tally]:
    """This process's tallies by (service, stream, type): empty until something was measured."""
    return _tallies


def _tally(service: str, stream: str, kind: str) -> Tally:
    tally = _tallies.get((service, stream, kind))
    if tally is None:
        tally = _tallies[(service, stream, kind)] = Tally()
    return tally


def measure_worker(worker: Any) -> None:
    """Count and time a ``BaseWorker``'s handlings (when detailed metrics are on; else
    nothing): wraps ``_process_delivery``."""
    if not detailed_enabled():
        return
    from common.workers.outcome import Ack, DeadLetter  # here: the workers import this module

    process: Callable[[Any], Awaitable[Any]] = worker._process_delivery
    service, first_stream = worker.service_name, worker.stream
    cache: dict[tuple[str, str], Tally] = {}
    clock = time.perf_counter

    def record(delivery: Any, outcome: Any, elapsed: float) -> None:
        action = delivery.payload
        if action is None or (type(outcome) is DeadLetter and outcome.reason in _NOT_RUN):
            return  # no handler ran: not decoded, expired, refused, unknown type
        key = (delivery.stream or first_stream, action.action_type)
        tally = cache.get(key)
        if tally is None:
            tally = cache[key] = _tally(service, key[0], key[1])
        tally.add(type(outcome) is Ack, elapsed)

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
    if not detailed_enabled():
        return
    from common.workers.outcome import Ack

    run: Callable[..., Awaitable[Any]] = subscriber._run_handler
    service = subscriber.settings.service_name
    cache: dict[tuple[str, str], Tally] = {}
    clock = time.perf_counter

    def tally_of(stream: str, name: str) -> Tally:
        tally = cache.get((stream, name))
        if tally is None:
            tally = cache[(stream, name)] = _tally(service, stream, name)
        return tally

    async def measured(handler: Any, event: Any, context: Any, *args: Any) -> Any:
        started = clock()
        try:
            outcome = await run(handler, event, context, *args)
        except Exception:
            tally_of(context.stream, event.name).add(False, clock() - started)
            raise
        tally_of(context.stream, event.name).add(type(outcome) is Ack, clock() - started)
        return outcome

    subscriber._run_handler = measured

"""Prometheus metrics of worker pools (``pip install 'redis-streams-common[metrics]'``).

The base metrics add nothing to the per-message path; they are read when Prometheus scrapes:

- counters are the consumers' :class:`~common.workers.stats.WorkerStats`, summed per service
  and stream (a consumer's first stream: the service's action stream, or a subscriber's first
  topic): ``common_actions_handled_total``, ``..._failed_total``, ``..._retried_total``,
  ``..._reclaimed_total``, ``..._expired_total``, ``common_actions_dead_lettered_total`` (by
  ``reason``), and ``common_outbox_flush_errors_total``; ``common_workers_running``;
- gauges are sampled from Redis by :meth:`StreamGauges.sample` (the ``/metrics`` route does it
  before each scrape): ``common_redis_up``, ``common_stream_length``, ``common_stream_lag``
  and ``common_stream_pending`` (by ``group``), ``common_stream_oldest_pending_age_seconds``,
  ``common_delayed_retries`` (by ``group``), ``common_scheduled_sends``,
  ``common_dead_letters``; for a pool of declarative workers, the streams are its topics.

Detailed metrics (:mod:`common.observability.handler_metrics`), opt-in because they cost a
little work on every message (a tally: no ``prometheus_client`` call): :func:`enable_detailed`
(or ``COMMON_METRICS_DETAILED=1``) before the pools are made adds
``common_handled_by_type_total`` and ``common_failed_by_type_total`` by ``service``, ``stream``
and ``type``, and the ``common_handler_duration_seconds`` histogram by ``service`` and
``type``; :class:`DetailedMetrics` reads the tallies at scrape time, and
:func:`metrics_registry` exposes them with the rest.

Several processes (``run --processes P --metrics-port PORT``): see
:mod:`common.ops.multiprocess`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.observability.handler_metrics import (
    BUCKETS,
    detailed_enabled,
    disable_detailed,
    enable_detailed,
    tallies,
)
from common.ops.status import StreamStatus, stream_status
from common.ops.streams import ACTIONS, StreamRef, pool_stream_refs
from common.ops.topics import topic_ref

__all__ = [
    "BUCKET_BOUNDS",
    "CONTENT_TYPE_LATEST",
    "COUNTERS",
    "DetailedMetrics",
    "GaugeSource",
    "PoolMetrics",
    "StreamGauges",
    "StreamTotals",
    "detailed_enabled",
    "disable_detailed",
    "enable_detailed",
    "metric_refs",
    "metrics_registry",
    "pool_metric_refs",
    "render",
    "totals_by_stream",
]

logger = logging.getLogger(__name__)

COUNTERS = (
    ("handled", "Actions handled successfully."),
    ("failed", "Handler failures (each failed delivery)."),
    ("retried", "Deliveries re-run after a failure."),
    ("reclaimed", "Entries claimed from dead or stuck consumers."),
    ("expired", "Actions not run because their deadline had passed."),
)
"""The ``common_actions_<name>_total`` counters: ``WorkerStats`` attribute and help text."""
DEAD_LETTERED_HELP = "Actions moved to the dead-letter stream, by reason."
FLUSH_ERRORS_HELP = "Outbox flushes that Redis refused."
RUNNING_HELP = "Workers running."
HANDLED_HELP = "Handlings that succeeded, by type."
FAILED_HELP = "Handlings that failed, by type."
DURATION_HELP = "Time from taking a delivery to its handler's outcome."
BUCKET_BOUNDS = [repr(float(b)) for b in BUCKETS] + ["+Inf"]
"""The histogram's ``le`` labels (as ``prometheus_client`` writes them: ``0.0005``, ``1.0``)."""


@dataclass(slots=True)
class StreamTotals:
    """The counters of the consumers of one service and stream, summed."""

    counts: dict[str, int] = field(default_factory=dict)  # COUNTERS' names
    dead_lettered: dict[str, int] = field(default_factory=dict)  # by reason
    flush_errors: int = 0


def totals_by_stream(pools: Iterable[Any]) -> dict[tuple[str, str], StreamTotals]:
    """Every consumer's ``WorkerStats`` summed per (service, the consumer's first stream)."""
    totals: dict[tuple[str, str], StreamTotals] = {}
    for pool in pools:
        service = pool.settings.service_name
        for worker in pool.workers:
            total = totals.get((service, worker.stream))
            if total is None:
                total = totals[(service, worker.stream)] = StreamTotals(
                    {name: 0 for name, _ in COUNTERS}
                )
            stats = worker.stats
            for name, _ in COUNTERS:
                total.counts[name] += getattr(stats, name)
            for reason, n in stats.dead_lettered.items():
                total.dead_lettered[str(reason)] = total.dead_lettered.get(str(reason), 0) + n
            total.flush_errors += stats.flush_errors
    return totals


def running_by_service(pools: Iterable[Any]) -> dict[str, int]:
    """Running consumers per service."""
    running: dict[str, int] = {}
    for pool in pools:
        service = pool.settings.service_name
        running[service] = running.get(service, 0) + sum(1 for w in pool.workers if w.is_running)
    return running


def metric_refs(settings: CommonAppSettings, subscriptions: Any = None) -> list[StreamRef]:
    """The streams whose gauges are reported: the service's action stream partitions, or the
    topics of declarative ``subscriptions`` (each topic once, its groups' dead letters)."""
    queues = QueueManager(settings.queue_prefix, settings.environment)
    service = settings.service_name
    if subscriptions is None:
        partitions = queues.partition_streams(service, settings.stream_partitions)
        return [StreamRef(ACTIONS, service, s, dlq) for s, dlq in partitions.items()]
    refs: dict[str, StreamRef] = {}
    for sub in subscriptions:
        for topic in sub.topics:
            if topic not in refs:
                refs[topic] = topic_ref(queues, topic)
    return list(refs.values())


def pool_metric_refs(pool: Any) -> list[StreamRef]:
    """The streams of a pool's gauges (a ``MessagingPool``: its topics)."""
    subscriptions = getattr(pool, "subscriptions", None)
    if subscriptions is not None:
        return metric_refs(pool.settings, subscriptions)
    return pool_stream_refs(pool)


@dataclass(frozen=True, slots=True)
class GaugeSource:
    """Where one service's gauges are read: its Redis and its streams (both asked for at each
    sample: a pool has a connection only while it runs)."""

    service: str
    redis: Callable[[], aioredis.Redis]
    refs: Callable[[], Sequence[StreamRef]]


class StreamGauges(Collector):
    """The gauges sampled from Redis (see the module docstring), from the last :meth:`sample`."""

    def __init__(self, sources: Sequence[GaugeSource], sample_timeout_s: float = 2.0) -> None:
        self.sources = list(sources)
        self.sample_timeout_s = sample_timeout_s
        self._sampled: list[tuple[str, StreamStatus]] = []
        self._redis_up: dict[str, bool] = {}

    async def sample(self) -> None:
        """Read the gauges from Redis (bounded; a source whose Redis fails reports ``up`` 0)."""
        sampled: list[tuple[str, StreamStatus]] = []
        for source in self.sources:
            service = source.service
            try:
                redis = source.redis()
                async with asyncio.timeout(self.sample_timeout_s):
                    for ref in source.refs():
                        sampled.append((service, await stream_status(redis, ref)))
                self._redis_up[service] = True
            except Exception as exc:
                logger.debug("metrics: could not sample %s: %r", service, exc)
                self._redis_up[service] = False
        self._sampled = sampled

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "common_redis_up", "1 if the last sample could read Redis.", labels=["service"]
        )
        for service, ok in sorted(self._redis_up.items()):
            up.add_metric([service], 1.0 if ok else 0.0)
        yield up
        labels = ["service", "stream"]
        glabels = [*labels, "group"]
        length = GaugeMetricFamily("common_stream_length", "Entries in the stream.", labels=labels)
        lag = GaugeMetricFamily(
            "common_stream_lag", "Entries not yet delivered to the group.", labels=glabels
        )
        pending = GaugeMetricFamily(
            "common_stream_pending", "Entries delivered and not yet ACKed.", labels=glabels
        )
        oldest = GaugeMetricFamily(
            "common_stream_oldest_pending_age_seconds",
            "Age of the group's oldest pending entry (0: none pending).",
            labels=glabels,
        )
        delayed = GaugeMetricFamily(
            "common_delayed_retries", "Failed entries waiting for their retry.", labels=glabels
        )
        scheduled = GaugeMetricFamily(
            "common_scheduled_sends", "Delayed sends not yet due.", labels=labels
        )
        dead = GaugeMetricFamily(
            "common_dead_letters", "Records in the dead-letter stream.", labels=labels
        )
        for service, status in self._sampled:
            key = [service, status.stream]
            length.add_metric(key, float(status.length))
            scheduled.add_metric(key, float(status.scheduled))
            dead.add_metric(key, float(status.dead_letters))
            for group in status.groups:
                gkey = [*key, group.name]
                if group.lag is not None:
                    lag.add_metric(gkey, float(group.lag))
                pending.add_metric(gkey, float(group.pending))
                oldest.add_metric(gkey, float(group.oldest_pending_age_s or 0.0))
                delayed.add_metric(gkey, float(group.delayed))
        yield from (length, lag, pending, oldest, delayed, scheduled, dead)


def pool_gauge_source(pool: Any) -> GaugeSource:
    return GaugeSource(
        pool.settings.service_name, lambda: pool.redis, lambda: pool_metric_refs(pool)
    )


class PoolMetrics(Collector):
    """A Prometheus collector over ``pools``: counters live, gauges from the last sample."""

    def __init__(self, pools: Sequence[Any], sample_timeout_s: float = 2.0) -> None:
        self.pools = list(pools)
        self.gauges = StreamGauges([pool_gauge_source(p) for p in self.pools], sample_timeout_s)

    async def sample(self) -> None:
        """Read the gauges from Redis (see :meth:`StreamGauges.sample`)."""
        await self.gauges.sample()

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self.gauges.collect()

    def _counters(self) -> Iterable[Metric]:
        labels = ["service", "stream"]
        families = {
            name: CounterMetricFamily(f"common_actions_{name}", text, labels=labels)
            for name, text in COUNTERS
        }
        dead = CounterMetricFamily(
            "common_actions_dead_lettered", DEAD_LETTERED_HELP, labels=[*labels, "reason"]
        )
        flush_errors = CounterMetricFamily(
            "common_outbox_flush_errors", FLUSH_ERRORS_HELP, labels=labels
        )
        for (service, stream), total in totals_by_stream(self.pools).items():
            for name, n in total.counts.items():
                families[name].add_metric([service, stream], float(n))
            for reason, n in sorted(total.dead_lettered.items()):
                dead.add_metric([service, stream, reason], float(n))
            flush_errors.add_metric([service, stream], float(total.flush_errors))
        running = GaugeMetricFamily("common_workers_running", RUNNING_HELP, labels=["service"])
        for service, n in running_by_service(self.pools).items():
            running.add_metric([service], float(n))
        yield from families.values()
        yield dead
        yield flush_errors
        yield running


class DetailedMetrics(Collector):
    """The detailed metrics of this process, from its tallies (nothing until some handling
    was measured: none while detailed metrics are off)."""

    def collect(self) -> Iterator[Metric]:
        found = tallies()
        if not found:
            return
        labels = ["service", "stream", "type"]
        handled = CounterMetricFamily("common_handled_by_type", HANDLED_HELP, labels=labels)
        failed = CounterMetricFamily("common_failed_by_type", FAILED_HELP, labels=labels)
        durations: dict[tuple[str, str], tuple[list[int], float]] = {}
        for (service, stream, kind), tally in sorted(found.items()):
            handled.add_metric([service, stream, kind], float(tally.handled))
            failed.add_metric([service, stream, kind], float(tally.failed))
            buckets, seconds = durations.get((service, kind), ([0] * len(tally.buckets), 0.0))
            merged = [a + b for a, b in zip(buckets, tally.buckets, strict=True)]
            durations[(service, kind)] = (merged, seconds + tally.seconds)
        histogram = HistogramMetricFamily(
            "common_handler_duration_seconds", DURATION_HELP, labels=["service", "type"]
        )
        for (service, kind), (buckets, seconds) in durations.items():
            cumulative, running = [], 0
            for bound, n in zip(BUCKET_BOUNDS, buckets, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            histogram.add_metric([service, kind], cumulative, sum_value=seconds)
        yield from (handled, failed, histogram)


def metrics_registry(pools: Sequence[Any]) -> tuple[CollectorRegistry, PoolMetrics]:
    """A registry of its own holding a :class:`PoolMetrics` over ``pools`` and the detailed
    metrics."""
    registry = CollectorRegistry(auto_describe=False)
    collector = PoolMetrics(pools)
    registry.register(collector)
    registry.register(DetailedMetrics())
    return registry, collector


async def render(registry: CollectorRegistry, collector: PoolMetrics | StreamGauges) -> bytes:
    """Sample the gauges, then the text exposition format of everything in ``registry``."""
    await collector.sample()
    return generate_latest(registry)

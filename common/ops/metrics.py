"""Prometheus metrics of a process's worker pools (``pip install 'redis-streams-common[metrics]'``).

Everything is read when Prometheus scrapes, nothing is added to the per-message path:

- counters are the pools' :class:`~common.workers.stats.WorkerStats`, summed per service and
  stream: ``common_actions_handled_total``, ``..._failed_total``, ``..._retried_total``,
  ``..._reclaimed_total``, ``..._expired_total``, ``common_actions_dead_lettered_total`` (by
  ``reason``), and ``common_outbox_flush_errors_total``;
- gauges are sampled from Redis by :meth:`PoolMetrics.sample` (the ``/metrics`` route does it
  before each scrape): ``common_stream_length``, ``common_stream_lag`` and
  ``common_stream_pending`` (by ``group``), ``common_stream_oldest_pending_age_seconds``,
  ``common_delayed_retries`` (by ``group``), ``common_scheduled_sends``,
  ``common_dead_letters``; and ``common_workers_running``.

Not here: counts by action type (``WorkerStats`` does not keep them), and a handler latency
histogram (it would time every message on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.ops.status import StreamStatus, stream_status
from common.ops.streams import pool_stream_refs

__all__ = ["CONTENT_TYPE_LATEST", "PoolMetrics", "metrics_registry"]

logger = logging.getLogger(__name__)

_COUNTERS = (
    ("handled", "Actions handled successfully."),
    ("failed", "Handler failures (each failed delivery)."),
    ("retried", "Deliveries re-run after a failure."),
    ("reclaimed", "Entries claimed from dead or stuck consumers."),
    ("expired", "Actions not run because their deadline had passed."),
)


class PoolMetrics(Collector):
    """A Prometheus collector over ``pools``: counters live, gauges from the last sample."""

    def __init__(self, pools: Sequence[Any], sample_timeout_s: float = 2.0) -> None:
        self.pools = list(pools)
        self.sample_timeout_s = sample_timeout_s
        self._sampled: list[tuple[str, StreamStatus]] = []
        self._redis_up: dict[str, bool] = {}

    async def sample(self) -> None:
        """Read the gauges from Redis (bounded; a pool whose Redis fails reports ``up`` 0)."""
        sampled: list[tuple[str, StreamStatus]] = []
        for pool in self.pools:
            service = pool.settings.service_name
            try:
                redis = pool.redis
                async with asyncio.timeout(self.sample_timeout_s):
                    for ref in pool_stream_refs(pool):
                        sampled.append((service, await stream_status(redis, ref)))
                self._redis_up[service] = True
            except Exception as exc:
                logger.debug("metrics: could not sample %s: %r", service, exc)
                self._redis_up[service] = False
        self._sampled = sampled

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._gauges()

    def _counters(self) -> Iterable[Metric]:
        labels = ["service", "stream"]
        families = {
            name: CounterMetricFamily(f"common_actions_{name}", text, labels=labels)
            for name, text in _COUNTERS
        }
        dead = CounterMetricFamily(
            "common_actions_dead_lettered",
            "Actions moved to the dead-letter stream, by reason.",
            labels=[*labels, "reason"],
        )
        flush_errors = CounterMetricFamily(
            "common_outbox_flush_errors", "Outbox flushes that Redis refused.", labels=labels
        )
        running = GaugeMetricFamily(
            "common_workers_running", "Workers running in this process.", labels=["service"]
        )
        for pool in self.pools:
            service = pool.settings.service_name
            stream = pool_stream_refs(pool)[0].stream
            stats = [w.stats for w in pool.workers]
            for name, _ in _COUNTERS:
                families[name].add_metric(
                    [service, stream], float(sum(getattr(s, name) for s in stats))
                )
            reasons: dict[str, int] = {}
            for s in stats:
                for reason, n in s.dead_lettered.items():
                    reasons[str(reason)] = reasons.get(str(reason), 0) + n
            for reason, n in sorted(reasons.items()):
                dead.add_metric([service, stream, reason], float(n))
            flush_errors.add_metric([service, stream], float(sum(s.flush_errors for s in stats)))
            running.add_metric([service], float(sum(1 for w in pool.workers if w.is_running)))
        yield from families.values()
        yield dead
        yield flush_errors
        yield running

    def _gauges(self) -> Iterable[Metric]:
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


def metrics_registry(pools: Sequence[Any]) -> tuple[CollectorRegistry, PoolMetrics]:
    """A registry of its own holding a :class:`PoolMetrics` over ``pools``."""
    registry = CollectorRegistry(auto_describe=False)
    collector = PoolMetrics(pools)
    registry.register(collector)
    return registry, collector


async def render(registry: CollectorRegistry, collector: PoolMetrics) -> bytes:
    """Sample the gauges, then the text exposition format of everything in ``registry``."""
    await collector.sample()
    return generate_latest(registry)

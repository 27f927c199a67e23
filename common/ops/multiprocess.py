"""Metrics of ``python -m common run``: one process, or ``--processes P`` summed.

``run TARGET --metrics-port PORT`` serves ``GET /metrics`` (:class:`MetricsServer`):

- one process: the pool's :class:`~common.ops.metrics.PoolMetrics` (counters read from the
  workers' ``WorkerStats`` at scrape time, gauges sampled from Redis) and the detailed metrics,
  exactly as :func:`~common.ops.health.ops_router` would;
- ``--processes P``: the supervisor serves the sum over its children, with Prometheus's
  multi-process mode. It makes a fresh directory (``common-metrics-*`` under ``$TMPDIR``) and
  gives it to every child as ``PROMETHEUS_MULTIPROC_DIR``, with ``COMMON_METRICS_MIRROR_S``
  (default 1). Each child then runs a :class:`StatsMirror`: every that many seconds, and once
  more after its pool has drained at stop, it adds what its ``WorkerStats`` counted since the
  last time to multi-process-mode counters of the same names (files in that directory), and
  sets ``common_workers_running`` (a ``livesum`` gauge). So the base counters still cost
  nothing per message: the mirror reads the totals once a second. The detailed metrics'
  tallies (``COMMON_METRICS_DETAILED=1``, inherited by the children) are mirrored the same
  way, the histogram bucket by bucket. The supervisor answers a scrape with
  ``MultiProcessCollector`` over the directory (counters and histograms summed over every
  child, including those that exited or were restarted, so totals never go back) plus the
  gauges it samples from Redis itself (one connection of its own). The live gauge files of a
  child that exits are removed; the directory is removed when the supervisor exits.

A scrape lags the workers by up to one mirror interval, and a child killed with SIGKILL takes
what it counted since its last mirror with it (its actions are counted again by whoever runs
them after the reclaim).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S, connect_redis
from common.config import CommonAppSettings
from common.observability.handler_metrics import BUCKETS, Tally, tallies
from common.ops.metrics import (
    CONTENT_TYPE_LATEST,
    COUNTERS,
    DEAD_LETTERED_HELP,
    DURATION_HELP,
    FAILED_HELP,
    FLUSH_ERRORS_HELP,
    HANDLED_HELP,
    RUNNING_HELP,
    GaugeSource,
    StreamGauges,
    metrics_registry,
    render,
    running_by_service,
    totals_by_stream,
)
from common.ops.metrics_server import MetricsServer
from common.ops.streams import StreamRef
from common.supervisor import METRICS_MIRROR_ENV, Supervisor

__all__ = [
    "DEFAULT_MIRROR_S",
    "MULTIPROC_ENV",
    "StatsMirror",
    "process_metrics",
    "supervise_with_metrics",
]

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_MIRROR_S = 1.0


class StatsMirror:
    """Adds the growth of ``pools``' ``WorkerStats`` to multi-process-mode counters at each
    :meth:`mirror` (one per process: the counters are this process's files)."""

    def __init__(self, pools: Sequence[Any]) -> None:
        self.pools = list(pools)
        labels = ["service", "stream"]
        self.counters = {
            name: Counter(f"common_actions_{name}", text, labels, registry=None)
            for name, text in COUNTERS
        }
        self.dead_lettered = Counter(
            "common_actions_dead_lettered", DEAD_LETTERED_HELP, [*labels, "reason"], registry=None
        )
        self.flush_errors = Counter(
            "common_outbox_flush_errors", FLUSH_ERRORS_HELP, labels, registry=None
        )
        self.running = Gauge(
            "common_workers_running",
            RUNNING_HELP,
            ["service"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self._mirrored: dict[tuple[str, ...], int] = {}
        type_labels = [*labels, "type"]
        self.handled = Counter("common_handled_by_type", HANDLED_HELP, type_labels, registry=None)
        self.failed = Counter("common_failed_by_type", FAILED_HELP, type_labels, registry=None)
        self.duration = Histogram(
            "common_handler_duration_seconds",
            DURATION_HELP,
            ["service", "type"],
            buckets=BUCKETS,
            registry=None,
        )
        self._tallied: dict[tuple[str, str, str], Tally] = {}  # what was mirrored of each

    def mirror(self) -> None:
        """Add what was counted since the last call (a total that went down, as ``handled``
        does when a reply cannot be written and the action is dead-lettered instead, is
        added again only once it passes what was mirrored)."""
        for (service, stream), total in totals_by_stream(self.pools).items():
            for name, n in total.counts.items():
                self._add(self.counters[name], (service, stream), name, n)
            for reason, n in total.dead_lettered.items():
                self._add(self.dead_lettered, (service, stream, reason), "dead", n)
            self._add(self.flush_errors, (service, stream), "flush", total.flush_errors)
        for service, n in running_by_service(self.pools).items():
            self.running.labels(service).set(n)
        for key, tally in list(tallies().items()):
            self._mirror_tally(key, tally)

    def _mirror_tally(self, key: tuple[str, str, str], tally: Tally) -> None:
        """Add a detailed tally's growth: counters, and the histogram's buckets and sum."""
        before = self._tallied.get(key)
        if before is None:
            before = self._tallied[key] = Tally()
        service, _stream, kind = key
        if tally.handled > before.handled:
            self.handled.labels(*key).inc(tally.handled - before.handled)
            before.handled = tally.handled
        if tally.failed > before.failed:
            self.failed.labels(*key).inc(tally.failed - before.failed)
            before.failed = tally.failed
        if tally.buckets != before.buckets:
            child = self.duration.labels(service, kind)
            # Bucket by bucket: Histogram.observe would take one duration at a time. The
            # child's per-bucket values (not cumulative) are what observe() increments.
            for i, (now, then) in enumerate(zip(tally.buckets, before.buckets, strict=True)):
                if now > then:
                    child._buckets[i].inc(now - then)
            child._sum.inc(tally.seconds - before.seconds)
            before.buckets = list(tally.buckets)
            before.seconds = tally.seconds

    def _add(self, counter: Counter, labels: tuple[str, ...], what: str, value: int) -> None:
        key = (what, *labels)
        before = self._mirrored.get(key, 0)
        if value > before:
            counter.labels(*labels).inc(value - before)
            self._mirrored[key] = value

    async def run(self, interval_s: float) -> None:
        """Mirror every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.mirror()


@contextlib.asynccontextmanager
async def process_metrics(
    pool: Any, address: tuple[str, int] | None, mirror_s: float | None
) -> AsyncIterator[None]:
    """Around a running ``pool`` in ``run``: serve its metrics at ``address`` (host, port),
    and/or mirror its counters every ``mirror_s`` seconds (a supervised child), the last time
    when leaving (enter before the pool starts, leave after it has stopped)."""
    async with contextlib.AsyncExitStack() as stack:
        if address is not None:
            registry, collector = metrics_registry([pool])
            server = MetricsServer(
                lambda: render(registry, collector), CONTENT_TYPE_LATEST, *address
            )
            await stack.enter_async_context(server)
            logger.info("serving metrics on %s", server.url)
        if mirror_s is None:
            yield
            return
        mirror = StatsMirror([pool])
        task = asyncio.create_task(mirror.run(mirror_s), name="metrics-mirror")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            mirror.mirror()  # after the drain: the totals are final


async def supervise_with_metrics(
    command: Sequence[str],
    processes: int,
    settings: CommonAppSettings,
    refs: Sequence[StreamRef],
    address: tuple[str, int],
    *,
    grace_s: float,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> int:
    """Run a :class:`Supervisor` of ``processes`` copies of ``command`` and serve the sum of
    their metrics, with the gauges of ``refs``, at ``address``; the supervisor's exit status."""
    directory = tempfile.mkdtemp(prefix="common-metrics-")
    try:
        env = {
            **os.environ,
            MULTIPROC_ENV: directory,
            METRICS_MIRROR_ENV: os.environ.get(METRICS_MIRROR_ENV, str(DEFAULT_MIRROR_S)),
        }

        def forget(pid: int) -> None:  # its live gauges (workers running) no longer count
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]

        supervisor = Supervisor(command, processes, grace_s=grace_s, env=env, on_exit=forget)
        manager = await connect_redis(settings, timeout_s=connect_timeout_s)
        assert manager is not None  # no stop event: it connects or raises
        async with manager:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            gauges = StreamGauges(
                [GaugeSource(settings.service_name, manager.get_client, lambda: refs)]
            )
            registry.register(gauges)
            async with MetricsServer(
                lambda: render(registry, gauges), CONTENT_TYPE_LATEST, *address
            ) as server:
                logger.info(
                    "serving the metrics of %d processes on %s (their files: %s)",
                    processes,
                    server.url,
                    directory,
                )
                return await supervisor.run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

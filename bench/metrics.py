"""What metrics and worker processes cost or bring, each measured against itself in one run.

- ``metrics``: one ``BaseWorker`` draining pre-loaded actions with detailed metrics on (every
  handling counted by type and timed into the histogram) and two scrapes of everything
  (``/metrics`` rendering: counters, the histogram, the gauges sampled from Redis), against
  the same drain with metrics off. Like the declarative rows, the ratio compares actions per
  CPU-second of this process (the wall-time rates are in the row's detail): on a shared
  machine wall time swings with the neighbours' load, the CPU cost per message does not.
  Target: >= 0.90.
- ``processes``: ``python -m common run bench.workload:NoopWorker --processes 2 --workers 1``
  against ``--processes 1`` on the same backlog, in wall time. So that start-up is not measured,
  the backlog is added before a consumer group created at its end, the processes are started
  and wait; once every worker blocks in XREADGROUP (``CLIENT LIST``), the group is moved back
  to the start (``XGROUP SETID 0``) and one more entry wakes the blocked readers: the drain is
  timed from there until the last entry is delivered and ACKed. Target: >= 1.6 (two cores).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.processes import processes_drain
from bench.report import Row
from bench.workload import (
    NoopWorker,
    action_stream,
    encode_entries,
    make_actions,
    median,
    new_prefix,
    preload,
    settings_for,
    wait_until,
)
from common import RedisManager, WorkerPool
from common.ops.metrics import disable_detailed, enable_detailed, metrics_registry, render

if TYPE_CHECKING:
    from bench.suite import Suite

__all__ = ["drain", "scenario_metrics", "scenario_processes"]

ROOT = Path(__file__).resolve().parent.parent
METRICS_TARGET = 0.90
PROCESSES_TARGET = 1.6
TARGET = "bench.workload:NoopWorker"


async def drain(url: str, prefix: str, entries: Sequence[bytes], metrics: bool) -> dict[str, float]:
    """One worker draining pre-loaded entries: ``wall`` and ``cpu`` (per CPU-second) rates,
    with detailed metrics and two scrapes (``metrics``), or with none."""
    settings = settings_for(url, prefix)
    n = len(entries)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await preload(redis, action_stream(prefix), entries)
        if metrics:
            enable_detailed()
        try:
            pool = WorkerPool(NoopWorker, settings, redis, num_workers=1)
        finally:
            disable_detailed()  # the pool's workers decided at construction
        registry, collector = metrics_registry([pool])

        def acked() -> int:
            return sum(w.stats.acked for w in pool.workers)

        wall, cpu = time.perf_counter(), time.process_time()
        await pool.start()
        try:
            if metrics:
                await wait_until(lambda: acked() >= n // 2, timeout=300)
                await render(registry, collector)  # a scrape mid-drain
            await wait_until(lambda: acked() >= n, timeout=300)
            if metrics:
                await render(registry, collector)
            wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await pool.stop()
    return {"wall": n / wall_s, "cpu": n / max(cpu_s, 1e-9)}


async def scenario_metrics(suite: Suite) -> list[Row]:
    s = suite.sizes
    suite.log(f"metrics: {s.metrics_drain} pre-loaded actions, detailed metrics + scrapes / off")
    entries = encode_entries(make_actions(s.metrics_drain))
    url = suite.url
    r = await suite._runs(
        {
            "on": lambda: drain(url, new_prefix(), entries, metrics=True),
            "off": lambda: drain(url, new_prefix(), entries, metrics=False),
        }
    )
    on = median([run["cpu"] for run in r["on"]])
    off = median([run["cpu"] for run in r["off"]])
    return [
        Row(
            "metrics_drain",
            "drain, 1 worker: detailed metrics + 2 scrapes / metrics off (per CPU-s)",
            "msg/s",
            on,
            off,
            target=METRICS_TARGET,
            ratio_of="on/off",
            detail={"runs": r},
        )
    ]


async def scenario_processes(suite: Suite) -> list[Row]:
    s = suite.sizes
    suite.log(f"processes: {s.processes_drain} actions drained by run --processes 2 / 1")
    entries = encode_entries(make_actions(s.processes_drain))
    url = suite.url
    r: dict[str, Any] = await suite._runs(
        {
            "p2": lambda: processes_drain(url, new_prefix(), entries, 2),
            "p1": lambda: processes_drain(url, new_prefix(), entries, 1),
        }
    )
    return [
        Row(
            "processes_drain",
            "drain, run --processes 2 / --processes 1 (1 worker each)",
            "msg/s",
            median(r["p2"]),
            median(r["p1"]),
            target=PROCESSES_TARGET,
            ratio_of="2/1",
            detail={"runs": r, "cpus": os.cpu_count()},
        )
    ]

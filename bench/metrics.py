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

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from bench.report import Row
from bench.workload import (
    SERVICE,
    NoopWorker,
    action_stream,
    encode_entries,
    make_actions,
    median,
    new_prefix,
    preload,
    raw_client,
    settings_for,
    wait_until,
)
from common import QueueManager, RedisManager, WorkerPool
from common.models.codec import ACTION_FIELD
from common.ops.metrics import disable_detailed, enable_detailed, metrics_registry, render

if TYPE_CHECKING:
    from bench.suite import Suite

__all__ = ["drain", "processes_drain", "scenario_metrics", "scenario_processes"]

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


async def _wait_for_readers(
    redis: aioredis.Redis, count: int, proc: asyncio.subprocess.Process
) -> None:
    """Until ``count`` clients wait in XREADGROUP (a blocked read makes no consumer yet)."""
    deadline = time.monotonic() + 120
    while True:
        blocked = [c for c in await redis.client_list() if c.get("cmd") == "xreadgroup"]
        if len(blocked) >= count:
            return
        if proc.returncode is not None:
            raise RuntimeError(f"the run process exited with {proc.returncode} before reading")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} readers did not start within 120 s")
        await asyncio.sleep(0.05)


async def _drained(redis: aioredis.Redis, stream: str, group: str, last_id: bytes) -> bool:
    for info in await redis.xinfo_groups(stream):
        if info["name"] in (group, group.encode()):
            last = info["last-delivered-id"]
            last = last if isinstance(last, bytes) else str(last).encode()
            return last == last_id and int(info["pending"]) == 0
    return False


async def processes_drain(url: str, prefix: str, entries: Sequence[bytes], processes: int) -> float:
    """Entries/s of ``run --processes P --workers 1`` draining ``entries`` (+1 to wake them)."""
    queues = QueueManager(prefix, "dev")
    stream, group = action_stream(prefix), queues.consumer_group(SERVICE)
    redis = raw_client(url)
    field = ACTION_FIELD.encode()
    env = {
        **os.environ,
        "REDIS_URL": url,
        "QUEUE_PREFIX": prefix,
        "SERVICE_NAME": SERVICE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "common", "run", TARGET, "--workers", "1"]
    command += ["--processes", str(processes), "--log-level", "WARNING"]
    with tempfile.TemporaryFile() as log:
        try:
            await preload(redis, stream, entries)
            await redis.xgroup_create(stream, group, id="$")  # the backlog is hidden
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, env=env, stdout=log, stderr=log
            )
            try:
                await _wait_for_readers(redis, processes, proc)
                start = time.perf_counter()
                await redis.xgroup_setid(stream, group, "0", entries_read=0)
                [wake] = encode_entries(make_actions(1))
                last_id = await redis.xadd(stream, {field: wake})
                while True:
                    if await _drained(redis, stream, group, last_id):
                        break
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - start
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), 60)
            if code != 0:
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"run --processes {processes} exited with {code}: {tail}")
        finally:
            await redis.aclose()
    return (len(entries) + 1) / elapsed


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

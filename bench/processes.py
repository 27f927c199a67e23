"""Workers in processes of their own (``python -m common run ... --processes P``) draining a
backlog, on one server or a cluster, over one stream or ``partitions`` of them.

Start-up is not measured: the backlog is added to each partition behind a consumer group
created at its end, the processes are started and wait; once ``processes`` clients block in
XREADGROUP (``CLIENT LIST`` of every node: on Redis 7.0 a blocked read makes no consumer yet),
each group is moved back to the start (``XGROUP SETID 0``) and one more entry per partition
wakes the blocked readers. The drain is timed from there until every partition's last entry
is delivered and nothing is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.workload import (
    SERVICE,
    encode_entries,
    make_actions,
    preload_partitions,
    settings_for,
)
from common import BaseRedisClient, DomainAction, QueueManager, RedisManager
from common.clients.redis_manager import is_cluster
from common.models.codec import ACTION_FIELD

__all__ = ["processes_drain", "processes_end_to_end"]

ROOT = Path(__file__).resolve().parent.parent
TARGET = "bench.workload:NoopWorker"


async def _blocked_readers(redis: aioredis.Redis) -> int:
    if is_cluster(redis):
        cluster: Any = redis
        per_node = await cluster.client_list(target_nodes=cluster.PRIMARIES)
        clients = [c for node in per_node.values() for c in node]
    else:
        clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup")


async def _wait_for_readers(
    redis: aioredis.Redis, count: int, proc: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 120
    while await _blocked_readers(redis) < count:
        if proc.returncode is not None:
            raise RuntimeError(f"the run process exited with {proc.returncode} before reading")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} readers did not start within 120 s")
        await asyncio.sleep(0.05)


async def _drained(redis: aioredis.Redis, group: str, last_ids: dict[str, Any]) -> bool:
    for stream, last_id in last_ids.items():
        for info in await redis.xinfo_groups(stream):
            if info["name"] in (group, group.encode()):
                last = info["last-delivered-id"]
                last = last if isinstance(last, bytes) else str(last).encode()
                if last != last_id or int(info["pending"]):
                    return False
    return True


def _command(
    url: str, prefix: str, processes: int, partitions: int, backlog: int = 0
) -> tuple[list[str], dict[str, str]]:
    # A hidden backlog looks consumed (its group starts at "$"): the stream's trim must not
    # take it before it is shown (so the cap is raised far above it; 0 stays: no trim).
    maxlen = int(os.environ.get("STREAM_MAXLEN", 100_000))
    env = {
        **os.environ,
        "STREAM_MAXLEN": str(maxlen and max(maxlen, 2 * backlog)),
        "REDIS_URL": url,
        "QUEUE_PREFIX": prefix,
        "SERVICE_NAME": SERVICE,
        "STREAM_PARTITIONS": str(partitions),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "common", "run", TARGET, "--workers", "1"]
    command += ["--processes", str(processes), "--log-level", "WARNING"]
    return command, env


@contextlib.asynccontextmanager
async def _running(
    url: str,
    prefix: str,
    processes: int,
    partitions: int,
    redis: aioredis.Redis,
    backlog: int = 0,
) -> AsyncIterator[None]:
    """``run --processes`` of the bench worker, once its readers wait; SIGTERM at the end.
    ``backlog``: entries per stream hidden from the group until the readers wait."""
    command, env = _command(url, prefix, processes, partitions, backlog)
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            await _wait_for_readers(redis, processes, proc)
            yield
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
        if code != 0:
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"run --processes {processes} exited with {code}: {tail}")


async def processes_end_to_end(
    url: str, prefix: str, actions: Sequence[DomainAction], processes: int, partitions: int = 1
) -> float:
    """Actions/s sent by this process (``send_actions_async``, chunks of 100) while
    ``run --processes P --workers 1`` drains them, until the last is delivered and ACKed."""
    settings = settings_for(url, prefix, stream_partitions=partitions)
    queues = QueueManager(prefix, "dev")
    streams = list(queues.partition_streams(SERVICE, partitions))
    group = queues.consumer_group(SERVICE)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        client = BaseRedisClient("caller", redis, settings)
        async with _running(url, prefix, processes, partitions, redis):
            start = time.perf_counter()
            for i in range(0, len(actions), 100):
                await client.send_actions_async(actions[i : i + 100])
            last_ids: dict[str, Any] = {}
            for stream in streams:
                last = await redis.xrevrange(stream, count=1)
                last_ids[stream] = last[0][0] if last else b"0-0"
            while True:
                if await _drained(redis, group, last_ids):
                    break
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
        await client.close()
    return len(actions) / elapsed


async def processes_drain(
    url: str, prefix: str, entries: Sequence[bytes], processes: int, partitions: int = 1
) -> float:
    """Entries/s of ``run --processes P --workers 1`` draining ``entries`` spread round-robin
    over ``partitions`` streams (+1 per partition to wake the readers)."""
    queues = QueueManager(prefix, "dev")
    streams = list(queues.partition_streams(SERVICE, partitions))
    group = queues.consumer_group(SERVICE)
    field = ACTION_FIELD.encode()
    async with RedisManager(settings_for(url, prefix)) as manager:
        redis = manager.get_client()
        await preload_partitions(redis, streams, entries)
        for stream in streams:  # the backlog is hidden until the readers wait
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
        backlog = len(entries) // partitions + 1
        async with _running(url, prefix, processes, partitions, redis, backlog):
            start_time = time.perf_counter()
            wake = encode_entries(make_actions(partitions))
            last_ids: dict[str, Any] = {}
            for stream, raw in zip(streams, wake, strict=True):
                await redis.xgroup_setid(stream, group, "0", entries_read=0)
                last_ids[stream] = await redis.xadd(stream, {field: raw})
            while True:
                if await _drained(redis, group, last_ids):
                    break
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start_time
    return (len(entries) + partitions) / elapsed

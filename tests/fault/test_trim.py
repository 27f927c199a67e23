"""XTRIM under thousands of pending entries: counted, cleared, and no reclaim loop spinning.

Each test has a redis-server of its own, so that its command statistics (how often XCLAIM
and XPENDING ran) belong to this test alone.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis.asyncio as aioredis

from common.testing import RedisServer
from tests.fault.conftest import FaultFactory
from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for

VISIBILITY = 1.0
CLAIM = 0.25


async def _commands(redis: aioredis.Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _pending_is(fault: FaultRun, n: int) -> bool:
    return await fault.pending() == n


async def _trim_pending_of_dead_consumer(fault: FaultRun, n: int) -> None:
    batch = min(n, 10_000)
    options = {"visibility": VISIBILITY, "claim_interval": CLAIM, "batch": batch}
    await fault.publish("slow", n, seconds=60)
    # Each worker reads one batch, then sleeps in the handler of its first entry.
    (a,) = await fault.start(1, workers=-(-n // batch), **options)
    await wait_for(lambda: _pending_is(fault, n), timeout=20)
    await fault.kill(a)
    await fault.broker.xtrim(fault.stream, maxlen=0, approximate=False)
    assert await fault.broker.xlen(fault.stream) == 0
    await fault.broker.config_resetstat()
    trimmed_at = time.monotonic()
    (b,) = await fault.start(1, workers=1, **options)
    await wait_for(lambda: _pending_is(fault, 0), timeout=VISIBILITY + CLAIM + 20)
    cleared_s = time.monotonic() - trimmed_at
    await wait_for(lambda: _deleted_reported(fault, n), timeout=5)
    at_clear = await _commands(fault.broker)
    cpu_before = _cpu_seconds(b.pid)
    window = 2.0
    await asyncio.sleep(window)  # not a wait for work: a window in which to watch it idle
    after = await _commands(fault.broker)
    cpu = _cpu_seconds(b.pid) - cpu_before
    xclaim_after = after.get("xclaim", 0) - at_clear.get("xclaim", 0)
    xpending_after = after.get("xpending", 0) - at_clear.get("xpending", 0)
    handled = await fault.counts("handled")
    report(
        "xtrim with pending entries of a dead consumer",
        pending_trimmed=n,
        cleared_after_s=cleared_s,
        deleted_while_pending=await fault.total_stat("reclaimer.deleted_while_pending"),
        xclaim_calls_to_clear=at_clear.get("xclaim", 0),
        xpending_calls_to_clear=at_clear.get("xpending", 0),
        xclaim_calls_idle_2s=xclaim_after,
        xpending_calls_idle_2s=xpending_after,
        worker_cpu_idle_2s=cpu,
    )
    assert not handled, "trimmed entries have no payload to run"
    # Each trimmed entry is claimed once (Redis 7 drops it from the pending list then).
    assert at_clear.get("xclaim", 0) <= n + 10
    # Idle afterwards: one XPENDING per claim interval, nothing claimed, little CPU.
    assert xclaim_after == 0
    assert xpending_after <= window / CLAIM + 3
    assert cpu < 0.3 * window
    assert cleared_s <= VISIBILITY + CLAIM + 5


async def _deleted_reported(fault: FaultRun, n: int) -> bool:
    return await fault.total_stat("reclaimer.deleted_while_pending") == n


async def test_xtrim_of_a_dead_consumers_pending_entries(
    fault_factory: FaultFactory, private_server: RedisServer
) -> None:
    """3,000 entries pending for a SIGKILLed consumer are trimmed away. A new worker's
    reclaimer claims each once, finds it gone, counts it (``deleted_while_pending``), clears
    it from the pending list, and then idles: no repeated claims, no busy loop."""
    await _trim_pending_of_dead_consumer(await fault_factory(private_server), 3000)


@pytest.mark.slow
async def test_xtrim_of_a_dead_consumers_pending_entries_large(
    fault_factory: FaultFactory, private_server: RedisServer
) -> None:
    """The same with 20,000 pending entries."""
    await _trim_pending_of_dead_consumer(await fault_factory(private_server), 20_000)


async def test_xtrim_of_entries_a_live_worker_holds_for_retry(
    fault_factory: FaultFactory, private_server: RedisServer
) -> None:
    """1,000 failed entries wait for their retry (30 s backoff) in a live worker when the
    stream is trimmed. Its lease renewal finds them gone: they are counted as deleted while
    pending (not as lost to another consumer), dropped, and cleared from the pending list."""
    fault = await fault_factory(private_server)
    n = 1000
    await fault.publish("fail", n)
    (a,) = await fault.start(
        1,
        workers=1,
        visibility=VISIBILITY,
        claim_interval=CLAIM,
        batch=n,
        initial_delay=3,
        max_delay=3,
        log_level="ERROR",
    )
    await wait_for(lambda: _started(fault, n), timeout=30)
    await fault.broker.xtrim(fault.stream, maxlen=0, approximate=False)
    trimmed_at = time.monotonic()
    await wait_for(lambda: _pending_is(fault, 0), timeout=3 + VISIBILITY + 5)
    # (An entry whose schedule was still on its way when a reclaimer found it deleted may be
    # counted twice: never lost, never missed.)
    await wait_for(lambda: _stat_at_least(fault, "deleted_while_pending", n), timeout=5)
    report(
        "xtrim of entries held for retry",
        held=n,
        cleared_after_s=time.monotonic() - trimmed_at,
        deleted_while_pending=await fault.total_stat("deleted_while_pending"),
        lost=await fault.total_stat("lost"),
    )
    assert await fault.total_stat("lost") == 0
    assert a.alive


async def _started(fault: FaultRun, n: int) -> bool:
    return len(await fault.counts("started")) == n


async def _stat_at_least(fault: FaultRun, name: str, n: int) -> bool:
    return await fault.total_stat(name) >= n


async def _stat_is(fault: FaultRun, name: str, n: int) -> bool:
    return await fault.total_stat(name) == n

"""The redis-server itself is SIGKILLed and restarted under running worker processes.

Each test has a server of its own (the broker); handlers record their runs on the session
server, so the records survive the broker's crash.
"""

from __future__ import annotations

import functools
import json
import time

import pytest

from common.testing import RedisServer
from tests.fault.conftest import FaultFactory
from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for

OPTIONS = {"workers": 2, "visibility": 1.0, "claim_interval": 0.25}


async def _handled(fault: FaultRun, ids: set[str]) -> bool:
    return set(await fault.counts("handled")) >= ids


async def _settled(fault: FaultRun, ids: set[str]) -> bool:
    return await _handled(fault, ids) and await fault.pending() == 0


async def _group_exists(fault: FaultRun) -> bool:
    try:
        groups = await fault.broker.xinfo_groups(fault.stream)
    except Exception:  # no stream yet, or the server is still loading
        return False
    return any(g["name"].decode() == fault.group for g in groups)


async def _stream_action_ids(fault: FaultRun) -> dict[str, bytes]:
    """Action id -> entry id of every entry in the stream."""
    found = {}
    for entry_id, fields in await fault.broker.xrange(fault.stream):
        found[json.loads(fields[b"action"])["action_id"]] = entry_id
    return found


async def test_redis_restart_without_persistence(
    fault_factory: FaultFactory, private_server: RedisServer
) -> None:
    """Without persistence a restarted server has lost everything: unhandled and pending
    entries (here, slow actions in flight at the crash), dead letters and the consumer group
    itself. The workers ride out the outage
    (reconnecting with backoff), recreate the group when XREADGROUP answers NOGROUP, and
    handle what is published afterwards; no process dies."""
    fault = await fault_factory(private_server)
    procs = await fault.start(2, **OPTIONS)
    before = await fault.publish("fast", 200)
    await wait_for(lambda: _settled(fault, set(before)), timeout=20)
    in_flight = await fault.publish("slow", 40, seconds=0.2)
    await wait_for(lambda: _some_handled(fault, len(before) + 1), timeout=10)
    private_server.restart(kill=True)
    restarted = time.monotonic()
    await wait_for(lambda: _group_exists(fault), timeout=15, interval=0.05)
    recreated_s = time.monotonic() - restarted
    after = await fault.publish("fast", 200)
    await wait_for(lambda: _settled(fault, set(after)), timeout=20)
    handled = await fault.counts("handled")
    report(
        "redis restart, no persistence",
        group_recreated_after_s=recreated_s,
        resumed_after_s=time.monotonic() - restarted,
        handled_after_restart=len(set(after) & set(handled)),
        in_flight_at_crash=len(in_flight),
        of_which_handled=len(set(in_flight) & set(handled)),
        reruns_of_earlier=sum(handled[i] - 1 for i in before),
    )
    assert all(p.alive for p in procs)
    assert all(handled[i] == 1 for i in before + after)


async def test_redis_restart_with_aof_everysec(
    fault_factory: FaultFactory, aof_server: RedisServer
) -> None:
    """AOF with ``appendfsync everysec``, server SIGKILLed while workers are busy.

    What everysec can lose: the writes of (about) the last second before a crash, up to two
    seconds when an fsync stalls. That means actions XADDed in that window (their producer
    was given an entry id, yet they are gone), ACKs (their actions run again: duplicates),
    deliveries (entries handed out again), dead letters and delivery counts. Everything
    fsynced survives, the consumer group included. A crash of the *process* (this test)
    usually loses nothing acknowledged, because Redis write()s the AOF buffer to the kernel
    before it replies; the window is lost on an OS crash or power cut, or when Redis has
    postponed a write behind a slow fsync (up to 2 s).

    The test forces everything up to the last batch to disk (BGREWRITEAOF), then crashes the
    server while that batch is being handled, and checks: the group is back, earlier actions
    are not run again, every action the restored stream holds is handled, lost actions are
    only from the last two seconds before the crash (counted and printed), and the workers
    handle new work."""
    fault = await fault_factory(aof_server)
    procs = await fault.start(2, **OPTIONS)
    before = await fault.publish("fast", 300)
    await wait_for(lambda: _settled(fault, set(before)), timeout=20)
    await fault.broker.bgrewriteaof()
    await wait_for(lambda: _rewrite_done(fault), timeout=20)
    at_risk = await fault.publish("slow", 300, seconds=0.01)
    crashed_ms = int(time.time() * 1000)
    aof_server.restart(kill=True)
    restarted = time.monotonic()
    await wait_for(lambda: _group_exists(fault), timeout=15, interval=0.05)
    kept = await _stream_action_ids(fault)
    handled_at_crash = await fault.counts("handled")
    lost = [i for i in at_risk if i not in kept]
    lost_unhandled = [i for i in lost if i not in handled_at_crash]
    survivors = [i for i in at_risk if i in kept]
    await wait_for(lambda: _settled(fault, set(survivors)), timeout=30)
    after = await fault.publish("fast", 100)
    await wait_for(lambda: _settled(fault, set(after)), timeout=20)
    handled = await fault.counts("handled")
    report(
        "redis restart, AOF everysec",
        at_risk=len(at_risk),
        kept_by_aof=len(survivors),
        lost_from_stream=len(lost),
        lost_and_never_handled=len(lost_unhandled),
        duplicates=sum(handled[i] - 1 for i in at_risk if i in handled),
        resumed_after_s=time.monotonic() - restarted,
    )
    assert all(p.alive for p in procs)
    assert all(handled[i] == 1 for i in before), "fsynced ACKs were lost"
    assert all(handled[i] == 1 for i in after)
    # everysec loses a suffix of the write log: nothing kept was published after a lost one,
    # and every lost entry had been added in the last 2.5 s before the crash.
    order = {aid: n for n, aid in enumerate(at_risk)}
    if lost:
        assert min(order[i] for i in lost) > max((order[i] for i in survivors), default=-1)
        assert all(int(fault.entry_ids[i].split("-")[0]) >= crashed_ms - 2500 for i in lost)


async def _rewrite_done(fault: FaultRun) -> bool:
    info = await fault.broker.info("persistence")
    return (
        not info["aof_rewrite_in_progress"]
        and not info["aof_rewrite_scheduled"]
        and info["aof_last_bgrewrite_status"] == "ok"
    )


@pytest.mark.slow
async def test_redis_restarted_repeatedly_under_load(
    fault_factory: FaultFactory, aof_server: RedisServer
) -> None:
    """Five crashes of an AOF (everysec) server, 2 s apart, while actions keep flowing: every
    action the server kept is handled, the workers never die."""
    fault = await fault_factory(aof_server)
    procs = await fault.start(2, **OPTIONS)
    published: list[str] = []
    for _ in range(5):
        published += await fault.publish("slow", 200, seconds=0.005)
        half = len(published) - 100
        await wait_for(functools.partial(_some_handled, fault, half), timeout=20)
        aof_server.restart(kill=True)
        await wait_for(lambda: _group_exists(fault), timeout=15, interval=0.05)
    kept = await _stream_action_ids(fault)
    survivors = [i for i in published if i in kept]
    await wait_for(lambda: _settled(fault, set(survivors)), timeout=60)
    handled = await fault.counts("handled")
    report(
        "redis restarted 5 times",
        published=len(published),
        kept=len(survivors),
        handled=len(set(handled) & set(published)),
        lost_and_never_handled=len([i for i in published if i not in kept and i not in handled]),
        duplicates=sum(n - 1 for n in handled.values()),
    )
    assert all(p.alive for p in procs)


async def _some_handled(fault: FaultRun, n: int) -> bool:
    return len(await fault.counts("handled")) >= n

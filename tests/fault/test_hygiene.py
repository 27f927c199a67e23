"""Stream hygiene on the real server: trimming never drops what a group still needs, and dead
consumers go once they hold nothing (and only then, even when a read races the removal)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import redis.asyncio as aioredis

from common.config import CommonAppSettings
from common.testing import RedisServer, unique_settings
from common.workers.hygiene import safe_trim_id, tidy_stream
from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for


def _id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream id as numbers (as bytes, "5-10" would sort before "5-9")."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def _settings(server: RedisServer, **overrides: Any) -> CommonAppSettings:
    return unique_settings(redis_url=server.url, service_name="tidy", **overrides)


async def test_trimming_never_drops_pending_or_undelivered_entries(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """Random adds, reads, ACKs and tidies over two groups: after every tidy, each entry that
    some group has not ACKed (pending there, or not delivered to it yet) is still in the
    stream; and once everything is ACKed the stream is trimmed back to about one node."""
    settings = _settings(redis_server, stream_maxlen=50)
    stream = f"{settings.queue_prefix}:tidy-stream"
    rng = random.Random(7)
    groups = ("g1", "g2")
    for g in groups:
        await redis.xgroup_create(stream, g, id="0", mkstream=True)
    added: list[bytes] = []
    unacked: dict[str, set[bytes]] = {g: set() for g in groups}  # delivered, not ACKed
    trimmed_total = 0
    for _step in range(300):
        op = rng.random()
        if op < 0.3:
            pipe = redis.pipeline(transaction=False)
            for _ in range(rng.randint(1, 40)):
                pipe.xadd(stream, {"n": str(len(added))})
            ids = await pipe.execute()
            added.extend(ids)
            for g in groups:
                unacked[g].update(ids)  # not delivered yet counts as not ACKed
        elif op < 0.55:
            g = rng.choice(groups)
            await redis.xreadgroup(g, f"{g}-c{rng.randint(1, 3)}", {stream: ">"}, count=30)
        elif op < 0.8:
            g = rng.choice(groups)
            pending = await redis.xpending_range(stream, g, "-", "+", 100)
            done = [p["message_id"] for p in pending if rng.random() < 0.6]
            if done:
                await redis.xack(stream, g, *done)
                unacked[g].difference_update(done)
        else:
            trimmed, _ = await tidy_stream(redis, settings, stream)
            trimmed_total += trimmed
            await _assert_all_present(redis, stream, unacked)
    # Drain both groups, then tidy: the stream shrinks to (about) one node.
    for g in groups:
        while batch := await redis.xreadgroup(g, f"{g}-c1", {stream: ">"}, count=500):
            await redis.xack(stream, g, *[i for i, _ in batch[0][1]])
        pending = await redis.xpending_range(stream, g, "-", "+", 10_000)
        if pending:
            await redis.xack(stream, g, *[p["message_id"] for p in pending])
    trimmed, _ = await tidy_stream(redis, settings, stream)
    trimmed_total += trimmed
    left = await redis.xlen(stream)
    report("tidy_stream", added=len(added), trimmed=trimmed_total, left_after_drain=left)
    assert trimmed_total > 0
    assert left <= 100  # approximate trimming keeps at most the last listpack node


async def _assert_all_present(
    redis: aioredis.Redis, stream: str, unacked: dict[str, set[bytes]]
) -> None:
    needed = set().union(*unacked.values())
    if not needed:
        return
    present = {i for i, _ in await redis.xrange(stream, min(needed, key=_id), "+")}
    missing = needed - present
    assert not missing, f"tidy_stream trimmed {len(missing)} entries a group still needs"


async def test_safe_trim_id_is_the_oldest_entry_a_group_needs(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    settings = _settings(redis_server)
    stream = f"{settings.queue_prefix}:floor"
    ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(10)]
    await redis.xgroup_create(stream, "slow", id="0")
    await redis.xgroup_create(stream, "fast", id="0")
    await redis.xreadgroup("slow", "c", {stream: ">"}, count=3)  # pending: 0, 1, 2
    await redis.xack(stream, "slow", ids[0])
    await redis.xreadgroup("fast", "c", {stream: ">"}, count=10)
    await redis.xack(stream, "fast", *ids)
    assert await safe_trim_id(redis, stream) == ids[1].decode()
    await redis.xack(stream, "slow", ids[1], ids[2])
    # Nothing pending in "slow": it still needs what it has not been delivered (from ids[3]).
    floor = await safe_trim_id(redis, stream)
    assert floor is not None and _id(ids[2]) < _id(floor) <= _id(ids[3])


async def test_dead_consumers_with_nothing_pending_are_removed(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """Idle past ``consumer_idle_timeout_s`` and nothing pending: removed. Holding entries,
    recently active, or one of the caller's own consumers: kept."""
    settings = _settings(redis_server, consumer_idle_timeout_s=0.2, stream_maxlen=0)
    stream = f"{settings.queue_prefix}:consumers"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for i in range(4):
        await redis.xadd(stream, {"n": str(i)})

    async def read(consumer: str, ack: bool) -> None:
        reply = await redis.xreadgroup("g", consumer, {stream: ">"}, count=1)
        if ack:
            await redis.xack(stream, "g", reply[0][1][0][0])

    await read("dead-empty", ack=True)
    await read("dead-holding", ack=False)
    await read("mine-empty", ack=True)
    await asyncio.sleep(0.3)  # time passing: these three go idle past the timeout
    await read("fresh-empty", ack=True)
    _, removed = await tidy_stream(redis, settings, stream, keep_consumers={"mine-empty"})
    names = {c["name"] for c in await redis.xinfo_consumers(stream, "g")}
    assert removed == 1
    assert names == {b"dead-holding", b"mine-empty", b"fresh-empty"}


async def test_consumer_removal_does_not_race_a_read(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """A consumer idle past the timeout with nothing pending reads an entry between the
    moment tidy_stream lists the consumers and the moment it removes one. XGROUP DELCONSUMER
    would silently destroy that pending entry (it could never be claimed or ACKed again);
    the removal must be atomic with the check."""
    settings = _settings(redis_server, consumer_idle_timeout_s=0.1, stream_maxlen=0)
    stream = f"{settings.queue_prefix}:race"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    await redis.xgroup_createconsumer(stream, "g", "sleepy")  # holds nothing
    await asyncio.sleep(0.2)  # time passing: "sleepy" goes idle past the timeout
    entry_id = await redis.xadd(stream, {"n": "1"})

    class ReadsInBetween:
        """The server as tidy_stream sees it, with "sleepy" waking up right after the list."""

        def __getattr__(self, name: str) -> Any:
            return getattr(redis, name)

        async def xinfo_consumers(self, *args: Any, **kwargs: Any) -> Any:
            listed = await redis.xinfo_consumers(*args, **kwargs)
            await redis.xreadgroup("g", "sleepy", {stream: ">"}, count=1)
            return listed

    await tidy_stream(ReadsInBetween(), settings, stream)  # type: ignore[arg-type]
    pending = await redis.xpending_range(stream, "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry_id, b"sleepy")]


async def test_killed_worker_process_is_removed_once_its_entries_are_reclaimed(
    fault: FaultRun,
) -> None:
    """A SIGKILLed process held slow work: a surviving process's reclaimer takes its entries
    over, and then its hygiene pass removes the dead consumers from the group."""
    options = {
        "workers": 2,
        "visibility": 1.0,
        "claim_interval": 0.25,
        "batch": 5,
        "consumer_idle_timeout": 1.0,
    }
    await fault.publish("slow", 10, seconds=0.5)
    (a,) = await fault.start(1, **options)
    await wait_for(lambda: _started_any(fault), timeout=10)
    (b,) = await fault.start(1, **options)
    dead = set(await fault.consumers_of(a))
    killed_at = await fault.kill(a)
    assert await fault.pending_of(dead) > 0
    await wait_for(lambda: _gone(fault, dead), timeout=15, interval=0.05)
    removed_after = time.time() - killed_at
    report("dead consumers removed", consumers=len(dead), removed_after_s=removed_after)
    assert b.alive
    # Idle timeout (1 s) + a hygiene pass (every 12 claim passes of 0.25 s) + slack.
    assert removed_after <= 1.0 + 12 * 0.25 + 2.0
    await wait_for(lambda: _all_handled(fault, 10), timeout=15)


async def _consumer_names(fault: FaultRun) -> set[str]:
    return {
        c["name"].decode() for c in await fault.broker.xinfo_consumers(fault.stream, fault.group)
    }


async def _gone(fault: FaultRun, names: set[str]) -> bool:
    return not names & await _consumer_names(fault)


async def _started_any(fault: FaultRun) -> bool:
    return bool(await fault.counts("started"))


async def _all_handled(fault: FaultRun, n: int) -> bool:
    return len(await fault.counts("handled")) == n and await fault.pending() == 0


async def test_dead_consumer_removal_on_the_embedded_server() -> None:
    """``memory://`` has no scripting: the same rule holds with a plain check."""
    import fakeredis

    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))
    settings = unique_settings(service_name="tidy", consumer_idle_timeout_s=0.05, stream_maxlen=0)
    stream = "embedded"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    await redis.xadd(stream, {"n": "1"})
    await redis.xgroup_createconsumer(stream, "g", "empty")
    await redis.xreadgroup("g", "holding", {stream: ">"}, count=1)
    await asyncio.sleep(0.1)  # time passing: both go idle past the timeout
    _, removed = await tidy_stream(redis, settings, stream)
    assert removed == 1
    assert [c["name"] for c in await redis.xinfo_consumers(stream, "g")] == [b"holding"]
    await redis.aclose()


async def test_safe_trim_id_survives_pending_entries_acked_meanwhile() -> None:
    """XINFO said a group had pending entries, but they were ACKed before XPENDING answered:
    the floor is then the group's last delivered id + 1, not a crash."""
    from unittest.mock import AsyncMock

    from common.workers.hygiene import safe_trim_id

    redis = AsyncMock()
    redis.xinfo_groups.return_value = [{"name": b"g", "last-delivered-id": b"5-1", "pending": 3}]
    redis.xpending.return_value = {"pending": 0, "min": None, "max": None, "consumers": []}
    assert await safe_trim_id(redis, "s") == "5-2"

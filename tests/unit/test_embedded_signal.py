"""In-process wake-ups of the embedded server: a write to a watched key wakes its waiters, in
any loop or thread, and a write between "look" and "wait" is never lost."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import redis.asyncio as aioredis

from common import CommonAppSettings, RedisManager
from common.clients.embedded import change_signal


def _settings() -> CommonAppSettings:
    return CommonAppSettings(redis_url=f"memory://{uuid.uuid4().hex}", service_name="signal")


async def test_writes_to_a_watched_key_wake_the_waiter_whatever_the_command() -> None:
    async with RedisManager(_settings()) as manager:
        redis = manager.get_client()
        signal = change_signal(redis)
        with signal.watch("s") as watch:
            await redis.xadd("s", {"f": "v"})
            assert await watch.wait(5.0)
        with signal.watch("l") as watch:
            pipe = redis.pipeline(transaction=False)
            pipe.rpush("l", "x")
            pipe.expire("l", 60)
            await pipe.execute()
            assert await watch.wait(5.0)
        with signal.watch("m") as watch:
            pipe = redis.pipeline(transaction=True)
            pipe.rpush("m", "x")
            await pipe.execute()
            assert watch.changed
        assert signal.watching == 0


async def test_a_write_before_the_wait_is_not_lost_and_other_keys_do_not_wake() -> None:
    async with RedisManager(_settings()) as manager:
        redis = manager.get_client()
        with change_signal(redis).watch("mine") as watch:
            await redis.rpush("other", "x")
            started = time.monotonic()
            assert not await watch.wait(0.05)  # a write elsewhere: the wait times out
            assert time.monotonic() - started >= 0.04
            await redis.rpush("mine", "x")  # lands after the look, before the wait
            started = time.monotonic()
            assert await watch.wait(5.0)
            assert time.monotonic() - started < 0.5


async def test_an_interrupt_ends_the_wait_at_once() -> None:
    async with RedisManager(_settings()) as manager:
        stop = asyncio.Event()
        with change_signal(manager.get_client()).watch("k") as watch:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, stop.set)
            started = time.monotonic()
            assert not await watch.wait(10.0, interrupt=stop)
            assert time.monotonic() - started < 2.0
            assert not await watch.wait(10.0, interrupt=stop)  # already set: no wait at all


async def test_clients_of_one_server_share_its_signal_and_other_servers_do_not() -> None:
    settings = _settings()
    async with RedisManager(settings) as a, RedisManager(settings) as b:
        assert change_signal(a.get_client()) is change_signal(b.get_client())
        async with RedisManager(_settings()) as other:
            assert change_signal(other.get_client()) is not change_signal(a.get_client())


async def test_a_writer_in_another_thread_and_loop_wakes_the_waiter() -> None:
    settings = _settings()
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        with change_signal(redis).watch("k") as watch:
            thread = threading.Thread(target=asyncio.run, args=(_push(settings, "k"),))
            started = time.monotonic()
            thread.start()
            assert await watch.wait(10.0)
            woken_after = time.monotonic() - started
            thread.join(timeout=10)
        assert await redis.lrange("k", 0, -1) == [b"x"]
    assert woken_after < 2.0


async def test_a_waiter_in_another_thread_is_woken_by_a_write_here() -> None:
    settings = _settings()
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        signal = change_signal(redis)
        ready = threading.Event()
        result: list[bool] = []

        async def wait_there() -> None:
            async with RedisManager(settings) as there:
                with change_signal(there.get_client()).watch("k") as watch:
                    ready.set()
                    result.append(await watch.wait(10.0))

        thread = threading.Thread(target=asyncio.run, args=(wait_there(),))
        thread.start()
        assert await asyncio.to_thread(ready.wait, 10)
        await redis.rpush("k", "x")
        await asyncio.to_thread(thread.join, 10)
        assert result == [True]
        assert signal.watching == 0


async def _push(settings: CommonAppSettings, key: str) -> None:
    async with RedisManager(settings) as manager:
        client: aioredis.Redis = manager.get_client()
        await client.rpush(key, "x")


async def test_a_write_wakes_one_exclusive_watch_per_write_and_every_shared_one() -> None:
    async with RedisManager(_settings()) as manager:
        redis = manager.get_client()
        signal = change_signal(redis)
        with (
            signal.watch("s", exclusive=True) as first,
            signal.watch("s", exclusive=True) as second,
            signal.watch("s") as shared,
        ):
            await redis.xadd("s", {"f": "v"})
            assert (first.changed, second.changed, shared.changed) == (True, False, True)
            await redis.xadd("s", {"f": "v"})
            assert second.changed  # the next write goes to the next consumer
            assert await first.wait(1.0) and await second.wait(1.0) and await shared.wait(1.0)

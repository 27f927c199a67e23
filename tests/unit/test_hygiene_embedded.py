"""The embedded server runs hygiene's check-and-remove scripts like a real one (no separate,
racy check-then-delete path for memory://)."""

from __future__ import annotations

import fakeredis

from common.workers.hygiene import _remove_if_done, remove_consumer_if_empty


async def test_consumers_are_removed_only_when_empty_on_the_embedded_server() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))
    await redis.xgroup_create("s", "g", id="0", mkstream=True)
    await redis.xadd("s", {"a": "1"})
    await redis.xreadgroup("g", "busy", {"s": ">"})  # holds a pending entry
    await redis.xgroup_createconsumer("s", "g", "idle")
    await redis.xgroup_createconsumer("s", "g", "old")
    assert not await remove_consumer_if_empty(redis, "s", "g", "busy")
    assert await remove_consumer_if_empty(redis, "s", "g", "idle")
    assert not await _remove_if_done(redis, "s", "g", "old", 3_600_000)  # not idle long enough
    assert await _remove_if_done(redis, "s", "g", "old", 0)
    assert [c["name"] for c in await redis.xinfo_consumers("s", "g")] == [b"busy"]
    await redis.aclose()

"""Round trips through real workers on a real redis-server: async, pseudo-sync, callback."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from tests.helpers import wait_for


class CalcWorker(BaseWorker):
    seen: list[str]

    async def _initialize_components(self) -> None:
        self.seen = []

    async def _handle_calc_add(self, action: DomainAction) -> dict[str, Any]:
        self.seen.append(str(action.action_id))
        return {"sum": action.data["a"] + action.data["b"]}


async def test_pseudo_sync_round_trip(settings: CommonAppSettings, redis: aioredis.Redis) -> None:
    async with WorkerPool(CalcWorker, settings, redis) as pool:
        client = BaseRedisClient("api", redis, settings)
        response = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 2, "b": 3}), timeout=5
        )
        await client.close()
    assert response.success and response.data == {"sum": 5}
    assert response.action_type == "calc.add.response"
    assert sum(len(w.seen) for w in pool.workers) == 1


async def test_many_concurrent_pseudo_sync_calls_share_one_listener(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with WorkerPool(CalcWorker, settings, redis, num_workers=3):
        client = BaseRedisClient("api", redis, settings)
        calls = [
            client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": i, "b": 1}), timeout=10
            )
            for i in range(300)
        ]
        responses = await asyncio.gather(*calls)
        await client.close()
    assert [r.data["sum"] for r in responses] == [i + 1 for i in range(300)]


async def test_async_actions_are_all_handled_and_acked(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    actions = [DomainAction(action_type="calc.add", data={"a": i, "b": i}) for i in range(500)]
    async with WorkerPool(CalcWorker, settings, redis, num_workers=4) as pool:
        await client.send_actions_async(actions)
        await wait_for(lambda: sum(len(w.seen) for w in pool.workers) >= 500)
        stream = pool.workers[0].action_stream_name
        group = pool.workers[0].consumer_group_name
        await wait_for(lambda: _pending(redis, stream, group), timeout=5)
    seen = sorted(s for w in pool.workers for s in w.seen)
    assert seen == sorted(str(a.action_id) for a in actions)


async def _pending(redis: aioredis.Redis, stream: str, group: str) -> bool:
    info = await redis.xpending(stream, group)
    return info["pending"] == 0

"""Handing back at stop never loses an entry, under forced interleavings with a reclaimer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings, DomainAction
from common.models.codec import encode_action
from common.workers.recovery import Reclaimer
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


async def _pending_for_a_dead_consumer(
    redis: aioredis.Redis, worker: CalcWorker, dead: str = "dead"
) -> bytes:
    """One entry, read (so pending) by a consumer that will never settle it; returns its id."""
    await redis.xgroup_create(worker.action_stream_name, worker.consumer_group_name, mkstream=True)
    action = DomainAction(action_type="calc.add", data={"a": 1, "b": 2})
    entry_id: bytes = await redis.xadd(worker.action_stream_name, encode_action(action, 1 << 20))
    await redis.xreadgroup(
        worker.consumer_group_name, dead, {worker.action_stream_name: ">"}, count=1
    )
    return entry_id


async def _pending_ids(redis: aioredis.Redis, worker: CalcWorker) -> dict[bytes, Any]:
    rows = await redis.xpending_range(
        worker.action_stream_name, worker.consumer_group_name, "-", "+", 100
    )
    return {row["message_id"]: row for row in rows}


async def test_an_entry_claimed_for_a_consumer_while_it_hands_back_is_not_destroyed(
    settings: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """release_all found nothing pending, then (before it removed the consumer) a reclaimer
    elsewhere claimed an entry for it. Removing the consumer then destroyed that entry: it was
    neither pending nor handled nor dead-lettered. Now the check and the removal are one step,
    so the consumer stays, and the entry stays pending for the next reclaim."""
    worker = CalcWorker(settings, redis, "draining")
    entry_id = await _pending_for_a_dead_consumer(redis, worker)
    listed = redis.xpending_range

    async def xpending_then_a_claim_lands(*args: Any, **kwargs: Any) -> Any:
        rows = await listed(*args, **kwargs)
        if kwargs.get("consumername") == worker.consumer_name and not rows:
            # A reclaimer in another process hands this consumer the abandoned entry now.
            await redis.xclaim(
                worker.action_stream_name,
                worker.consumer_group_name,
                worker.consumer_name,
                0,
                [entry_id],
            )
        return rows

    monkeypatch.setattr(redis, "xpending_range", xpending_then_a_claim_lands)
    await worker.initialize()
    await worker.leases.release_all()
    monkeypatch.undo()
    pending = await _pending_ids(redis, worker)
    assert entry_id in pending, "the entry was destroyed with its consumer"
    assert pending[entry_id]["consumer"] == worker.consumer_name.encode()


async def test_a_claim_in_flight_is_not_handed_to_a_worker_that_stopped_meanwhile(
    settings: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reclaim pass chose a running worker and sent its claims; the worker stopped (and
    handed back) before they were answered. The pass used to push the entry into the stopped
    worker's intake, where nothing would run it, with its idle time just reset: it waited a
    whole visibility timeout. Now the hand-off checks again and hands the entry back."""
    s = settings.model_copy(update={"visibility_timeout_s": 1.0, "worker_block_ms": 30_000})
    worker = CalcWorker(s, redis, "stopping")
    worker.standalone_recovery = False
    entry_id = await _pending_for_a_dead_consumer(redis, worker)
    await worker.initialize()
    run = asyncio.create_task(worker.run())
    await wait_for(lambda: worker._reading)
    await wait_for(lambda: _idle_over(redis, worker, entry_id, 1000))

    reclaimer = Reclaimer([worker])
    claims_sent = asyncio.Event()
    go_on = asyncio.Event()
    claim_script = redis.eval  # the reclaimer claims with one script call per page

    async def paused_claim(*args: Any, **kwargs: Any) -> Any:
        claims_sent.set()
        await go_on.wait()
        return await claim_script(*args, **kwargs)

    monkeypatch.setattr(reclaimer.redis, "eval", paused_claim)
    reclaim = asyncio.create_task(reclaimer.reclaim_once())
    await asyncio.wait_for(claims_sent.wait(), 5)
    monkeypatch.undo()  # the worker's own hand-back is not paused
    await worker.stop()
    await asyncio.wait_for(run, 5)
    go_on.set()
    claimed = await asyncio.wait_for(reclaim, 5)
    assert claimed == 0
    assert worker.intake == [] and entry_id not in worker.held
    pending = await _pending_ids(redis, worker)
    assert entry_id in pending
    # Handed back: idle past the visibility timeout, so the next pass takes it at once.
    assert pending[entry_id]["time_since_delivered"] >= 1000


async def _idle_over(
    redis: aioredis.Redis, worker: CalcWorker, entry_id: bytes, idle_ms: int
) -> bool:
    row = (await _pending_ids(redis, worker)).get(entry_id)
    return row is not None and row["time_since_delivered"] >= idle_ms


async def test_release_all_clears_the_intake(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Entries a reclaimer pushed into a worker's intake but that it never started are
    released with the rest (they are pending under the worker) and dropped from the intake."""
    s = settings.model_copy(update={"visibility_timeout_s": 1.0})
    worker = CalcWorker(s, redis, "intake")
    entry_id = await _pending_for_a_dead_consumer(redis, worker)
    await worker.initialize()
    reply = await redis.xclaim(
        worker.action_stream_name, worker.consumer_group_name, worker.consumer_name, 0, [entry_id]
    )
    from common.workers.outcome import Delivery

    delivery = Delivery(entry_id, reply[0][1], 2, 0.0, stream=worker.action_stream_name)
    worker.held[delivery.key] = delivery
    worker.intake.append(delivery)
    released = await worker.leases.release_all()
    assert released == 1
    assert worker.intake == [] and worker.held == {}
    pending = await _pending_ids(redis, worker)
    assert pending[entry_id]["time_since_delivered"] >= 1000

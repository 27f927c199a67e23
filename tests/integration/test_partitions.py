"""Partitioned action streams on standalone Redis: one consumer of several streams whose
entries share ids (ids are unique per stream only) runs each of them at once."""

from __future__ import annotations

import redis.asyncio as aioredis

from common import BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.models.codec import encode_action
from tests.helpers import wait_for


class Recorder(BaseWorker):
    seen: list[int] = []

    async def _handle_calc_step(self, action: DomainAction) -> None:
        type(self).seen.append(action.data["n"])


async def test_entries_with_the_same_id_on_two_partitions_both_run_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Two partitions each hold entry 1-1 (and 2-1): held by (stream, id), not by id alone,
    the second read does not shadow the first, which would then wait for a reclaim."""
    settings = settings.model_copy(
        update={"stream_partitions": 2, "visibility_timeout_s": 30.0, "worker_batch_size": 10}
    )
    queues = QueueManager(settings.queue_prefix, settings.environment)
    streams = list(queues.partition_streams(settings.service_name, 2))
    n = 0
    for entry_id in ("1-1", "2-1"):
        for stream in streams:
            fields = encode_action(DomainAction(action_type="calc.step", data={"n": n}), 10**6)
            await redis.xadd(stream, fields, id=entry_id)  # type: ignore[arg-type]
            n += 1
    Recorder.seen = []
    async with WorkerPool(Recorder, settings, num_workers=1) as pool:
        await wait_for(lambda: len(Recorder.seen) == 4, timeout=5)  # << visibility timeout
        assert pool.workers[0].stats.reclaimed == 0
    assert sorted(Recorder.seen) == [0, 1, 2, 3]

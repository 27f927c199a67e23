"""``common status`` and ``common dlq`` over a partitioned service (``stream_partitions``):
every partition is a row of its service, and dead letters are read, replayed (each onto its own
partition's stream) and purged across all partitions. Re-run on a cluster by
tests/cluster/test_ops_on_cluster.py."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.errors import NonRetryableError
from common.ops.streams import pool_stream_refs
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker
from tests.ops.conftest import Invoke

P = 3


def _queues(settings: CommonAppSettings) -> QueueManager:
    return QueueManager(settings.queue_prefix, settings.environment)


def _key_for(partition: int) -> str:
    """A partition key that falls on ``partition`` of P."""
    return next(
        key
        for key in (f"key{i}" for i in range(1000))
        if QueueManager.partition_of(key, P) == partition
    )


async def test_status_shows_each_partition_as_a_row_of_its_service(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    settings = settings.model_copy(update={"stream_partitions": P, "worker_concurrency": 10})
    queues = _queues(settings)
    pool = WorkerPool(CalcWorker, settings, num_workers=1)
    before = pool_stream_refs(pool)  # from the settings (the gauges of the metrics)
    assert [(r.partition, r.stream) for r in before] == [
        (k, queues.action_stream("calc", k)) for k in range(P)
    ]
    async with pool:
        assert pool_stream_refs(pool) == before
        worker = pool.workers[0]
        client = BaseRedisClient("api", redis, settings)
        for partition in range(P):  # partition k: k + 1 held (pending)
            for _ in range(partition + 1):
                await client.send_action_async(
                    DomainAction(action_type="calc.wait"), partition_key=_key_for(partition)
                )
        await client.send_action_async(  # one dead letter, on partition 2
            DomainAction(action_type="calc.reject"), partition_key=_key_for(2)
        )
        await wait_for(lambda: len(worker.held) == 6)
        dead_letters = queues.dead_letter_stream("calc", 2)
        await wait_for(lambda: redis.xlen(dead_letters))

        result = await cli("status", "--json")
        assert result.exit_code == 0, result.output
        rows = [s for s in json.loads(result.stdout) if s["name"] == "calc"]
        assert [(s["partition"], s["stream"]) for s in rows] == [
            (k, queues.action_stream("calc", k)) for k in range(P)
        ]
        assert [s["length"] for s in rows] == [1, 2, 4]
        assert [s["groups"][0]["pending"] for s in rows] == [1, 2, 3]
        assert [s["dead_letters"] for s in rows] == [0, 0, 1]
        assert {s["groups"][0]["consumers"][0]["name"] for s in rows} == {worker.consumer_name}

        only = await cli("status", "--service", "calc", "--json")
        assert [s["partition"] for s in json.loads(only.stdout)] == [0, 1, 2]
        table = await cli("status", COLUMNS="200")
        assert table.exit_code == 0, table.output
        assert "partition" in table.stdout
        worker.release.set()
        await client.close()


class JobWorker(BaseWorker):
    """Refuses ``job.run`` for good while ``broken``; then handles it."""

    broken = True
    handled: list[str] = []

    async def _handle_job_run(self, action: DomainAction) -> dict[str, Any]:
        if type(self).broken:
            raise NonRetryableError("database schema too old")
        type(self).handled.append(str(action.action_id))
        return {}


async def test_dlq_lists_replays_each_onto_its_partition_and_handles_them(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    settings = settings.model_copy(update={"service_name": "job", "stream_partitions": P})
    queues = _queues(settings)
    JobWorker.broken, JobWorker.handled = True, []
    sent: dict[str, int] = {}  # action id -> partition
    async with WorkerPool(JobWorker, settings, num_workers=1) as pool:
        client = BaseRedisClient("api", redis, settings)
        for partition in (0, 1, 2, 2):
            action = DomainAction(action_type="job.run")
            sent[str(action.action_id)] = partition
            await client.send_action_async(action, partition_key=_key_for(partition))
        dead = pool.workers[0].stats.dead_lettered
        await wait_for(lambda: dead.get("non_retryable") == 4)
        await client.close()

    listed = await cli("dlq", "list", "job", "--json")
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.stdout)
    assert {r["action_id"]: r["partition"] for r in records} == sent
    for r in records:
        assert r["stream"] == queues.action_stream("job", r["partition"])
        assert r["name"] == (f"{r['partition']}:{r['id']}" if r["partition"] else r["id"])
    assert [int(r["id"].split("-")[0]) for r in records] == sorted(
        int(r["id"].split("-")[0]) for r in records
    )  # oldest first over all partitions
    assert len(json.loads((await cli("dlq", "list", "job", "--json", "--limit", "2")).stdout)) == 2
    table = await cli("dlq", "list", "job", COLUMNS="200")
    assert "4 shown of 4" in table.stdout and "3 partitions of job" in table.stdout
    assert next(r["name"] for r in records if r["partition"] == 2) in table.stdout

    names = [r["name"] for r in records]
    shown = await cli("dlq", "show", "job", *names, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == records

    JobWorker.broken = False  # the fix is deployed
    replayed = await cli("dlq", "replay", "job", "--json")
    assert replayed.exit_code == 0, replayed.output
    new_ids = json.loads(replayed.stdout)["replayed"]
    assert set(new_ids) == set(names)
    for r in records:  # back onto the partition it came from
        [(_, fields)] = await redis.xrange(r["stream"], new_ids[r["name"]], new_ids[r["name"]])
        assert json.loads(fields[b"action"])["action_id"] == r["action_id"]
    for k in range(P):
        assert await redis.xlen(queues.dead_letter_stream("job", k)) == 0
    async with WorkerPool(JobWorker, settings, num_workers=1):
        await wait_for(lambda: sorted(JobWorker.handled) == sorted(sent))
    again = await cli("dlq", "replay", "job", *names)
    assert again.exit_code == 1
    assert again.stdout.count("not found") == 4


async def test_equal_ids_in_two_partitions_are_told_apart_by_name(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    queues = _queues(settings)
    for k in (0, 1):
        await redis.xgroup_create(queues.action_stream("job", k), "job-group", mkstream=True)
        record = {"original": b"{}", "reason": "malformed", "stream": f"p{k}"}
        await redis.xadd(queues.dead_letter_stream("job", k), record, id="1000-0")
    shown = await cli("dlq", "show", "job", "1000-0", "1:1000-0", "--json")
    assert shown.exit_code == 0, shown.output
    assert [(r["partition"], r["stream"]) for r in json.loads(shown.stdout)] == [
        (0, "p0"),
        (1, "p1"),
    ]
    missing = await cli("dlq", "show", "job", "2:1000-0")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no dead letter 2:1000-0 in the dead letters of")

    purged = await cli("dlq", "purge", "job", "1:1000-0", "--yes", "--json")
    assert json.loads(purged.stdout) == {"deleted": 1, "missing": []}
    assert await redis.xlen(queues.dead_letter_stream("job", 0)) == 1
    assert await redis.xlen(queues.dead_letter_stream("job", 1)) == 0
    everything = await cli("dlq", "purge", "job", "--yes")
    assert everything.exit_code == 0, everything.output
    assert "deleted 1 dead letters" in everything.stdout

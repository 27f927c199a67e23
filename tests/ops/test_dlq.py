"""``common dlq list|show|replay|purge``: dead letters found, filtered, replayed, purged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from tests.helpers import wait_for
from tests.ops.conftest import Invoke


class RepairableWorker(BaseWorker):
    """Fails ``job.run`` while ``broken``; then handles it (as after a fix was deployed)."""

    broken = True
    handled: list[str] = []

    async def _handle_job_run(self, action: DomainAction) -> dict[str, Any]:
        if type(self).broken:
            raise RuntimeError("database schema too old")
        type(self).handled.append(str(action.action_id))
        return {"ok": True}

    async def _handle_job_reject(self, action: DomainAction) -> None:
        from common import NonRetryableError

        raise NonRetryableError("never")


@pytest.fixture
def job_settings(settings: CommonAppSettings) -> CommonAppSettings:
    return settings.model_copy(update={"service_name": "job", "max_retries": 2})


@pytest.fixture
async def seeded(
    job_settings: CommonAppSettings, redis: aioredis.Redis
) -> AsyncIterator[list[str]]:
    """Three ``job.run`` dead-lettered after max_retries, two ``job.reject`` as non_retryable."""
    RepairableWorker.broken = True
    RepairableWorker.handled = []
    async with WorkerPool(RepairableWorker, job_settings, num_workers=1) as pool:
        client = BaseRedisClient("api", redis, job_settings)
        ids = []
        for i in range(3):
            action = DomainAction(action_type="job.run", data={"n": i})
            ids.append(str(action.action_id))
            await client.send_action_async(action)
        for _ in range(2):
            await client.send_action_async(DomainAction(action_type="job.reject"))
        dead = pool.workers[0].stats.dead_lettered
        await wait_for(lambda: dead.get("max_retries") == 3 and dead.get("non_retryable") == 2)
        await client.close()
    yield ids


def _dlq(settings: CommonAppSettings) -> str:
    return QueueManager(settings.queue_prefix, settings.environment).dead_letter_stream("job")


async def test_list_filters_by_reason_type_since_and_limit(seeded: list[str], cli: Invoke) -> None:
    result = await cli("dlq", "list", "job", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 5
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)  # oldest first
    first = next(r for r in records if r["action_type"] == "job.run")
    assert first["reason"] == "max_retries"
    assert first["action_type"] == "job.run"
    assert first["retries"] == 2
    assert first["error"]["message"] == "database schema too old"
    assert json.loads(first["original"])["data"]["n"] in (0, 1, 2)
    assert first["stream"].endswith(":{job}:actions")

    async def count(*args: str) -> int:
        found = await cli("dlq", "list", "job", "--json", *args)
        assert found.exit_code == 0, found.output
        return len(json.loads(found.stdout))

    assert await count("--reason", "non_retryable") == 2
    assert await count("--type", "job.run") == 3
    assert await count("--type", "job.run", "--reason", "non_retryable") == 0
    assert await count("--limit", "4") == 4
    assert await count("--since", "1h") == 5
    assert await count("--since", "2999-01-01T00:00:00Z") == 0

    table = await cli("dlq", "list", "job", COLUMNS="200")
    assert table.exit_code == 0
    assert "5 shown of 5" in table.stdout
    assert "database schema too old" in table.stdout


async def test_show_prints_a_record_in_full(seeded: list[str], cli: Invoke) -> None:
    listed = await cli("dlq", "list", "job", "--json", "--limit", "1", "--type", "job.run")
    records = json.loads(listed.stdout)
    record_id = records[0]["id"]
    shown = await cli("dlq", "show", "job", record_id, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == records
    table = await cli("dlq", "show", "job", record_id, COLUMNS="200")
    assert table.exit_code == 0
    assert "database schema too old" in table.stdout and record_id in table.stdout
    missing = await cli("dlq", "show", "job", "1-1")
    assert missing.exit_code == 1
    dead_letters = records[0]["stream"].replace(":actions", ":dlq")
    assert missing.stderr.splitlines() == [f"error: no dead letter 1-1 in {dead_letters}"]


async def test_replay_round_trip_dead_lettered_replayed_then_handled(
    seeded: list[str], job_settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    RepairableWorker.broken = False  # the fix is deployed
    result = await cli("dlq", "replay", "job", "--type", "job.run", "--json")
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.stdout)["replayed"]
    assert len(replayed) == 3
    # Gone from the dead letters, in the same step; the two others stay.
    left = json.loads((await cli("dlq", "list", "job", "--json")).stdout)
    assert [r["reason"] for r in left] == ["non_retryable", "non_retryable"]
    stream = QueueManager(job_settings.queue_prefix, "dev").action_stream("job")
    for new_id in replayed.values():
        [(_, fields)] = await redis.xrange(stream, new_id, new_id)
        assert json.loads(fields[b"action"])["action_type"] == "job.run"
    async with WorkerPool(RepairableWorker, job_settings, num_workers=1) as pool:
        await wait_for(lambda: sorted(RepairableWorker.handled) == sorted(seeded))
        stats = pool.workers[0].stats
        assert stats.handled == 3
        assert stats.retried == 0  # a fresh attempt count: first delivery, no retry
    # Replaying them again finds nothing: each record went back once.
    again = await cli("dlq", "replay", "job", *replayed.keys())
    assert again.exit_code == 1
    assert again.stdout.count("not found") == 3


async def test_replay_refuses_a_record_from_another_stream(
    seeded: list[str], job_settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    bogus = await redis.xadd(
        _dlq(job_settings), {"original": b"{}", "reason": "malformed", "stream": "elsewhere"}
    )
    result = await cli("dlq", "replay", "job", bogus.decode())
    assert result.exit_code == 1
    assert "not replayed" in result.stdout and "elsewhere" in result.stdout
    assert await redis.xlen(_dlq(job_settings)) == 6  # still there


async def test_purge_asks_first_and_deletes_only_what_matches(
    seeded: list[str], job_settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    declined = await cli("dlq", "purge", "job", "--reason", "non_retryable", input="n\n")
    assert declined.exit_code == 1
    assert "nothing deleted" in declined.stderr
    assert await redis.xlen(_dlq(job_settings)) == 5
    no_terminal = await cli("dlq", "purge", "job")  # nobody to answer: nothing deleted
    assert no_terminal.exit_code == 1
    assert await redis.xlen(_dlq(job_settings)) == 5

    accepted = await cli("dlq", "purge", "job", "--reason", "non_retryable", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted 2 dead letters" in accepted.stdout
    assert await redis.xlen(_dlq(job_settings)) == 3

    forced = await cli("dlq", "purge", "job", "--yes", "--limit", "2", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout) == {"deleted": 2, "missing": []}
    assert await redis.xlen(_dlq(job_settings)) == 1


async def test_dlq_of_an_unknown_service_and_a_bad_since_are_one_line(
    seeded: list[str], cli: Invoke
) -> None:
    for args, expected in (
        (("dlq", "list", "nosuch"), "error: unknown service 'nosuch'"),
        (("dlq", "list", "Bad Name"), "error: 'Bad Name' is not a service name"),
        (("dlq", "list", "job", "--since", "yesterday"), "error: --since 'yesterday'"),
        (("dlq", "replay", "nosuch"), "error: unknown service 'nosuch'"),
        (("dlq", "purge", "nosuch", "--yes"), "error: unknown service 'nosuch'"),
    ):
        result = await cli(*args)
        assert result.exit_code == 1, args
        [line] = result.stderr.splitlines()
        assert line.startswith(expected), (args, line)

"""Leases under faults, in-process on the real server: slow round trips, trimmed entries,
connection errors. Each test drives one consumer's :class:`LeaseKeeper` step by step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.errors import RetryLaterError
from common.models.actions import ErrorDetail
from common.testing import RedisServer, unique_settings
from common.workers.delays import claim_due, claim_idle, delay_set_key
from common.workers.outcome import Delivery, Fail
from common.workers.recovery import Reclaimer
from tests.helpers import wait_for


class LeaseWorker(BaseWorker):
    """Handlers for the in-process lease tests."""

    calls: dict[str, int]

    async def _initialize_components(self) -> None:
        self.calls = {}

    async def _handle_lease_flaky(self, action: DomainAction) -> dict[str, Any]:
        """Fails on its first run, succeeds afterwards."""
        aid = str(action.action_id)
        self.calls[aid] = self.calls.get(aid, 0) + 1
        if self.calls[aid] == 1:
            raise RuntimeError("first run fails")
        return {}


def _settings(server: RedisServer, **overrides: Any) -> CommonAppSettings:
    values: dict[str, Any] = {
        "redis_url": server.url,
        "service_name": "lease",
        "visibility_timeout_s": 1.0,
        "claim_interval_s": 0.2,
        "worker_block_ms": 50,
        "retry_initial_delay_s": 0.2,
        "retry_max_delay_s": 0.2,
        "retry_jitter": 0.0,
        "shutdown_grace_s": 1.0,
    }
    values.update(overrides)
    return unique_settings(**values)


@pytest.fixture
async def one_conn(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client whose pool has a single connection (callers queue for it)."""
    pool = BlockingConnectionPool.from_url(redis_server.url, max_connections=1, timeout=10)
    client = aioredis.Redis.from_pool(pool)
    yield client
    await client.aclose()


async def _read_one(worker: BaseWorker, client: BaseRedisClient) -> Delivery:
    await worker.initialize()
    await client.send_action_async(DomainAction(action_type="lease.flaky"))
    (delivery,) = await worker._read(1, 1000)
    return delivery


async def _trim_then_renew(redis: aioredis.Redis, worker: BaseWorker, delivery: Delivery) -> None:
    """Trim the stream under ``delivery`` (still held), then let its lease renewal come due."""
    delivery.touched = time.monotonic() - worker.leases.period_s
    await redis.xtrim(worker.stream, maxlen=0, approximate=False)
    await worker.leases.renew()


async def _holding(one_conn: aioredis.Redis) -> None:
    """Wait until another task has taken the only connection of ``one_conn``."""
    pool = one_conn.connection_pool
    await wait_for(lambda: pool._in_use_connections, interval=0.001)  # type: ignore[attr-defined]


async def _pel(redis: aioredis.Redis, worker: BaseWorker) -> list[dict[str, Any]]:
    return list(await redis.xpending_range(worker.stream, worker.group, "-", "+", 100))


async def test_slow_round_trip_does_not_lose_own_lease(
    redis_server: RedisServer, one_conn: aioredis.Redis
) -> None:
    """A lease claim that waits for a pooled connection (every connection busy in a blocked
    read) resets the idle time when it *executes*, not when it was issued. Measuring from the
    issue time made the next renewal's min-idle too large: the consumer lost its own entry,
    stopped renewing it, and another consumer ran it a second time."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, one_conn, "slow-rtt")
    client = BaseRedisClient("api", one_conn, settings)
    delivery = await _read_one(worker, client)

    async def hold_connection() -> None:
        await one_conn.blpop([f"{settings.queue_prefix}:nothing"], timeout=0.15)

    holder = asyncio.create_task(hold_connection())
    await _holding(one_conn)
    assert await worker.leases.extend(delivery)  # waits ~0.14 s to execute
    await holder
    await asyncio.sleep(0.05)  # time passing, shorter than the wait above
    assert await worker.leases.extend(delivery), "the consumer lost the lease on its own entry"
    (entry,) = await _pel(one_conn, worker)
    assert entry["consumer"].decode() == worker.consumer_name
    await client.close()


async def test_lease_is_never_stolen_back_from_a_new_owner(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """Once another consumer has taken an entry over (its idle time is reset), the old
    holder's renewal fails instead of stealing it back, and the old holder stops holding it."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "old")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    delivery.touched = time.monotonic() - 5  # the old holder was frozen for 5 s
    await redis.xclaim(worker.stream, worker.group, "new-owner", 0, [delivery.entry_id])
    await worker.leases.renew()
    (entry,) = await _pel(redis, worker)
    assert entry["consumer"] == b"new-owner"
    assert delivery.entry_id not in worker.held
    assert worker.stats.lost == 1 and worker.stats.deleted_while_pending == 0
    await client.close()


async def test_entry_trimmed_while_its_handler_runs_is_left_to_the_handler(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """The running handler has the entry's fields: its outcome decides. The renewal keeps
    the delivery (no count yet, no repeated claims); a failed run's retry claim then reports
    it deleted while pending."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "trim-run")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    await _trim_then_renew(redis, worker, delivery)
    assert worker.held.get(delivery.key) is delivery
    assert worker.stats.deleted_while_pending == 0 and worker.stats.lost == 0
    # Still pending: if this worker died now, a reclaimer would find and count it.
    assert [p["message_id"] for p in await _pel(redis, worker)] == [delivery.entry_id]
    delivery.touched = time.monotonic() - worker.leases.period_s
    await worker.leases.renew()  # known gone: not claimed again, not counted again
    assert worker.stats.deleted_while_pending == 0 and worker.stats.lost == 0
    # The handler failed; its retry comes due and finds the entry gone.
    await _schedule_failed(worker, delivery, 0.0)
    assert await worker._claim_due_retries() == []
    assert worker.stats.deleted_while_pending == 1 and worker.stats.lost == 0
    await client.close()


async def _pending_zero(redis: aioredis.Redis, worker: BaseWorker) -> bool:
    return int((await redis.xpending(worker.stream, worker.group))["pending"]) == 0


async def test_confirm_drops_what_another_consumer_took_while_this_one_was_frozen(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """``LeaseKeeper.confirm`` (for the engine to call before starting a delivery): a fresh
    delivery passes without a round trip; one whose lease lapsed and that another consumer
    took over is dropped and counted lost; one whose lease lapsed but is still ours passes
    and is renewed."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "frozen")
    client = BaseRedisClient("api", redis, settings)
    await worker.initialize()
    for _ in range(3):
        await client.send_action_async(DomainAction(action_type="lease.flaky"))
    fresh, taken, lapsed = await worker._read(3, 1000)
    assert await worker.leases.confirm([fresh]) == [fresh]
    assert worker.stats.lease_renewals == 0  # no round trip
    frozen_since = time.monotonic() - 10
    taken.touched = lapsed.touched = frozen_since
    # Redis's side of the freeze: nobody reset the idle time of ``lapsed`` for 10 s.
    await redis.xclaim(
        worker.stream, worker.group, worker.consumer, 0, [lapsed.entry_id], idle=10_000, justid=True
    )
    await redis.xclaim(worker.stream, worker.group, "other", 0, [taken.entry_id])
    assert await worker.leases.confirm([fresh, taken, lapsed]) == [fresh, lapsed]
    assert worker.stats.lost == 1 and taken.entry_id not in worker.held
    assert lapsed.touched > frozen_since and worker.stats.lease_renewals == 1
    assert await worker.leases.confirm([taken]) == []  # no longer held: dropped at once
    await client.close()


async def test_a_caller_resetting_touched_to_before_its_claim_cannot_break_the_lease(
    redis_server: RedisServer, one_conn: aioredis.Redis
) -> None:
    """The engine stamps a retried delivery with the time it *started* the retry claim; if
    that claim waited for a connection, the stamp is earlier than the reset. The lease keeps
    the reply time of its own claims, so the next renewal still succeeds."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, one_conn, "stamp")
    client = BaseRedisClient("api", one_conn, settings)
    delivery = await _read_one(worker, client)
    started = time.monotonic()
    holder = asyncio.create_task(one_conn.blpop([f"{settings.queue_prefix}:nothing"], timeout=0.15))
    await _holding(one_conn)
    assert await worker.leases.extend(delivery)
    await holder
    delivery.touched = started  # a stamp from before the renewal executed
    await asyncio.sleep(0.05)
    assert await worker.leases.extend(delivery), "lost its own lease"
    await client.close()


async def test_release_at_shutdown_reports_entries_trimmed_meanwhile(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """At shutdown a worker hands back what it holds (XCLAIM to itself with IDLE). On Redis 7
    claiming a deleted entry drops it from the pending list, so entries trimmed meanwhile
    vanished without a trace; they are now counted as deleted while pending. (Found by the
    state machine in test_state_machine.py.)"""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "stopping")
    client = BaseRedisClient("api", redis, settings)
    await worker.initialize()
    for _ in range(5):
        await client.send_action_async(DomainAction(action_type="lease.flaky"))
    batch = await worker._read(5, 1000)
    await redis.xdel(worker.stream, batch[0].entry_id, batch[1].entry_id)
    released = await worker.leases.release_all()
    assert released == 3
    assert worker.stats.deleted_while_pending == 2
    pending = await _pel(redis, worker)
    assert [p["message_id"] for p in pending] == [d.entry_id for d in batch[2:]]
    assert all(p["time_since_delivered"] >= 1000 for p in pending)  # claimable at once
    await client.close()


async def test_entry_trimmed_before_its_handler_ran_is_counted_after_a_crash(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """Read, trimmed, renewed (found deleted), then the worker dies before running it: the
    entry must still be pending, so that a reclaimer counts it. Renewing with XCLAIM alone
    dropped it from the pending list, and the action vanished without a trace. (Found by the
    state machine in test_state_machine.py.)"""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "doomed")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    await _trim_then_renew(redis, worker, delivery)
    del worker  # SIGKILL
    survivor = LeaseWorker(settings, redis, "survivor")
    reclaimer = Reclaimer([survivor])
    reclaimer.visibility_ms = 0  # as if the visibility timeout had passed
    survivor._run_task = asyncio.current_task()  # (the reclaimer hands work to running workers)
    await reclaimer.reclaim_once()
    assert reclaimer.deleted_while_pending == 1
    assert survivor.stats.deleted_while_pending == 1
    assert await _pel(redis, survivor) == []
    await client.close()


async def test_entry_trimmed_before_its_retry_is_counted_once(redis_server: RedisServer) -> None:
    """A failed action's entry is trimmed before its retry comes due: the retry claim finds
    it gone. It must be counted as deleted while pending, and not also as lost to another
    consumer (no other consumer took it)."""
    settings = _settings(
        redis_server, num_internal_workers=1, retry_initial_delay_s=0.3, retry_max_delay_s=0.3
    )
    async with WorkerPool(LeaseWorker, settings) as pool:
        (worker,) = pool.workers
        client = BaseRedisClient("api", pool.redis, settings)
        await client.send_action_async(DomainAction(action_type="lease.flaky"))
        await wait_for(lambda: worker.stats.failed == 1, timeout=5)
        await pool.redis.xtrim(worker.stream, maxlen=0, approximate=False)
        await wait_for(lambda: worker.stats.deleted_while_pending == 1, timeout=5)
        await wait_for(lambda: _pending_zero(pool.redis, worker), timeout=5)
        await client.close()
    assert worker.stats.lost == 0


@pytest.mark.parametrize("loop", ["reclaim", "renew"])
async def test_a_failed_background_pass_is_logged_and_the_loop_goes_on(
    redis_server: RedisServer,
    redis: aioredis.Redis,
    loop: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reclaim loop and the lease loop survive a pass that raises: one bad pass (a lost
    connection, a script error) must not end recovery or renewal for good."""
    settings = _settings(redis_server, claim_interval_s=0.05, visibility_timeout_s=0.15)
    worker = LeaseWorker(settings, redis, f"loop-{loop}")
    await worker.initialize()
    target: Any = Reclaimer([worker]) if loop == "reclaim" else worker.leases
    name = "reclaim_once" if loop == "reclaim" else "renew"
    real = getattr(target, name)
    passes: list[int] = []

    async def flaky() -> Any:
        passes.append(1)
        if len(passes) == 1:
            raise RedisConnectionError("injected: connection reset by peer")
        return await real()

    monkeypatch.setattr(target, name, flaky)
    if loop == "reclaim":
        target.start()
        await wait_for(lambda: len(passes) >= 3)
        await target.stop()
    else:
        async with target.running():
            await wait_for(lambda: len(passes) >= 3)
    assert "injected: connection reset by peer" in caplog.text


async def _schedule_failed(worker: LeaseWorker, delivery: Delivery, delay: float) -> None:
    """Settle ``delivery`` as failed, to be retried after ``delay``, and write the schedule."""
    worker._settle(delivery, Fail(ErrorDetail(error_type="E", message="failed"), delay=delay))
    assert await worker._flush()


async def test_entry_trimmed_while_scheduled_is_counted_deleted_when_due(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """A scheduled retry of an entry trimmed meanwhile cannot run: when it is due the claim
    reports it as deleted while pending (not as taken over) and clears it from the PEL."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "trim-retry")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    await _schedule_failed(worker, delivery, 0.05)
    assert delivery.entry_id not in worker.held  # the delay set holds it, not a lease
    await redis.xtrim(worker.stream, maxlen=0, approximate=False)
    await wait_for(lambda: worker._retries[0][0] <= time.monotonic(), timeout=2)
    assert await worker._claim_due_retries() == []
    assert worker.stats.deleted_while_pending == 1 and worker.stats.lost == 0
    assert await _pel(redis, worker) == []
    assert await redis.zcard(delay_set_key(worker.stream, worker.group)) == 0
    await client.close()


async def test_a_due_retry_goes_to_exactly_one_of_two_claimers(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """The consumer that failed the entry and a reclaimer both find it due: one script takes
    it off the delay set and claims it, so exactly one of them runs it, counted as the
    second delivery."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "retrier")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    await _schedule_failed(worker, delivery, 0.0)
    now_ms = int(time.time() * 1000) + 10
    results = await asyncio.gather(
        claim_due(redis, worker.stream, worker.group, "other", [delivery.entry_id], now_ms),
        worker._claim_due_retries(),
    )
    other, mine = results
    assert (delivery.entry_id in other) != bool(mine)
    [pel] = await _pel(redis, worker)
    assert pel["times_delivered"] == 2
    await client.close()


async def test_a_scheduled_retry_is_not_claimed_before_it_is_due_however_idle(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """The reclaimer's scan for abandoned entries skips an entry waiting in the delay set,
    even when it has been idle far longer than the visibility timeout."""
    settings = _settings(redis_server)
    worker = LeaseWorker(settings, redis, "waiting")
    client = BaseRedisClient("api", redis, settings)
    delivery = await _read_one(worker, client)
    await _schedule_failed(worker, delivery, 60)
    ids = [delivery.entry_id]
    assert await claim_idle(redis, worker.stream, worker.group, "thief", ids, 0) == {}
    assert await claim_due(redis, worker.stream, worker.group, "thief", ids, 10**13 - 1) != {}
    await client.close()


class RetryLaterWorker(BaseWorker):
    """Asks for a retry in 2 s on the first delivery; records when each delivery ran."""

    runs: ClassVar[list[tuple[float, int]]] = []

    async def _handle_lease_later(self, action: DomainAction) -> dict[str, Any]:
        RetryLaterWorker.runs.append((time.monotonic(), len(RetryLaterWorker.runs) + 1))
        if len(RetryLaterWorker.runs) == 1:
            raise RetryLaterError(2.0)
        return {}


async def test_a_retry_delay_longer_than_the_visibility_timeout_survives_its_worker(
    redis_server: RedisServer,
) -> None:
    """The worker that failed the entry (asking for a 2 s delay, with a 0.5 s visibility
    timeout) stops at once; another pool takes the entry only when it is due, and Redis's
    delivery count makes it the second attempt."""
    settings = _settings(redis_server, visibility_timeout_s=0.5, num_internal_workers=1)
    RetryLaterWorker.runs = []
    client_redis = aioredis.Redis.from_url(redis_server.url)
    client = BaseRedisClient("api", client_redis, settings)
    async with WorkerPool(RetryLaterWorker, settings) as first:
        await client.send_action_async(DomainAction(action_type="lease.later"))
        key = delay_set_key(first.workers[0].stream, first.workers[0].group)
        await wait_for(lambda: client_redis.zcard(key), timeout=5)
    async with WorkerPool(RetryLaterWorker, settings) as second:
        await wait_for(lambda: len(RetryLaterWorker.runs) == 2, timeout=10)
        waited = RetryLaterWorker.runs[1][0] - RetryLaterWorker.runs[0][0]
        assert 1.9 <= waited < 2.0 + settings.claim_interval_s + 1.0
        assert second.workers[0].stats.retried + second.workers[0].stats.reclaimed == 1
    await client.close()
    await client_redis.aclose()

"""Sends and pseudo-sync calls are bounded in time, even when Redis does not answer.

``CLIENT PAUSE ... ALL`` (sent on a connection of its own) makes the server hold every command
of the other clients without answering: the situation of a stalled server or a network hang.
(Redis 7.0 holds even ``CLIENT UNPAUSE`` then, so the tests that only send pause writes
instead, which ``UNPAUSE`` ends at once.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from common.clients.base_redis_client import BaseRedisClient
from common.config import CommonAppSettings
from common.errors import ActionTimeoutError, SendTimeoutError
from common.models.actions import DomainAction
from common.models.codec import decode_action
from common.testing import RedisServer
from tests.helpers import wait_for

PAUSE_MS = 2000


@pytest.fixture
async def pauser(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A connection of its own that pauses the server; it always unpauses it at the end."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.ping()
    yield client
    await client.execute_command("CLIENT", "UNPAUSE")
    await client.aclose()


async def _pause(pauser: aioredis.Redis, mode: str = "WRITE") -> None:
    await pauser.execute_command("CLIENT", "PAUSE", PAUSE_MS, mode)


def _client(
    redis: aioredis.Redis, settings: CommonAppSettings, **overrides: object
) -> BaseRedisClient:
    return BaseRedisClient("caller", redis, settings.model_copy(update=overrides))


def _add(i: int = 0) -> DomainAction:
    return DomainAction(action_type="calc.add", data={"i": i})


async def _appended(redis: aioredis.Redis, client: BaseRedisClient) -> list[int]:
    """The ``i`` of each action on the calc stream, in order."""
    entries = await redis.xrange(client.queues.action_stream("calc"))
    return [decode_action(fields, 1 << 20).data["i"] for _, fields in entries]


async def test_a_pseudo_sync_timeout_bounds_the_send_as_well(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings)
    await redis.ping()  # a pooled connection exists: only the XADD itself is held
    await _pause(pauser, "ALL")
    started = time.monotonic()
    with pytest.raises(ActionTimeoutError) as caught:
        await client.send_action_pseudo_sync(_add(), timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.0, elapsed
    # The cause says that the send itself was cut off, and that its outcome is unknown.
    assert isinstance(caught.value.__cause__, SendTimeoutError)
    assert caught.value.__cause__.outcome_unknown
    await client.close()  # after the pause: the listener's BLPOP is held too


async def test_a_send_on_a_silent_server_fails_after_the_send_timeout_and_is_not_resent(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings, redis_send_timeout_s=0.3)
    await redis.ping()
    await _pause(pauser)
    started = time.monotonic()
    with pytest.raises(SendTimeoutError, match="outcome is unknown") as caught:
        await client.send_action_async(_add())
    assert 0.25 <= time.monotonic() - started < 0.8
    assert caught.value.outcome_unknown
    await pauser.execute_command("CLIENT", "UNPAUSE")
    # Once the server answers again the client works, and the cut-off send was not replayed.
    await client.send_action_async(_add(1))
    assert await _appended(redis, client) in ([1], [0, 1])  # the cut-off one at most once
    await client.close()


async def test_coalesced_sends_are_each_bounded_and_say_whether_they_went_out(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings, redis_send_timeout_s=0.3)
    await redis.ping()
    await _pause(pauser)
    started = time.monotonic()
    # The first XADD goes out (and is held); the other four queue behind it.
    results = await asyncio.gather(
        *[client.send_action_async(_add(i)) for i in range(5)], return_exceptions=True
    )
    assert time.monotonic() - started < 0.8
    assert all(isinstance(r, SendTimeoutError) for r in results), results
    errors = [r for r in results if isinstance(r, SendTimeoutError)]
    assert errors[0].outcome_unknown  # in flight: may have been appended
    # The others queued behind it. Usually none went out ("not sent": safe to resend); on a
    # loaded machine the next pipeline may have left just before their deadline, and then
    # they say so. What each says must be true: none that said "not sent" was appended.
    unsent = {i for i, e in enumerate(errors) if not e.outcome_unknown}
    assert all("not sent" in str(errors[i]) for i in unsent)
    await pauser.execute_command("CLIENT", "UNPAUSE")
    assert await client.send_action_async(_add(9))  # the client is not left stuck
    appended = await _appended(redis, client)
    assert 9 in appended and not unsent & set(appended)
    await client.close()


async def test_a_batch_send_on_a_silent_server_fails_after_the_send_timeout(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings, redis_send_timeout_s=0.3)
    await redis.ping()
    await _pause(pauser)
    started = time.monotonic()
    with pytest.raises(SendTimeoutError, match="outcome is unknown"):
        await client.send_actions_async([_add(i) for i in range(3)])
    assert time.monotonic() - started < 0.8
    await pauser.execute_command("CLIENT", "UNPAUSE")
    await client.close()


def test_the_send_timeout_has_a_bounded_default() -> None:
    assert CommonAppSettings().redis_send_timeout_s == 10.0


async def test_a_pseudo_sync_call_queued_behind_a_held_send_times_out_unsent(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings)  # sends may wait 10 s: the call's own timeout is shorter
    await redis.ping()
    await _pause(pauser)
    held = asyncio.create_task(client.send_action_async(_add(0)))
    await wait_for(lambda: client._sending, interval=0.001)  # the XADD in flight
    started = time.monotonic()
    with pytest.raises(ActionTimeoutError) as caught:
        await client.send_action_pseudo_sync(_add(1), timeout=0.3)
    assert time.monotonic() - started < 0.8
    assert isinstance(caught.value.__cause__, SendTimeoutError)
    assert not caught.value.__cause__.outcome_unknown  # it never left the queue
    await pauser.execute_command("CLIENT", "UNPAUSE")
    assert await held  # the held send completes once the server answers
    assert await _appended(redis, client) == [0]
    await client.close()


async def test_a_caller_cancelled_during_a_held_send_is_cancelled_not_timed_out(
    redis: aioredis.Redis, settings: CommonAppSettings, pauser: aioredis.Redis
) -> None:
    client = _client(redis, settings, redis_send_timeout_s=5.0)
    await redis.ping()
    await _pause(pauser)
    send = asyncio.create_task(client.send_action_async(_add(0)))
    await wait_for(lambda: client._sending, interval=0.001)
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    await pauser.execute_command("CLIENT", "UNPAUSE")
    assert await client.send_action_async(_add(1))  # the client goes on
    await client.close()

"""Topics in ``common status`` and ``common dlq``, and ``common publish``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.messaging import registry, run_workers, worker
from common.messaging.producer import Producer
from common.testing import free_port
from tests.helpers import wait_for
from tests.ops.conftest import Invoke

TOPIC = "opsq.orders"


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    before = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(before)


class Seen:
    broken = True
    billing: list[Any] = []
    shipping: list[Any] = []


@pytest.fixture
async def topic_pool(settings: CommonAppSettings, redis: aioredis.Redis) -> AsyncIterator[Any]:
    """Groups ``billing`` (fails while broken: dead-lettered after 2 attempts) and
    ``shipping`` (always fine) on one topic; two events, both dead-lettered by billing."""
    Seen.broken, Seen.billing, Seen.shipping = True, [], []

    @worker(TOPIC, group_id="billing", max_retries=2)
    async def bill(payload: dict[str, Any]) -> None:
        if Seen.broken:
            raise RuntimeError("tax table missing")
        Seen.billing.append(payload)

    @worker(TOPIC, group_id="shipping")
    async def ship(payload: dict[str, Any]) -> None:
        Seen.shipping.append(payload)

    fast = settings.model_copy(update={"retry_initial_delay_s": 0.01})
    queues = QueueManager(settings.queue_prefix, settings.environment)
    dead = queues.topic_dead_letter_stream(TOPIC, "billing")
    async with run_workers(bill, ship, settings=fast) as pool:
        producer = Producer(fast)
        for n in (1, 2):
            await producer.send(TOPIC, {"n": n})
        await producer.close()
        await wait_for(lambda: redis.xlen(dead), timeout=10)
        await wait_for(lambda: _eq(redis.xlen(dead), 2), timeout=10)
        await wait_for(lambda: len(Seen.shipping) == 2)
        yield pool


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_status_shows_a_topic_with_each_group_and_its_dead_letters(
    topic_pool: Any, cli: Invoke
) -> None:
    result = await cli("status", "--json")
    assert result.exit_code == 0, result.output
    [topic] = [s for s in json.loads(result.stdout) if s["kind"] == "topic"]
    assert (topic["name"], topic["length"], topic["dead_letters"]) == (TOPIC, 2, 2)
    groups = {g["name"]: g for g in topic["groups"]}
    assert set(groups) == {"billing", "shipping"}
    assert groups["billing"]["dead_letters"] == 2
    assert groups["billing"]["dead_letter_stream"].endswith(f"{{{TOPIC}}}:dlq:billing")
    assert groups["shipping"]["dead_letters"] == 0
    assert all(g["lag"] == 0 and g["pending"] == 0 for g in groups.values())
    only = await cli("status", "--service", TOPIC, "--json")
    assert [s["name"] for s in json.loads(only.stdout)] == [TOPIC]
    table = await cli("status")
    assert TOPIC in table.stdout and "billing" in table.stdout


async def test_dlq_of_a_topic_needs_its_group_when_it_has_several(
    topic_pool: Any, cli: Invoke
) -> None:
    result = await cli("dlq", "list", TOPIC)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line == f"error: topic '{TOPIC}' has groups billing, shipping: name one with --group"
    listed = await cli("dlq", "list", TOPIC, "--group", "billing", "--json")
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.stdout)
    assert [json.loads(json.loads(r["original"])["event"])["data"] for r in records] == [
        {"n": 1},
        {"n": 2},
    ]
    assert {(r["reason"], r["action_type"], r["retries"]) for r in records} == {
        ("max_retries", TOPIC, 2)
    }
    shown = await cli("dlq", "show", TOPIC, records[0]["id"], "--group", "billing", "--json")
    assert shown.exit_code == 0, shown.output
    [record] = json.loads(shown.stdout)
    assert record["error"]["message"] == "tax table missing"
    empty = await cli("dlq", "list", TOPIC, "-g", "shipping", "--json")
    assert json.loads(empty.stdout) == []
    unknown = await cli("dlq", "list", "opsq.nosuch", "--group", "billing")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: unknown topic 'opsq.nosuch'")


async def test_replay_on_a_topic_refuses_without_yes_then_reaches_every_group(
    topic_pool: Any, cli: Invoke, redis: aioredis.Redis, settings: CommonAppSettings
) -> None:
    dead = QueueManager(settings.queue_prefix, settings.environment).topic_dead_letter_stream(
        TOPIC, "billing"
    )
    refused = await cli("dlq", "replay", TOPIC, "--group", "billing")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1].startswith(
        f"error: nothing replayed: topic '{TOPIC}' has other groups (shipping)"
    )
    assert await redis.xlen(dead) == 2  # nothing moved
    Seen.broken = False  # the fix is deployed
    replayed = await cli("dlq", "replay", TOPIC, "--group", "billing", "--yes", "--json")
    assert replayed.exit_code == 0, replayed.output
    assert len(json.loads(replayed.stdout)["replayed"]) == 2
    assert await redis.xlen(dead) == 0
    await wait_for(lambda: len(Seen.billing) == 2)
    assert sorted(p["n"] for p in Seen.billing) == [1, 2]
    # As documented: the topic stream cannot address one group, so shipping got them again.
    await wait_for(lambda: len(Seen.shipping) == 4)


async def test_publish_puts_an_event_on_the_topic_for_every_group(
    topic_pool: Any, cli: Invoke
) -> None:
    result = await cli("publish", TOPIC, '{"n": 3}', "--key", "k3")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["stream"].endswith(f"{{{TOPIC}}}:topic") and sent["event_id"]
    await wait_for(lambda: {"n": 3} in Seen.shipping)


async def test_publish_bad_input_is_one_line(cli: Invoke, redis: aioredis.Redis) -> None:
    for args, expected in (
        (("publish", "opsq.none", "{}"), "error: unknown topic 'opsq.none'"),
        (("publish", "Bad Topic", "{}"), "error: invalid topic name 'Bad Topic'"),
        (("publish", "opsq.none", "{nope", "--create"), "error: malformed JSON"),
    ):
        result = await cli(*args)
        assert result.exit_code == 1, (args, result.output)
        [line] = result.stderr.splitlines()
        assert line.startswith(expected), (args, line)
    created = await cli("publish", "opsq.new", "[1, 2]", "--create")
    assert created.exit_code == 0, created.output
    stream = json.loads(created.stdout)["stream"]
    [(_, fields)] = await redis.xrange(stream)
    assert json.loads(fields[b"event"])["data"] == [1, 2]


async def test_topic_commands_with_redis_down_are_one_line_without_the_password(
    cli: Invoke,
) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    for args in (
        ("publish", TOPIC, "{}"),
        ("dlq", "list", TOPIC, "--group", "billing"),
        ("dlq", "replay", TOPIC, "--group", "billing", "--yes"),
        ("status", "--service", TOPIC),
    ):
        result = await cli(*args, "--connect-timeout", "2", REDIS_URL=url)
        assert result.exit_code == 1, args
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and "s3cret" not in result.output, (args, line)
        assert "127.0.0.1" in line

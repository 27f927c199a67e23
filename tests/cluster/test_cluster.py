"""What only a cluster can break: keys of one service on one master, of several on several;
a subscriber reading topics of different slots; outbox writes to other masters; SCAN of all."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import is_cluster
from common.messaging import ActionContext, run_workers
from common.messaging.handler import Handler
from common.messaging.producer import Producer
from common.messaging.subscription import Subscription
from common.ops.streams import action_streams
from common.workers.outbox import Outbox
from common.workers.outcome import Delivery, ListPush, StreamAdd
from tests.helpers import wait_for


def _node(redis: aioredis.Redis, key: str) -> str:
    cluster: Any = redis
    return str(cluster.get_node_from_key(key).name)


def _names_on_distinct_nodes(redis: aioredis.Redis, key_of: Any, n: int) -> list[str]:
    """``n`` names (svc0, svc1...) whose keys ``key_of(name)`` are on ``n`` distinct masters."""
    chosen: dict[str, str] = {}
    for i in range(200):
        name = f"svc{i}"
        chosen.setdefault(_node(redis, key_of(name)), name)
        if len(chosen) == n:
            return list(chosen.values())
    raise AssertionError("no names on distinct masters")


def _queues(settings: CommonAppSettings) -> QueueManager:
    return QueueManager(settings.queue_prefix, settings.environment)


async def test_the_client_is_a_cluster_client_and_each_service_stays_on_one_master(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    assert isinstance(redis, RedisCluster) and is_cluster(redis)
    assert len(redis.get_primaries()) == 3
    queues = _queues(settings)
    stream = queues.action_stream("calc")
    same = {stream, queues.dead_letter_stream("calc"), f"{stream}:delayed:g", f"{stream}:scheduled"}
    assert len({_node(redis, key) for key in same}) == 1


async def test_status_finds_the_streams_of_services_on_every_master(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """``common status`` lists services by SCAN: on a cluster the scan covers each master."""
    queues = _queues(settings)
    services = _names_on_distinct_nodes(redis, queues.action_stream, 3)
    client = BaseRedisClient("api", redis, settings)
    for service in services:
        await client.send_action_async(
            DomainAction(action_type=f"{service}.noop", payload={}, target_service=service)
        )
    await client.close()
    found = [ref.name for ref in await action_streams(redis, queues)]
    assert found == sorted(services)


async def test_a_subscriber_reads_topics_of_different_masters_and_retries_via_the_delay_set(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    """Two topics on different masters (one XREADGROUP per slot, round-robin); an event that
    fails once comes back through its topic's delay set."""
    queues = _queues(settings)
    first, second = _names_on_distinct_nodes(redis, queues.topic_stream, 2)
    seen: list[tuple[str, int]] = []
    failed: set[int] = set()

    async def handle(data: dict[str, int], context: ActionContext) -> None:
        if data["n"] % 5 == 0 and data["n"] not in failed:
            failed.add(data["n"])
            raise RuntimeError("once")
        seen.append((context.stream, data["n"]))

    sub = Subscription(
        name="two_topics", topics=(first, second), handler=Handler(handle, "two_topics")
    )
    async with run_workers(sub, settings=settings.model_copy(update={"worker_block_ms": 200})):
        for n in range(20):
            await producer.send(first if n % 2 else second, {"n": n})
        await wait_for(lambda: len(seen) == 20)
    assert sorted(n for _, n in seen) == list(range(20))
    assert failed == {0, 5, 10, 15}
    streams = {queues.topic_stream(first), queues.topic_stream(second)}
    assert {stream for stream, _ in seen} == streams


async def test_outbox_writes_to_other_masters_map_back_per_command_then_ack(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """One flush writes replies and a callback to keys on the other masters (redis-py's cluster
    pipeline splits it per node), one of them refused for good (WRONGTYPE): each reply maps
    back to its own entry, so only that entry is dead-lettered; then the XACKs."""
    queues = _queues(settings)
    stream, group = queues.action_stream("calc"), "g"
    home = _node(redis, stream)
    others = [
        s
        for s in _names_on_distinct_nodes(redis, queues.action_stream, 3)
        if _node(redis, queues.action_stream(s)) != home
    ]
    good = queues.reply_key(others[0], "c1")
    bad = next(queues.reply_key(s, "c2") for s in others if queues.reply_key(s, "c2") != good)
    assert home not in {_node(redis, good), _node(redis, bad)}
    callback = queues.action_stream(others[-1])
    await redis.set(bad, "a string")
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(4):
        await redis.xadd(stream, {"i": str(i)})
    read = await redis.xreadgroup(group, "c", {stream: ">"}, count=4)
    ids = [entry_id for entry_id, _ in read[0][1]]
    outbox = Outbox(stream, group, queues.dead_letter_stream("calc"), 1000, "c")
    outbox.add_ack(Delivery(ids[0], {b"action": b"{}"}), (ListPush(bad, b"x", 60),))
    outbox.add_ack(Delivery(ids[1], {b"action": b"{}"}), (ListPush(good, b"y", 60),))
    outbox.add_ack(Delivery(ids[2], {b"action": b"{}"}), (StreamAdd(callback, {"a": b"cb"}),))
    outbox.add_ack(Delivery(ids[3], {b"action": b"{}"}), (ListPush(good, b"z", 60),))
    result = await outbox.flush(redis)
    assert result.error is None and len(outbox) == 0
    assert sorted(i.entry_id for i in result.done) == sorted(ids)
    assert [i.entry_id for i in result.refused] == [ids[0]]
    assert await redis.lrange(good, 0, -1) == [b"y", b"z"]
    assert [f for _, f in await redis.xrange(callback)] == [{b"a": b"cb"}]
    assert (await redis.xpending(stream, group))["pending"] == 0
    [dead] = await redis.xrange(queues.dead_letter_stream("calc"))
    assert b"WRONGTYPE" in b"".join(dead[1].values())


async def test_concurrent_sends_to_services_on_every_master_coalesce_and_keep_order(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Coalesced XADDs for streams of three masters in one pipeline: each caller gets its own
    entry id, and per stream the entries are in call order."""
    queues = _queues(settings)
    services = _names_on_distinct_nodes(redis, queues.action_stream, 3)
    client = BaseRedisClient("api", redis, settings)

    async def caller(service: str) -> list[str]:
        return [
            await client.send_action_async(
                DomainAction(action_type=f"{service}.n", payload={"n": n}, target_service=service)
            )
            for n in range(30)
        ]

    ids = await asyncio.gather(*(caller(s) for s in services))
    await client.close()
    for service, mine in zip(services, ids, strict=True):
        stored = await redis.xrange(queues.action_stream(service))
        assert [e.decode() for e, _ in stored] == mine


class _Counting(BaseWorker):
    handled = 0

    async def _handle_calc_count(self, action: DomainAction) -> None:
        type(self).handled += 1


async def test_reads_do_not_ask_the_server_for_their_keys(
    settings: CommonAppSettings, redis: aioredis.Redis, redis_cluster: Any
) -> None:
    """redis-py would send ``COMMAND GETKEYS`` before every XREADGROUP (its keys move): one
    more round trip per read. The toolkit's cluster client finds them itself."""

    async def getkeys_calls() -> int:
        total = 0
        for node in redis_cluster.nodes:
            plain = aioredis.Redis(host="127.0.0.1", port=node.port)
            stats = await plain.info("commandstats")
            await plain.aclose()
            total += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
        return total

    before = await getkeys_calls()
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(_Counting, settings, redis, num_workers=2):
        for _ in range(20):
            await client.send_action_async(
                DomainAction(action_type="calc.count", payload={}, target_service="calc")
            )
        await wait_for(lambda: _Counting.handled == 20)
    await client.close()
    assert await getkeys_calls() == before


async def test_the_hot_commands_slot_is_redis_pys_own(redis: aioredis.Redis) -> None:
    """The client takes the first argument as the key of the hot commands (see
    ``_FIRST_KEY``): redis-py's parser, from the server's command table, agrees for each."""
    from common.clients.cluster_client import _FIRST_KEY

    samples: dict[str, tuple[Any, ...]] = {
        "XADD": ("{a}s", "*", "f", "v"),
        "XACK": ("{b}s", "g", "1-0"),
        "XCLAIM": ("{c}s", "g", "c", 10, "1-0"),
        "XAUTOCLAIM": ("{d}s", "g", "c", 10, "0-0"),
        "XPENDING": ("{e}s", "g", "-", "+", 10),
        "XLEN": ("{f}s",),
        "XTRIM": ("{g}s", "MAXLEN", "~", 10),
        "XDEL": ("{h}s", "1-0"),
        "XRANGE": ("{i}s", "-", "+"),
        "XREVRANGE": ("{j}s", "+", "-"),
        "RPUSH": ("{k}l", "v"),
        "EXPIRE": ("{l}l", 10),
        "ZADD": ("{m}z", 1, "v"),
        "ZREM": ("{n}z", "v"),
        "ZCARD": ("{o}z",),
        "ZRANGE": ("{p}z", 0, -1),
        "ZRANGEBYSCORE": ("{q}z", 0, 1),
        "ZSCORE": ("{r}z", "v"),
    }
    assert set(samples) == set(_FIRST_KEY)
    cluster: Any = redis
    for command, args in samples.items():
        ours = await cluster._determine_slot(command, *args)
        theirs = await RedisCluster._determine_slot(cluster, command, *args)
        assert ours == theirs == cluster.keyslot(args[0]), command

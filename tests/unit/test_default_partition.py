"""Without a partition key, a send goes to the partition of its action id: any will do,
but evenly, for the ids a caller may give (UUID4, the default; UUID1, whose low half is the
host's constant node) and the same id always to the same partition; with a key, CRC-32."""

from __future__ import annotations

import uuid
from collections import Counter

import fakeredis
import pytest

from common import BaseRedisClient, DomainAction
from common.clients.queue_manager import QueueManager
from common.testing import unique_settings

P = 6
N = 6000


def _client(partitions: int) -> BaseRedisClient:
    settings = unique_settings(service_name="api", stream_partitions=partitions)
    return BaseRedisClient("api", fakeredis.FakeAsyncRedis(), settings)


@pytest.mark.parametrize("make_id", [uuid.uuid4, uuid.uuid1], ids=["uuid4", "uuid1"])
def test_ids_spread_evenly_over_the_partitions(make_id: object) -> None:
    client = _client(P)
    streams = list(client.queues.partition_streams("calc", P))
    picked = Counter(
        client.stream_for(DomainAction(action_type="calc.add", action_id=make_id()))  # type: ignore[operator]
        for _ in range(N)
    )
    assert set(picked) == set(streams)
    assert all(abs(n - N / P) < 0.2 * N / P for n in picked.values()), picked


def test_one_id_one_partition_and_keys_by_crc() -> None:
    client = _client(P)
    action = DomainAction(action_type="calc.add")
    assert len({client.stream_for(action) for _ in range(10)}) == 1
    streams = list(client.queues.partition_streams("calc", P))
    for key in ("tenant-1", "tenant-2", "order:42"):
        expected = streams[QueueManager.partition_of(key, P)]
        assert client.stream_for(action, partition_key=key) == expected


def test_one_partition_is_the_action_stream() -> None:
    client = _client(1)
    action = DomainAction(action_type="calc.add")
    assert client.stream_for(action) == client.queues.action_stream("calc")

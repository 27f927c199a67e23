"""Partitioned topics without a server: key names, the settings that declare them, and which
partition an event goes to."""

from __future__ import annotations

import pytest

from common.clients.queue_manager import MAX_PARTITIONS, QueueManager
from common.config import CommonAppSettings
from common.errors import ConfigurationError, InvalidKeyError
from common.messaging.events import Event
from common.messaging.handler import Handler, publish_write
from common.messaging.partitions import event_stream, leftover_candidates, subscriber_streams
from common.messaging.subscription import Subscription
from common.ops.asyncapi import asyncapi_document
from common.workers.delays import delay_set_key

qm = QueueManager("app", "prod")


def test_partition_zero_keeps_the_topic_keys_and_the_others_have_their_own_hash_tags() -> None:
    assert qm.topic_stream("orders.created") == "app:prod:{orders.created}:topic"
    assert qm.topic_stream("orders.created", 0) == "app:prod:{orders.created}:topic"
    assert qm.topic_stream("orders.created", 3) == "app:prod:{orders.created:3}:topic"
    assert qm.topic_dead_letter_stream("orders.created", "billing", 3) == (
        "app:prod:{orders.created:3}:dlq:billing"
    )
    assert qm.topic_partition_streams("orders.created", "billing", 2) == {
        "app:prod:{orders.created}:topic": "app:prod:{orders.created}:dlq:billing",
        "app:prod:{orders.created:1}:topic": "app:prod:{orders.created:1}:dlq:billing",
    }
    # every key of one partition and group shares the partition's hash tag
    stream = qm.topic_stream("orders.created", 5)
    for key in (qm.topic_dead_letter_stream("orders.created", "g", 5), delay_set_key(stream, "g")):
        assert "{orders.created:5}" in key


@pytest.mark.parametrize("partition", [-1, MAX_PARTITIONS, 1000])
def test_topic_partitions_out_of_range_are_refused(partition: int) -> None:
    with pytest.raises(InvalidKeyError, match="partition must be"):
        qm.topic_stream("orders", partition)


def test_topic_streams_parse_back_to_topic_and_partition() -> None:
    for topic, k in (("orders.created", 0), ("orders.created", 7), ("a-b_c", 127)):
        assert qm.parse_topic_stream(qm.topic_stream(topic, k)) == (topic, k)
    assert qm.parse_topic_stream(qm.topic_stream("x", 2).encode()) == ("x", 2)


@pytest.mark.parametrize(
    "key",
    [
        "app:prod:{orders:0}:topic",  # partition 0 has no suffix: one name per stream
        "app:prod:{orders:01}:topic",
        "app:prod:{orders:128}:topic",
        "app:prod:{orders:x}:topic",
        "app:prod:{Orders}:topic",
        "app:prod:{orders}:dlq:g",
        "app:dev:{orders}:topic",
        "app:prod:{orders}:topic\n",
        "app:prod:{users}:actions",
    ],
)
def test_other_keys_are_not_topic_streams(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        qm.parse_topic_stream(key)


def test_topic_partitions_are_declared_in_the_settings() -> None:
    settings = CommonAppSettings(topic_partitions={"orders.created": 4})
    assert settings.partitions_of_topic("orders.created") == 4
    assert settings.partitions_of_topic("other") == 1
    default = CommonAppSettings(topic_partitions={"quiet": 1}, topic_partitions_default=3)
    assert (default.partitions_of_topic("quiet"), default.partitions_of_topic("x")) == (1, 3)
    assert hash(settings) == hash(CommonAppSettings(topic_partitions={"orders.created": 4}))


def test_topic_partitions_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", '{"orders.created": 6}')
    assert CommonAppSettings().partitions_of_topic("orders.created") == 6


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Orders": 2}, "'Orders' is not a topic name"),
        ({"orders": 0}, "'orders': partitions must be 1 to 128, not 0"),
        ({"orders": MAX_PARTITIONS + 1}, "partitions must be 1 to 128"),
    ],
)
def test_bad_topic_partitions_are_refused_naming_the_setting(
    value: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigurationError, match="topic_partitions") as caught:
        CommonAppSettings(topic_partitions=value)
    assert message in str(caught.value)
    with pytest.raises(ConfigurationError, match="topic_partitions_default"):
        CommonAppSettings(topic_partitions_default=0)


def test_an_event_goes_to_the_partition_of_its_key_else_of_its_id() -> None:
    settings = CommonAppSettings(topic_partitions={"orders": 4})
    keyed = Event(name="orders", key="tenant-7")
    expected = qm.topic_stream("orders", QueueManager.partition_of("tenant-7", 4))
    assert event_stream(qm, settings, "orders", keyed) == expected
    unkeyed = Event(name="orders")
    assert event_stream(qm, settings, "orders", unkeyed) == qm.topic_stream(
        "orders", QueueManager.partition_of(unkeyed.event_id, 4)
    )
    spread = {event_stream(qm, settings, "orders", Event(name="o")) for _ in range(200)}
    assert spread == set(qm.topic_partition_streams("orders", "g", 4))
    assert event_stream(qm, settings, "plain", keyed) == qm.topic_stream("plain")


def test_output_events_keep_the_key_of_their_cause() -> None:
    settings = CommonAppSettings(topic_partitions={"out": 8})
    cause = Event(name="in", key="tenant-7", data={})
    write = publish_write(qm, settings, "out", {"x": 1}, cause=cause)
    assert write.key == qm.topic_stream("out", QueueManager.partition_of("tenant-7", 8))
    assert publish_write(qm, settings, "out", {}, cause=cause, key="k").key == (
        qm.topic_stream("out", QueueManager.partition_of("k", 8))
    )


def test_a_group_reads_every_partition_and_looks_beyond_for_leftovers() -> None:
    settings = CommonAppSettings(topic_partitions={"a": 3})
    streams = subscriber_streams(qm, settings, ("a", "b"), "g")
    assert list(streams) == [qm.topic_stream("a", k) for k in range(3)] + [qm.topic_stream("b")]
    beyond = leftover_candidates(qm, settings, ("a",), "g")
    assert list(beyond) == [qm.topic_stream("a", k) for k in range(3, MAX_PARTITIONS)]
    assert beyond[qm.topic_stream("a", 9)] == qm.topic_dead_letter_stream("a", "g", 9)


def test_the_asyncapi_document_says_a_topic_is_partitioned() -> None:
    async def handle(payload: dict[str, int]) -> None: ...

    sub = Subscription(name="m.handle", topics=("a.b", "c"), handler=Handler(handle, "m.handle"))
    settings = CommonAppSettings(topic_partitions={"a.b": 3})
    channels = asyncapi_document([sub], settings)["channels"]
    described = {c["address"]: c["description"] for c in channels.values()}
    assert described[qm_of(settings).topic_stream("a.b")] == (
        "Topic a.b, 3 partitions by the event's key (partition k >= 1: hash tag {a.b:k})"
    )
    assert described[qm_of(settings).topic_stream("c")] == "Topic c"


def qm_of(settings: CommonAppSettings) -> QueueManager:
    return QueueManager(settings.queue_prefix, settings.environment)

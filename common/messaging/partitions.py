"""Partitioned topics: which partition an event goes to, and what a subscriber group reads.

A topic has ``settings.partitions_of_topic(topic)`` partitions P (the settings
``topic_partitions`` and ``topic_partitions_default``, default 1). Partition k of topic T is
the stream ``<prefix>:<env>:{T:k}:topic`` (partition 0 keeps ``{T}``: with P = 1 a topic is
exactly the stream it always was), with its own hash tag, so the partitions of a hot topic
spread over a cluster's masters while each partition's keys (the stream, each group's dead
letters and delay set) stay on one slot.

A publisher puts an event on the partition of its ``key`` (``Event.key``: CRC-32 modulo P, as
:meth:`~common.clients.queue_manager.QueueManager.partition_of` does for actions), or of its
``event_id`` when it has none (spread evenly, no order). Every subscriber group reads all P
partitions in its one read loop, and at start also every partition beyond P that still holds
work for it (see :mod:`common.workers.leftovers`).

Why settings, not a declaration beside the handlers: the publishers of a topic are often other
services (an ``@event`` endpoint, another team's ``output_topic``, ``common publish``) that
never import the subscribers' modules, while every process of a deployment reads the same
settings (``TOPIC_PARTITIONS`` in the environment), as it already does for
``stream_partitions``. A mismatch loses nothing: a subscriber with a smaller P reads, from its
next start, the partitions beyond it that hold work; one with a larger P reads empty streams.
"""

from __future__ import annotations

from collections.abc import Iterable

from common.clients.queue_manager import MAX_PARTITIONS, QueueManager
from common.config import CommonAppSettings
from common.messaging.events import Event

__all__ = ["event_stream", "leftover_candidates", "subscriber_streams"]


def event_stream(
    queues: QueueManager, settings: CommonAppSettings, topic: str, event: Event
) -> str:
    """The stream (the partition of ``topic``) that ``event`` is published on."""
    partitions = settings.partitions_of_topic(topic)
    if partitions <= 1:
        return queues.topic_stream(topic)
    key = event.key if event.key is not None else event.event_id
    return queues.topic_stream(topic, QueueManager.partition_of(key, partitions))


def subscriber_streams(
    queues: QueueManager, settings: CommonAppSettings, topics: Iterable[str], group: str
) -> dict[str, str]:
    """Every partition of each of ``topics`` -> ``group``'s dead letters there, topic by
    topic in partition order."""
    streams: dict[str, str] = {}
    for topic in topics:
        streams.update(
            queues.topic_partition_streams(topic, group, settings.partitions_of_topic(topic))
        )
    return streams


def leftover_candidates(
    queues: QueueManager, settings: CommonAppSettings, topics: Iterable[str], group: str
) -> dict[str, str]:
    """The partitions beyond each topic's P (up to ``MAX_PARTITIONS - 1``) -> ``group``'s
    dead letters there: where a larger P may have left work."""
    return {
        queues.topic_stream(topic, k): queues.topic_dead_letter_stream(topic, group, k)
        for topic in topics
        for k in range(settings.partitions_of_topic(topic), MAX_PARTITIONS)
    }

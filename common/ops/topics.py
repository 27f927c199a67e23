"""Topics as operations see them: ``<prefix>:<env>:{<topic>}:topic`` and its subscriber groups.

A topic stream is read by every subscriber group (one per declarative worker), each with its
own dead-letter stream ``<prefix>:<env>:{<topic>}:dlq:<group>``. A partitioned topic
(``topic_partitions``) has one such stream per partition k, ``{<topic>:k}`` for k >= 1, each
with its groups' dead letters beside it: one :class:`StreamRef` per partition, found by
``SCAN`` (operations need not know the partition count). :func:`topic_streams` is the
stream source (:func:`~common.ops.streams.add_stream_source`) that makes ``status`` report
topics; :func:`find_dead_letter_refs` says which dead-letter streams a ``dlq`` command acts on
(a group's on every partition; a record of partition k >= 1 is named ``k:<id>``).

Replaying a topic's dead letter re-publishes the original event on the topic stream, and a
topic stream has no way to address one group: every group reads it again (see
:func:`other_groups`, and the README's "Operating it" section).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common.clients.queue_manager import QueueManager
from common.errors import InvalidKeyError
from common.naming import is_group_id, is_service_name, is_topic_name
from common.ops.errors import OpsError, UnknownStreamError
from common.ops.streams import ACTIONS, StreamRef, add_stream_source, streams_to_report

__all__ = [
    "TOPIC",
    "find_dead_letter_refs",
    "find_dead_letters",
    "group_names",
    "other_groups",
    "topic_group_ref",
    "topic_ref",
    "topic_streams",
]

TOPIC = "topic"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def topic_ref(queues: QueueManager, topic: str, partition: int = 0) -> StreamRef:
    """The :class:`StreamRef` of ``topic``'s stream, or of its partition ``partition`` (its
    groups' dead letters: by prefix)."""
    try:
        stream = queues.topic_stream(topic, partition)
    except InvalidKeyError as exc:
        raise OpsError(str(exc)) from None
    prefix = stream.removesuffix(":topic") + ":dlq:"
    return StreamRef(
        TOPIC,
        topic,
        stream,
        "",
        payload_field="",
        dead_letter_prefix=prefix,
        partition=partition,
    )


def topic_group_ref(queues: QueueManager, topic: str, group: str, partition: int = 0) -> StreamRef:
    """The :class:`StreamRef` of one subscriber group's dead letters on ``topic`` (on its
    partition ``partition``)."""
    if not is_group_id(group):
        raise OpsError(f"invalid group id {group!r}")
    ref = topic_ref(queues, topic, partition)
    return StreamRef(
        TOPIC,
        topic,
        ref.stream,
        queues.topic_dead_letter_stream(topic, group, partition),
        payload_field="",
        dead_letter_prefix=ref.dead_letter_prefix,
        group=group,
        partition=partition,
    )


async def topic_streams(
    redis: aioredis.Redis, queues: QueueManager, topic: str | None = None
) -> list[StreamRef]:
    """Topic streams, one ref per partition, by ``SCAN``: all, or ``topic``'s (those that
    exist); by topic, then partition."""
    if topic is not None and not is_topic_name(topic):
        return []
    # '{orders*}' matches '{orders}' and '{orders:k}' (and '{orders.x}', left out below).
    head = f"{queues.prefix}:{queues.environment}:{{"
    found: set[tuple[str, int]] = set()
    async for key in redis.scan_iter(match=f"{head}{topic or ''}*}}:topic", count=1000):
        try:
            name, partition = queues.parse_topic_stream(_text(key))
        except InvalidKeyError:
            continue
        if topic in (None, name):
            found.add((name, partition))
    return [topic_ref(queues, name, k) for name, k in sorted(found)]


async def group_names(redis: aioredis.Redis, stream: str) -> list[str]:
    """The consumer groups of ``stream`` (none if it does not exist)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise
    return [_text(g["name"]) for g in groups]


async def other_groups(redis: aioredis.Redis, ref: StreamRef) -> list[str]:
    """The groups of ``ref``'s topic besides ``ref.group``: those a replay delivers to again."""
    return [g for g in await group_names(redis, ref.stream) if g != ref.group]


def _topic_stream(queues: QueueManager, topic: str) -> str:
    return queues.topic_stream(topic)


async def find_dead_letters(
    redis: aioredis.Redis, queues: QueueManager, name: str, group: str | None = None
) -> StreamRef:
    """The first of :func:`find_dead_letter_refs` (a partitioned service's partition 0)."""
    return (await find_dead_letter_refs(redis, queues, name, group))[0]


async def find_dead_letter_refs(
    redis: aioredis.Redis, queues: QueueManager, name: str, group: str | None = None
) -> list[StreamRef]:
    """The dead letters a ``dlq`` command acts on.

    With ``group``: that subscriber group's on topic ``name``, one ref per partition. Without:
    service ``name``'s, one ref per partition (a service's action stream comes first when a
    service and a topic share the name), else topic ``name``'s only group's; a topic with
    several groups needs ``group``."""
    if group is not None:
        if not is_topic_name(name):
            raise UnknownStreamError(f"{name!r} is not a topic name")
        if not is_group_id(group):
            raise OpsError(f"invalid group id {group!r}")
        refs = await _group_refs(redis, queues, name, group)
        if not refs:
            stream = _topic_stream(queues, name)
            raise UnknownStreamError(f"unknown topic {name!r}: no stream {stream} in Redis")
        return refs
    refs = await streams_to_report(redis, queues, name)
    actions = [ref for ref in refs if ref.kind == ACTIONS]
    if actions:
        return actions
    topics = [ref for ref in refs if ref.kind == TOPIC]
    if not topics:
        if not is_service_name(name) and not is_topic_name(name):
            raise UnknownStreamError(f"{name!r} is not a service name (nor a topic name)")
        where = queues.action_stream(name) if is_service_name(name) else _topic_stream(queues, name)
        raise UnknownStreamError(
            f"unknown service {name!r}: no stream {where} in Redis (nor a topic of that name)"
        )
    groups = sorted({g for ref in topics for g in await group_names(redis, ref.stream)})
    if len(groups) != 1:
        which = f"groups {', '.join(groups)}" if groups else "no subscriber groups"
        raise OpsError(f"topic {name!r} has {which}: name one with --group")
    return [topic_group_ref(queues, name, groups[0], ref.partition) for ref in topics]


async def _group_refs(
    redis: aioredis.Redis, queues: QueueManager, topic: str, group: str
) -> list[StreamRef]:
    """``group``'s dead-letter refs on each partition of ``topic`` (a topic whose stream is
    gone but whose partition 0 still holds the group's dead letters: that one)."""
    partitions = [ref.partition for ref in await topic_streams(redis, queues, topic)]
    if not partitions and await redis.exists(queues.topic_dead_letter_stream(topic, group)):
        partitions = [0]
    return [topic_group_ref(queues, topic, group, k) for k in partitions]


add_stream_source(topic_streams)

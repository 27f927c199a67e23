"""Topics as operations see them: ``<prefix>:<env>:{<topic>}:topic`` and its subscriber groups.

A topic stream is read by every subscriber group (one per declarative worker), each with its
own dead-letter stream ``<prefix>:<env>:{<topic>}:dlq:<group>``. :func:`topic_streams` is the
stream source (:func:`~common.ops.streams.add_stream_source`) that makes ``status`` report
topics; :func:`find_dead_letter_refs` says which dead-letter streams a ``dlq`` command acts on.

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


def topic_ref(queues: QueueManager, topic: str) -> StreamRef:
    """The :class:`StreamRef` of ``topic``'s stream (its groups' dead letters: by prefix)."""
    try:
        stream = queues.topic_stream(topic)
    except InvalidKeyError as exc:
        raise OpsError(str(exc)) from None
    prefix = stream.removesuffix(":topic") + ":dlq:"
    return StreamRef(TOPIC, topic, stream, "", payload_field="", dead_letter_prefix=prefix)


def topic_group_ref(queues: QueueManager, topic: str, group: str) -> StreamRef:
    """The :class:`StreamRef` of one subscriber group's dead letters on ``topic``."""
    if not is_group_id(group):
        raise OpsError(f"invalid group id {group!r}")
    ref = topic_ref(queues, topic)
    return StreamRef(
        TOPIC,
        topic,
        ref.stream,
        queues.topic_dead_letter_stream(topic, group),
        payload_field="",
        dead_letter_prefix=ref.dead_letter_prefix,
        group=group,
    )


async def topic_streams(
    redis: aioredis.Redis, queues: QueueManager, topic: str | None = None
) -> list[StreamRef]:
    """Topic streams: all (by ``SCAN``), or ``topic``'s if it exists."""
    if topic is not None:
        if not is_topic_name(topic):
            return []
        ref = topic_ref(queues, topic)
        return [ref] if await redis.exists(ref.stream) else []
    head = f"{queues.prefix}:{queues.environment}:{{"
    found: set[str] = set()
    async for key in redis.scan_iter(match=f"{head}*}}:topic", count=1000):
        name = _text(key).removeprefix(head).removesuffix("}:topic")
        if is_topic_name(name):
            found.add(name)
    return [topic_ref(queues, name) for name in sorted(found)]


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

    With ``group``: that subscriber group's on topic ``name``. Without: service ``name``'s, one
    ref per partition (a service's action stream comes first when a service and a topic share
    the name), else topic ``name``'s only group's; a topic with several groups needs
    ``group``."""
    if group is not None:
        if not is_topic_name(name):
            raise UnknownStreamError(f"{name!r} is not a topic name")
        ref = topic_group_ref(queues, name, group)
        if not await redis.exists(ref.stream, ref.dead_letter_stream):
            raise UnknownStreamError(f"unknown topic {name!r}: no stream {ref.stream} in Redis")
        return [ref]
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
    groups = await group_names(redis, topics[0].stream)
    if len(groups) != 1:
        which = f"groups {', '.join(groups)}" if groups else "no subscriber groups"
        raise OpsError(f"topic {name!r} has {which}: name one with --group")
    return [topic_group_ref(queues, name, groups[0])]


add_stream_source(topic_streams)

"""Which streams there are to operate on: discovery by ``SCAN``, and a seam for more kinds.

Operations (status, dead letters, metrics) work on :class:`StreamRef`: a stream, its
dead-letter stream, and the keys beside it. The sources are services' action streams,
``<prefix>:<env>:{<service>}:actions`` and their partitions ``{<service>:k}`` (one ref each)
found with ``SCAN``, and topics
(:mod:`common.ops.topics`, joined by :func:`add_stream_source`); every command reports both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.clients.queue_manager import KeyKind, QueueManager
from common.clients.scheduled import scheduled_key
from common.errors import InvalidKeyError
from common.models.codec import ACTION_FIELD
from common.naming import is_service_name
from common.ops.errors import OpsError, UnknownStreamError

__all__ = [
    "StreamRef",
    "StreamSource",
    "action_stream_ref",
    "action_streams",
    "add_stream_source",
    "find_stream",
    "find_streams",
    "pool_stream_refs",
    "streams_to_report",
]

ACTIONS = "actions"


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A stream operations look at: ``kind`` (``actions`` or ``topic``), ``name`` (the service
    or topic), the stream, its dead-letter stream, and the field a replayed dead letter is
    written to (``""``: the record's ``original`` is a JSON object of the entry's fields).
    ``partition`` is the partition of a service's action stream or of a topic (0: the first).

    A topic has one dead-letter stream per subscriber group: ``dead_letter_prefix`` + group
    (:meth:`group_dead_letter_stream`); a topic's ref for one group's dead letters has
    ``group`` set and ``dead_letter_stream`` that group's; the topic's own ref has none (``""``).
    """

    kind: str
    name: str
    stream: str
    dead_letter_stream: str
    payload_field: str = ACTION_FIELD
    dead_letter_prefix: str = ""
    group: str | None = None
    partition: int = 0

    def group_dead_letter_stream(self, group: str) -> str | None:
        """The dead-letter stream of ``group`` (topics), or None (one per stream: actions)."""
        return self.dead_letter_prefix + group if self.dead_letter_prefix else None

    @property
    def scheduled_key(self) -> str:
        """The delayed sends waiting for this stream (:mod:`common.clients.scheduled`)."""
        return scheduled_key(self.stream)

    def replay_target(self, recorded_stream: str | None) -> str | None:
        """Where a dead letter that says it came from ``recorded_stream`` goes back to: this
        stream (an action stream takes back only its own dead letters), else None."""
        if recorded_stream in (None, "", self.stream):
            return self.stream
        return None


StreamSource = Callable[[aioredis.Redis, QueueManager, str | None], Awaitable[list[StreamRef]]]
"""Lists the streams of one kind (all, or those of one name) for operations to report."""


def action_stream_ref(queues: QueueManager, service: str, partition: int = 0) -> StreamRef:
    """The :class:`StreamRef` of partition ``partition`` of ``service``'s action stream."""
    try:
        stream = queues.action_stream(service, partition)
    except InvalidKeyError as exc:
        raise OpsError(str(exc)) from None
    dead_letters = queues.dead_letter_stream(service, partition)
    return StreamRef(ACTIONS, service, stream, dead_letters, partition=partition)


def _text(key: Any) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


async def action_streams(
    redis: aioredis.Redis, queues: QueueManager, service: str | None = None
) -> list[StreamRef]:
    """Services' action streams, one ref per partition, by ``SCAN``: all, or ``service``'s
    (those that exist); by service, then partition."""
    if service is not None and not is_service_name(service):
        return []  # not a service: perhaps another source's name
    # '{calc*}' matches '{calc}' and '{calc:k}' (and '{calcx}', left out by the parse below).
    pattern = f"{queues.prefix}:{queues.environment}:{{{service or ''}*}}:actions"
    found: set[tuple[str, int]] = set()
    async for key in redis.scan_iter(match=pattern, count=1000):
        try:
            parsed = queues.parse(_text(key))
        except InvalidKeyError:
            continue
        if parsed.kind is KeyKind.ACTIONS and service in (None, parsed.service):
            found.add((parsed.service, parsed.partition))
    return [action_stream_ref(queues, name, k) for name, k in sorted(found)]


_SOURCES: list[StreamSource] = [action_streams]


def add_stream_source(source: StreamSource) -> None:
    """Report the streams ``source`` lists too (in status, dead letters and metrics)."""
    if source not in _SOURCES:
        _SOURCES.append(source)


async def streams_to_report(
    redis: aioredis.Redis, queues: QueueManager, name: str | None = None
) -> list[StreamRef]:
    """Every stream of every source (or those named ``name``), in source order."""
    refs: list[StreamRef] = []
    for source in _SOURCES:
        refs += await source(redis, queues, name)
    return refs


async def find_streams(redis: aioredis.Redis, queues: QueueManager, name: str) -> list[StreamRef]:
    """The streams named ``name``: a service's partitions (a service comes first when a
    service and a topic share the name), else the topic's; :class:`UnknownStreamError` if
    there are none."""
    refs = await streams_to_report(redis, queues, name)
    if not refs:
        if not is_service_name(name):
            raise UnknownStreamError(f"{name!r} is not a service name")
        raise UnknownStreamError(
            f"unknown service {name!r}: no stream {queues.action_stream(name)} in Redis"
        )
    return [ref for ref in refs if ref.kind == refs[0].kind]


async def find_stream(redis: aioredis.Redis, queues: QueueManager, name: str) -> StreamRef:
    """The first stream named ``name`` (a service's partition 0): see :func:`find_streams`."""
    return (await find_streams(redis, queues, name))[0]


def _partition_of(queues: QueueManager, stream: str) -> int:
    try:
        return queues.parse(stream).partition
    except InvalidKeyError:
        pass
    try:
        return queues.parse_topic_stream(stream)[1]  # a topic's partition
    except InvalidKeyError:
        return 0


def pool_stream_refs(pool: Any) -> list[StreamRef]:
    """The streams a :class:`~common.workers.WorkerPool` reads, every partition's (before
    start: from its settings), partition 0 first."""
    settings = pool.settings
    queues = QueueManager(settings.queue_prefix, settings.environment)
    name = settings.service_name
    workers = getattr(pool, "workers", None)
    if workers:
        return [
            StreamRef(ACTIONS, name, s, dlq, partition=_partition_of(queues, s))
            for s, dlq in workers[0].streams.items()
        ]
    return [
        action_stream_ref(queues, name, k)
        for k in range(max(getattr(settings, "stream_partitions", 1), 1))
    ]

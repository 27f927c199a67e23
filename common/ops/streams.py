"""Which streams there are to operate on: discovery by ``SCAN``, and a seam for more kinds.

Operations (status, dead letters, metrics) work on :class:`StreamRef`: a stream, its
dead-letter stream, and the keys beside it. The sources are services' action streams,
``<prefix>:<env>:{<service>}:actions`` found with ``SCAN``, and topics
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
    "pool_stream_refs",
    "streams_to_report",
]

ACTIONS = "actions"


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A stream operations look at: ``kind`` (``actions`` or ``topic``), ``name`` (the service
    or topic), the stream, its dead-letter stream, and the field a replayed dead letter is
    written to (``""``: the record's ``original`` is a JSON object of the entry's fields).

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


def action_stream_ref(queues: QueueManager, service: str) -> StreamRef:
    """The :class:`StreamRef` of ``service``'s action stream (names checked)."""
    try:
        stream = queues.action_stream(service)
    except InvalidKeyError as exc:
        raise OpsError(str(exc)) from None
    return StreamRef(ACTIONS, service, stream, queues.dead_letter_stream(service))


def _text(key: Any) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


async def action_streams(
    redis: aioredis.Redis, queues: QueueManager, service: str | None = None
) -> list[StreamRef]:
    """Services' action streams: all (by ``SCAN``), or ``service``'s if it exists."""
    if service is not None:
        if not is_service_name(service):
            return []  # not a service: perhaps another source's name
        ref = action_stream_ref(queues, service)
        return [ref] if await redis.exists(ref.stream) else []
    pattern = f"{queues.prefix}:{queues.environment}:{{*}}:actions"
    found: dict[str, StreamRef] = {}
    async for key in redis.scan_iter(match=pattern, count=1000):
        try:
            parsed = queues.parse(_text(key))
        except InvalidKeyError:
            continue
        if parsed.kind is KeyKind.ACTIONS:
            found[parsed.service] = action_stream_ref(queues, parsed.service)
    return [found[name] for name in sorted(found)]


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


async def find_stream(redis: aioredis.Redis, queues: QueueManager, name: str) -> StreamRef:
    """The one stream named ``name``; :class:`UnknownStreamError` if there is none."""
    refs = await streams_to_report(redis, queues, name)
    if not refs:
        if not is_service_name(name):
            raise UnknownStreamError(f"{name!r} is not a service name")
        raise UnknownStreamError(
            f"unknown service {name!r}: no stream {queues.action_stream(name)} in Redis"
        )
    return refs[0]


def pool_stream_refs(pool: Any) -> list[StreamRef]:
    """The streams a :class:`~common.workers.WorkerPool` reads (from its settings before start)."""
    settings = pool.settings
    queues = QueueManager(settings.queue_prefix, settings.environment)
    workers = getattr(pool, "workers", None)
    if workers:
        name = settings.service_name
        return [StreamRef(ACTIONS, name, s, dlq) for s, dlq in workers[0].streams.items()]
    return [action_stream_ref(queues, settings.service_name)]

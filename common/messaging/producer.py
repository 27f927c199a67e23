"""Publishing: ``get_producer().send(topic, message)``, ``publish`` and ``publish_event``.

``send`` puts ``message`` on ``topic`` as the payload handlers receive (the ``data`` of an
:class:`~common.messaging.events.Event` named after the topic), and returns once Redis has
acknowledged it (the entry id); it raises when Redis refuses or does not answer within
``redis_send_timeout_s`` (then the outcome is unknown and nothing is resent).
``publish_event(name, data, topic=None, key=None)`` publishes an event called ``name`` on
``topic`` (default: the event's name). A partitioned topic (``topic_partitions``) gets each
event on the partition of its ``key`` (see :mod:`common.messaging.partitions`).

One producer per event loop, on the process's messaging settings
(:func:`~common.messaging.settings.configure_messaging`); it opens its connection on first use.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.clients.replication import Replication
from common.config import CommonAppSettings
from common.errors import ReplicationError, SendTimeoutError
from common.messaging.events import Event, encode_event
from common.messaging.partitions import event_stream
from common.messaging.settings import messaging_settings
from common.naming import is_topic_name
from common.observability.hooks import instrument_producer

__all__ = ["Producer", "get_producer", "publish", "publish_event"]

_producers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Producer] = (
    weakref.WeakKeyDictionary()
)


class Producer:
    """Publishes events on topics (see the module docstring)."""

    def __init__(
        self, settings: CommonAppSettings | None = None, redis: aioredis.Redis | None = None
    ) -> None:
        self.settings = messaging_settings(settings)
        self.queues = QueueManager(self.settings.queue_prefix, self.settings.environment)
        self._redis = redis
        self._manager: RedisManager | None = None
        self._connecting = asyncio.Lock()
        self._replication = Replication.of(self.settings)  # None: no WAIT after a send
        instrument_producer(self)  # tracing (decided once, here): wraps send_event

    async def _client(self) -> aioredis.Redis:
        if self._redis is None:
            async with self._connecting:
                if self._redis is None:
                    manager = RedisManager(self.settings)
                    await manager.initialize()
                    self._manager = manager
                    self._redis = manager.get_client()
        return self._redis

    def _stream(self, topic: str, event: Event) -> str:
        """The partition of ``topic`` that ``event`` goes to (by its ``key``, else its
        ``event_id``: see :mod:`common.messaging.partitions`)."""
        if not isinstance(topic, str) or not is_topic_name(topic):
            raise ValueError(f"invalid topic {topic!r}: lowercase letters, digits, '.', '_' or '-'")
        return event_stream(self.queues, self.settings, topic, event)

    async def send(self, topic: str, message: Any, *, key: str | None = None) -> str:
        """Publish ``message`` on ``topic``; returns the entry id once Redis has it."""
        return await self.send_event(
            topic, Event(name=topic, data=message, source=self.settings.service_name, key=key)
        )

    async def send_event(self, topic: str, event: Event) -> str:
        """Publish a ready-made ``event`` on ``topic`` (on the partition of its ``key``)."""
        stream = self._stream(topic, event)
        fields = encode_event(event, self.settings.max_payload_bytes)
        redis = await self._client()
        timeout = self.settings.redis_send_timeout_s
        error: Exception | None = None
        try:
            async with asyncio.timeout(timeout):
                if self._replication is None:
                    entry_id = await redis.xadd(stream, fields)  # type: ignore[arg-type]
                else:  # redis_wait_replicas > 0: confirmed by the replicas (WAIT)
                    entry_id, error = await self._replication.write(
                        redis, stream, lambda pipe: pipe.xadd(stream, fields)
                    )
        except TimeoutError:
            raise SendTimeoutError(timeout, outcome_unknown=True) from None
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        if error is not None:
            raise error.for_entries([entry_id]) if isinstance(error, ReplicationError) else error
        return entry_id

    async def close(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            self._redis = None
            await manager.close()


def get_producer(settings: CommonAppSettings | None = None) -> Producer:
    """The producer of the running event loop (made on first use); with ``settings``, a new
    producer on those settings (the caller closes it)."""
    if settings is not None:
        return Producer(settings)
    loop = asyncio.get_running_loop()
    producer = _producers.get(loop)
    if producer is None:
        producer = _producers[loop] = Producer()
    return producer


async def publish(topic: str, message: Any, *, key: str | None = None) -> str:
    """``get_producer().send(topic, message)``."""
    return await get_producer().send(topic, message, key=key)


async def publish_event(
    event_name: str, data: Any, topic: str | None = None, key: str | None = None
) -> str:
    """Publish an event called ``event_name`` with ``data`` on ``topic`` (default: the
    event's name); returns the entry id."""
    producer = get_producer()
    event = Event(name=event_name, data=data, source=producer.settings.service_name, key=key)
    return await producer.send_event(topic or event_name, event)

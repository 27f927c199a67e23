"""``common publish``: an event on a topic from the command line.

The topic's stream must exist (some subscriber group or producer made it) unless ``create`` is
set: a typo in a topic name is an error, not an event nobody will ever read. A partitioned
topic (``topic_partitions``) gets the event on the partition of its ``--key``.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from common.config import CommonAppSettings
from common.messaging.events import Event
from common.messaging.partitions import event_stream
from common.messaging.producer import Producer
from common.naming import is_topic_name
from common.ops.errors import OpsError, UnknownStreamError
from common.ops.sending import CLI_SERVICE

__all__ = ["parse_event_data", "publish_event"]


def parse_event_data(text: str) -> Any:
    """The event's data from ``text`` (any JSON value), or :class:`OpsError` saying why not."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OpsError(f"malformed JSON: {exc}") from None


async def publish_event(
    redis: aioredis.Redis,
    settings: CommonAppSettings,
    topic: str,
    data: Any,
    *,
    event: str | None = None,
    key: str | None = None,
    create: bool = False,
) -> dict[str, str]:
    """Publish ``data`` on ``topic`` as an event named ``event`` (default: the topic)."""
    if not is_topic_name(topic):
        raise OpsError(f"invalid topic name {topic!r}: lowercase letters, digits, '.', '_' or '-'")
    producer = Producer(settings.model_copy(update={"service_name": CLI_SERVICE}), redis=redis)
    try:
        envelope = Event(name=event or topic, data=data, source=CLI_SERVICE, key=key)
    except ValueError as exc:
        raise OpsError(f"invalid event: {' '.join(str(exc).split())}") from None
    # The partition the event goes to (topic_partitions), or partition 0: every subscriber
    # group makes all the partitions it reads, partition 0 among them.
    stream = event_stream(producer.queues, producer.settings, topic, envelope)
    first = producer.queues.topic_stream(topic)
    if not create and not any([await redis.exists(key) for key in {first, stream}]):
        raise UnknownStreamError(
            f"unknown topic {topic!r}: no stream {first} in Redis "
            "(pass --create to publish on a topic nobody has subscribed to yet)"
        )
    entry_id = await producer.send_event(topic, envelope)
    return {"stream": stream, "entry_id": entry_id, "event_id": str(envelope.event_id)}

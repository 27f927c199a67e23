"""``MessagingTestClient``: declarative workers run in-process, with what they did recorded.

::

    async with MessagingTestClient(transform, load) as broker:
        await broker.publish("raw.data", {"value": 21})
        await broker.wait_handled(load, 1)
        assert broker.published("transformed.data") == [{"value": 42}]
        assert broker.dead_letters(transform) == []

The targets run on the real engine (the same as :func:`~common.messaging.run_workers`), by
default on the embedded ``memory://`` server with a key prefix of their own and short retry
delays (:func:`memory_settings`); pass ``settings=`` to run them on a real Redis instead.
While the client is open, the process's messaging defaults and the event loop's producer are
the client's, so that ``publish(...)``, ``get_producer().send(...)`` and ``publish_event(...)``
in handlers and in the code under test reach the same broker.

A message counts as *handled* once its handler succeeded and its outputs and ACK are written
(so whatever it published is readable then), and as *dead-lettered* once its dead letter is
written. The ``wait_*`` methods wait for such records with a deadline (they never sleep a fixed
time) and fail the test with what was recorded if the deadline passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

import redis as sync_redis

from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import _memory_server, is_memory_url
from common.config import CommonAppSettings
from common.errors import MessageError
from common.messaging import producer as producer_module
from common.messaging import settings as settings_module
from common.messaging.events import Event, decode_event
from common.messaging.producer import Producer
from common.messaging.registry import registered
from common.messaging.runner import MessagingPool, subscription_of
from common.messaging.subscriber import TopicSubscriber
from common.messaging.subscription import Subscription
from common.models.actions import ErrorDetail
from common.testing.redis_server import unique_settings
from common.workers.outbox import FlushResult

__all__ = ["DeadLetterRecord", "MessagingTestClient", "memory_settings"]

T = TypeVar("T")

MEMORY_URL = "memory://common-testing"

# Fast enough that a message failing three times is dead-lettered in well under a second.
TEST_TUNING: dict[str, Any] = {
    "redis_url": MEMORY_URL,
    "service_name": "test",
    "max_retries": 3,
    "retry_initial_delay_s": 0.01,
    "retry_max_delay_s": 0.05,
    "retry_jitter": 0.0,
    "worker_block_ms": 100,
    "claim_interval_s": 0.2,
    "visibility_timeout_s": 5.0,
    "shutdown_grace_s": 1.0,
}


def memory_settings(**overrides: Any) -> CommonAppSettings:
    """Settings for one test: the embedded ``memory://`` server, a key prefix no other test
    uses, short retry delays (``TEST_TUNING``); ``overrides`` win."""
    return unique_settings(**{**TEST_TUNING, **overrides})


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead-lettered message: its payload, why, and after how many deliveries."""

    data: Any  # the event's data (None if the entry was not an event at all)
    reason: str  # "max_retries", "malformed" (e.g. input schema), "non_retryable", ...
    error: ErrorDetail
    attempts: int
    event: Event | None


class _Recorder:
    """What the subscribers of one client settled for good, per subscription."""

    def __init__(self) -> None:
        self.handled: dict[Subscription, list[Event]] = {}
        self.dead: dict[Subscription, list[DeadLetterRecord]] = {}
        self.changed = asyncio.Event()

    def settled(self, subscriber: TopicSubscriber, result: FlushResult) -> None:
        sub = subscriber.subscription
        max_bytes = subscriber.settings.max_payload_bytes
        for item in result.done:
            if not item.ack:  # a retry scheduled: not settled yet
                continue
            try:
                event: Event | None = decode_event(item.delivery.fields, max_bytes)
            except MessageError:
                event = None
            if item.dead is not None:
                record = DeadLetterRecord(
                    data=event.data if event is not None else None,
                    reason=str(item.dead.reason),
                    error=item.dead.error,
                    attempts=item.delivery.attempt,
                    event=event,
                )
                self.dead.setdefault(sub, []).append(record)
            elif event is not None and sub.route(event.name) is not None:
                self.handled.setdefault(sub, []).append(event)
        self.changed.set()


class _RecordingSubscriber(TopicSubscriber):
    recorder: _Recorder | None = None

    def _account(self, result: FlushResult) -> None:
        super()._account(result)
        if self.recorder is not None:
            self.recorder.settled(self, result)


class _RecordingPool(MessagingPool):
    subscriber_class = _RecordingSubscriber

    def __init__(
        self, subscriptions: Sequence[Subscription], settings: CommonAppSettings, rec: _Recorder
    ) -> None:
        super().__init__(subscriptions, settings)
        self.recorder = rec

    async def _build(self, redis: Any) -> list[TopicSubscriber]:
        consumers = await super()._build(redis)
        for consumer in consumers:
            assert isinstance(consumer, _RecordingSubscriber)
            consumer.recorder = self.recorder
        return consumers


class MessagingTestClient:
    """Run ``targets`` (``@worker`` functions, ``Worker`` classes, consumers, names; none:
    everything registered) in this process; see the module docstring.

    ``settings`` default to :func:`memory_settings` with ``overrides``."""

    def __init__(
        self, *targets: Any, settings: CommonAppSettings | None = None, **overrides: Any
    ) -> None:
        if settings is not None and overrides:
            raise TypeError("give settings or overrides, not both")
        self.settings = settings if settings is not None else memory_settings(**overrides)
        self.queues = QueueManager(self.settings.queue_prefix, self.settings.environment)
        subs = [subscription_of(t) for t in targets] if targets else registered()
        if not subs:
            raise ValueError("nothing to run: no declarative worker is given or registered")
        self.subscriptions = subs
        self._recorder = _Recorder()
        self.pool = _RecordingPool(subs, self.settings, self._recorder)
        self.producer = Producer(self.settings)
        self._reader: sync_redis.Redis | None = None
        self._saved: tuple[Any, ...] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> MessagingTestClient:
        loop = asyncio.get_running_loop()
        self._saved = (
            loop,
            producer_module._producers.get(loop),
            settings_module._settings,
            dict(settings_module._overrides),
        )
        producer_module._producers[loop] = self.producer
        settings_module._settings = self.settings
        try:
            await self.pool.start()
        except BaseException:
            await self._restore()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.pool.stop()
        finally:
            await self._restore()

    async def _restore(self) -> None:
        if self._saved is not None:
            loop, producer, settings, overrides = self._saved
            self._saved = None
            if producer is None:
                producer_module._producers.pop(loop, None)
            else:
                producer_module._producers[loop] = producer
            settings_module._settings = settings
            settings_module._overrides.clear()
            settings_module._overrides.update(overrides)
        await self.producer.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, message: Any, *, key: str | None = None) -> str:
        """Publish ``message`` on ``topic`` (as ``get_producer().send`` does); the entry id."""
        return await self.producer.send(topic, message, key=key)

    async def publish_event(
        self, event_name: str, data: Any, topic: str | None = None, key: str | None = None
    ) -> str:
        """Publish an event called ``event_name`` on ``topic`` (default: its name)."""
        event = Event(name=event_name, data=data, source=self.settings.service_name, key=key)
        return await self.producer.send_event(topic or event_name, event)

    # -- what happened -----------------------------------------------------------------------

    def handled(self, target: Any) -> list[Any]:
        """The payloads (events' data) ``target`` handled successfully, in the order their
        handling was written."""
        return [e.data for e in self.handled_events(target)]

    def handled_events(self, target: Any) -> list[Event]:
        return list(self._recorder.handled.get(subscription_of(target), []))

    def dead_letters(self, target: Any) -> list[DeadLetterRecord]:
        """What ``target``'s group dead-lettered (after its retries, or at once)."""
        return list(self._recorder.dead.get(subscription_of(target), []))

    def events(self, topic: str) -> list[Event]:
        """Every event on ``topic`` now (what was published there, by anyone), oldest first
        (over all its partitions, by entry id)."""
        reader = self._sync_reader()
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        for k in range(self.settings.partitions_of_topic(topic)):
            entries += cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                reader.xrange(self.queues.topic_stream(topic, k)),
            )
        entries.sort(key=lambda entry: _entry_order(entry[0]))
        return [decode_event(fields, self.settings.max_payload_bytes) for _, fields in entries]

    def published(self, topic: str) -> list[Any]:
        """The payloads (events' data) on ``topic`` now, oldest first."""
        return [e.data for e in self.events(topic)]

    async def wait_handled(self, target: Any, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """Wait until ``target`` handled at least ``count`` messages; their payloads."""
        sub = subscription_of(target)
        return await self._wait(
            lambda: self.handled(sub) if len(self.handled(sub)) >= count else None,
            lambda: f"{sub.name} handled {len(self.handled(sub))} of {count} messages",
            sub,
            timeout,
        )

    async def wait_dead_letters(
        self, target: Any, count: int = 1, timeout: float = 5.0
    ) -> list[DeadLetterRecord]:
        """Wait until ``target`` dead-lettered at least ``count`` messages; their records."""
        sub = subscription_of(target)
        return await self._wait(
            lambda: self.dead_letters(sub) if len(self.dead_letters(sub)) >= count else None,
            lambda: f"{sub.name} dead-lettered {len(self.dead_letters(sub))} of {count}",
            sub,
            timeout,
        )

    async def _wait(
        self,
        found: Callable[[], T | None],
        progress: Callable[[], str],
        sub: Subscription,
        timeout: float,
    ) -> T:
        if sub not in self.subscriptions:
            raise ValueError(f"{sub.name} is not run by this client")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._recorder.changed.clear()
            value = found()
            if value is not None:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{progress()} within {timeout}s; {self._summary(sub)}")
            try:
                async with asyncio.timeout(remaining):
                    await self._recorder.changed.wait()
            except TimeoutError:
                pass

    def _summary(self, sub: Subscription) -> str:
        dead = [(d.reason, d.error.message, d.data) for d in self.dead_letters(sub)]
        return f"handled: {self.handled(sub)!r}; dead letters: {dead!r}"

    def _sync_reader(self) -> sync_redis.Redis:
        """A synchronous client on the same server, so that assertions need no ``await``."""
        if self._reader is None:
            url = self.settings.redis_url
            if is_memory_url(url):
                import fakeredis

                name = url[len("memory://") :].strip("/") or "default"
                self._reader = fakeredis.FakeRedis(server=_memory_server(name))
            else:
                self._reader = sync_redis.Redis.from_url(url)
        return self._reader


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)

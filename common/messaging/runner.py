"""Running declarative targets in this process: ``run_workers(...)`` and ``MessagingPool``.

A :class:`MessagingPool` is a :class:`~common.workers.consumer_pool.ConsumerPool` of
:class:`~common.messaging.subscriber.TopicSubscriber` consumers: ``subscription.consumers`` of
each subscription, every one running ``subscription.concurrency`` handlers at once, with one
reclaim (and trim) loop per topic stream of each group, and the subscriptions' process-wide
``on_startup``/``on_shutdown`` hooks run once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.config import CommonAppSettings
from common.messaging.registry import get, registered
from common.messaging.settings import messaging_settings
from common.messaging.subscriber import TopicSubscriber
from common.messaging.subscription import Subscription
from common.workers.consumer_pool import ConsumerPool
from common.workers.resources import Resources

__all__ = ["MessagingPool", "run_workers", "subscription_of"]


def subscription_of(target: Any) -> Subscription:
    """The :class:`Subscription` of a decorated function, a ``Worker``/``@consumer`` class or
    listener, a registered name, or a subscription itself."""
    if isinstance(target, Subscription):
        return target
    if isinstance(target, str):
        return get(target)
    found = getattr(target, "__subscription__", None)
    if isinstance(found, Subscription):
        return found
    raise TypeError(f"{target!r} is not a declarative worker, consumer or listener")


class MessagingPool(ConsumerPool[TopicSubscriber]):
    """The consumers of ``subscriptions`` in this process (see the module docstring)."""

    subscriber_class: type[TopicSubscriber] = TopicSubscriber  # common.testing records with it

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        settings: CommonAppSettings | None = None,
        redis: aioredis.Redis | None = None,
        *,
        resources: Resources | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(messaging_settings(settings), redis, resources=resources)
        self.subscriptions = list(subscriptions)
        names = [s.name for s in self.subscriptions]
        if len(set(names)) != len(names):
            raise ValueError(f"a subscription is given twice: {names}")
        self._groups: list[list[TopicSubscriber]] = []

    @property
    def describe(self) -> str:
        return f"{len(self.subscriptions)} declarative subscriptions"

    async def _build(self, redis: aioredis.Redis) -> list[TopicSubscriber]:
        host = f"{socket.gethostname()}-{os.getpid()}"
        self._groups = []
        for sub in self.subscriptions:
            group = [
                self.subscriber_class(
                    redis, self.settings, sub, f"{sub.name}-{host}-{i}-{uuid.uuid4().hex[:8]}"
                )
                for i in range(sub.consumers)
            ]
            for consumer in group:
                await consumer._with_reconnect(consumer.initialize, self.connect_timeout_s)
            self._groups.append(group)
        return [c for group in self._groups for c in group]

    def _reclaim_groups(self) -> Sequence[Sequence[TopicSubscriber]]:
        return self._groups

    async def _on_startup(self) -> None:
        for sub in self.subscriptions:
            if sub.on_startup is not None:
                await sub.on_startup()

    async def _on_shutdown(self) -> None:
        for sub in reversed(self.subscriptions):
            if sub.on_shutdown is not None:
                await sub.on_shutdown()

    def subscribers(self, target: Any) -> list[TopicSubscriber]:
        """The running consumers of one target (for tests and health)."""
        sub = subscription_of(target)
        return [c for c in self.workers if c.subscription is sub]

    def health(self) -> dict[str, Any]:
        """Like :meth:`WorkerPool.health`: plain JSON-ready data, per subscription."""
        return {
            "service": self.settings.service_name,
            "running": self.running,
            "restarts": self.restarts,
            "subscriptions": [
                {
                    "name": sub.name,
                    "topics": list(sub.topics),
                    "group": sub.group(self.settings.service_name),
                    "workers": [
                        h
                        for h, c in zip(self.consumer_health(), self.workers, strict=True)
                        if c.subscription is sub
                    ],
                }
                for sub in self.subscriptions
            ],
        }


@contextlib.asynccontextmanager
async def run_workers(
    *targets: Any,
    settings: CommonAppSettings | None = None,
    redis: aioredis.Redis | None = None,
) -> AsyncIterator[MessagingPool]:
    """Run ``targets`` (none: everything registered, except ``auto_start=False`` consumers)
    in this process; drain them on exit::

    async with run_workers(process_event, settings=settings) as pool:
        ...
    """
    subscriptions = (
        [subscription_of(t) for t in targets]
        if targets
        else [s for s in registered() if s.auto_start]
    )
    if not subscriptions:
        raise ValueError("nothing to run: no declarative worker is registered")
    pool = MessagingPool(subscriptions, settings, redis)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()

"""``WorkerTestClient``: a ``BaseWorker`` service's pool on ``memory://``, plus a client.

::

    async with WorkerTestClient(InventoryWorker, service_name="inventory") as svc:
        reply = await svc.call("inventory.check", {"sku": "apple"})
        assert reply.success
        await svc.send("inventory.restock", {"sku": "apple", "quantity": 5})
        await svc.wait_handled(2)

The pool runs ``num_workers`` workers (default 1) of ``worker_class`` on the embedded server
with a key prefix of its own and short retry delays
(:func:`~common.testing.messaging.memory_settings`), or on ``settings=`` if given.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from common.clients.base_redis_client import BaseRedisClient
from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.models.actions import DomainAction, DomainActionResponse
from common.testing.messaging import memory_settings
from common.workers.base_worker import BaseWorker
from common.workers.pool import WorkerPool
from common.workers.stats import WorkerStats

__all__ = ["WorkerTestClient"]

W = TypeVar("W", bound=BaseWorker)


class WorkerTestClient(Generic[W]):
    """Run a pool of ``worker_class`` and a :class:`BaseRedisClient` (see the module
    docstring). ``settings`` default to :func:`memory_settings` with ``overrides`` (give
    ``service_name``: the stream the workers read)."""

    def __init__(
        self,
        worker_class: type[W],
        *,
        settings: CommonAppSettings | None = None,
        num_workers: int = 1,
        resources: Mapping[str, Any] | None = None,
        client_service: str = "tests",
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            raise TypeError("give settings or overrides, not both")
        self.settings = settings if settings is not None else memory_settings(**overrides)
        self.pool: WorkerPool[W] = WorkerPool(
            worker_class, self.settings, num_workers=num_workers, resources=resources
        )
        self.client_service = client_service
        self._client: BaseRedisClient | None = None

    @property
    def client(self) -> BaseRedisClient:
        if self._client is None:
            raise RuntimeError("the WorkerTestClient is not open (use `async with`)")
        return self._client

    async def __aenter__(self) -> WorkerTestClient[W]:
        await self.pool.start()
        self._client = BaseRedisClient(self.client_service, self.pool.redis, self.settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._client is not None:
                await self._client.close()
        finally:
            self._client = None
            await self.pool.stop()

    def action(self, action_type: str, data: Mapping[str, Any] | None = None) -> DomainAction:
        return DomainAction(
            action_type=action_type, origin_service=self.client_service, data=dict(data or {})
        )

    async def call(
        self, action_type: str, data: Mapping[str, Any] | None = None, timeout: float = 5.0
    ) -> DomainActionResponse:
        """A pseudo-sync call: the service's response (raises on timeout)."""
        return await self.client.send_action_pseudo_sync(self.action(action_type, data), timeout)

    async def send(self, action_type: str, data: Mapping[str, Any] | None = None) -> str:
        """A fire-and-forget send; the entry id."""
        return await self.client.send_action_async(self.action(action_type, data))

    def stats(self) -> WorkerStats:
        """The pool's counters, summed over its workers."""
        total = WorkerStats()
        for worker in self.pool.workers:
            for f in dataclasses.fields(WorkerStats):
                value = getattr(worker.stats, f.name)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(total, f.name, getattr(total, f.name) + value)
            for reason, n in worker.stats.dead_lettered.items():
                total.dead_lettered[reason] = total.dead_lettered.get(reason, 0) + n
        return total

    async def wait_handled(self, count: int = 1, timeout: float = 5.0) -> WorkerStats:
        """Wait (polling the counters, with a deadline) until ``count`` actions are handled."""
        return await self._wait(lambda s: s.handled >= count, f"{count} handled", timeout)

    async def wait_dead_letters(self, count: int = 1, timeout: float = 5.0) -> WorkerStats:
        return await self._wait(
            lambda s: sum(s.dead_lettered.values()) >= count, f"{count} dead-lettered", timeout
        )

    async def _wait(self, ok: Any, what: str, timeout: float) -> WorkerStats:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ok(stats := self.stats()):
            if loop.time() > deadline:
                raise AssertionError(f"not {what} within {timeout}s: {stats}")
            await asyncio.sleep(0.005)
        return stats

    async def dead_letter_entries(self) -> list[dict[bytes, bytes]]:
        """The service's dead-letter stream, oldest first."""
        queues = QueueManager(self.settings.queue_prefix, self.settings.environment)
        stream = queues.dead_letter_stream(self.settings.service_name)
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]", await self.pool.redis.xrange(stream)
        )
        return [fields for _, fields in entries]

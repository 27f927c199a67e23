"""``WorkerPool``: N workers of one ``BaseWorker`` class as asyncio tasks, in a process."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis

from common.clients.base_redis_client import BaseRedisClient
from common.clients.queue_manager import QueueManager
from common.workers.base_worker import BaseWorker, common_settings_of
from common.workers.consumer_pool import FLUSH_ALLOWANCE_S, ConsumerPool, bounded
from common.workers.resources import Resources

__all__ = ["FLUSH_ALLOWANCE_S", "WorkerPool"]

W = TypeVar("W", bound=BaseWorker)


class WorkerPool(ConsumerPool[W]):
    """Runs ``num_workers`` instances of ``worker_class`` (default: ``num_internal_workers``).

    A worker task that crashes is logged and restarted after a short backoff. Use it as an
    async context manager, with :meth:`start`/:meth:`stop`, or as a FastAPI lifespan::

        pool = WorkerPool(UserWorker, settings)
        app = FastAPI(lifespan=pool.lifespan)

    Without a ``redis`` client the pool opens (and closes) its own from ``settings.redis_url``;
    :meth:`start` then waits for Redis up to ``connect_timeout_s`` seconds (0: forever), then
    raises :class:`~common.errors.RedisUnavailableError`. Creating the consumer groups waits the
    same (with any client) for errors that pass (``CLUSTERDOWN`` while a cluster's slot is not
    served, ``LOADING``, a lost connection), then raises the last one.

    What the workers share lives in :attr:`resources` (one :class:`Resources` per pool, given
    to every worker as ``worker.resources``): the worker class's ``on_startup(resources)``
    hook fills it once per :meth:`start`, and ``on_shutdown(resources)`` releases it once per
    :meth:`stop`. ``resources=`` pre-fills it (objects the caller also holds, e.g. for HTTP
    routes or tests).
    """

    def __init__(
        self,
        worker_class: type[W],
        app_settings: Any,
        redis: aioredis.Redis | None = None,
        *,
        num_workers: int | None = None,
        restart_delay_s: float = 1.0,
        resources: Resources | Mapping[str, Any] | None = None,
        **worker_kwargs: Any,
    ) -> None:
        settings = common_settings_of(app_settings)
        super().__init__(settings, redis, restart_delay_s=restart_delay_s, resources=resources)
        self.worker_class = worker_class
        self.app_settings = app_settings
        self.num_workers = settings.num_internal_workers if num_workers is None else num_workers
        if self.num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.worker_kwargs = worker_kwargs
        self.client: BaseRedisClient | None = None

    @property
    def describe(self) -> str:
        return f"{self.num_workers} {self.worker_class.__name__} workers"

    @property
    def _shutdown_hook_name(self) -> str:
        return f"{self.worker_class.__name__}.on_shutdown"

    async def _on_startup(self) -> None:
        await self.worker_class.on_startup(self.resources)

    async def _on_shutdown(self) -> None:
        await self.worker_class.on_shutdown(self.resources)

    async def _build(self, redis: aioredis.Redis) -> list[W]:
        host = f"{socket.gethostname()}-{os.getpid()}"
        workers = [
            self.worker_class(
                app_settings=self.app_settings,
                async_redis_conn=redis,
                consumer_id_suffix=f"{host}-{i}",
                **self.worker_kwargs,
            )
            for i in range(self.num_workers)
        ]
        # One client (so one reply listener) for all the pool's workers' outgoing calls.
        self.client = BaseRedisClient(self.settings.service_name, redis, self.settings)
        for worker in workers:
            worker.standalone_recovery = False
            worker.redis_client = self.client
            worker.resources = self.resources
            await worker._with_reconnect(worker.initialize, self.connect_timeout_s)
        return workers

    async def _close_clients(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await bounded(client.close(), "closing the pool's client")

    def health(self) -> dict[str, Any]:
        """A snapshot for health endpoints and logs: plain JSON-ready data (``json.dumps``
        takes it as is; keys are ``str``, values ``str``/``int``/``bool``/``None``, lists, dicts).

        - ``service`` (str), ``stream`` (str: the action stream read), ``running`` (bool: the
          pool is started and not stopping), ``num_workers`` (int: configured), ``restarts``
          (int: worker tasks restarted after a crash);
        - ``workers``: one dict per worker (empty before the first start): ``consumer``
          (its consumer name in the group), ``running`` (bool), and its
          :class:`~common.workers.stats.WorkerStats` counters: ``read``, ``handled``,
          ``acked``, ``failed``, ``retried``, ``reclaimed``, ``deleted_while_pending``,
          ``lease_renewals``, ``lost``, ``released``, ``dead_lettered`` (counts by reason, e.g.
          ``{"max_retries": 2}``), ``dead_letters_trimmed``, ``flush_errors`` (refused
          flushes, each retried), ``flush_error`` (why ACKs and replies cannot be written
          now, or ``None`` when healthy).
        """
        return {
            "service": self.settings.service_name,
            "stream": QueueManager(
                self.settings.queue_prefix, self.settings.environment
            ).action_stream(self.settings.service_name),
            "running": self.running,
            "num_workers": self.num_workers,
            "restarts": self.restarts,
            "workers": self.consumer_health(),
        }

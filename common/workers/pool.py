"""``WorkerPool``: N workers of one class as asyncio tasks, with one reclaim loop, in a process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis

from common.clients.base_redis_client import BaseRedisClient
from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S, connect_redis
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.errors import WorkerStateError
from common.workers.base_worker import BaseWorker, common_settings_of
from common.workers.cancel import cancel_and_wait, wait_event
from common.workers.recovery import Reclaimer
from common.workers.resources import Resources

__all__ = ["FLUSH_ALLOWANCE_S", "WorkerPool"]

logger = logging.getLogger("common.workers")

FLUSH_ALLOWANCE_S = 5.0
"""Allowed by :meth:`WorkerPool.stop` past ``shutdown_grace_s`` for the last flush and hand-back."""
_CANCEL_WAIT_S = 2.0  # how long a cancelled task (or a close) may take before it is left behind


async def _bounded(closing: Coroutine[Any, Any, None], what: str) -> None:
    try:
        async with asyncio.timeout(_CANCEL_WAIT_S):
            await closing
    except TimeoutError:
        logger.error("%s took over %.1fs; left unfinished", what, _CANCEL_WAIT_S)


def _json_ready(value: Any) -> Any:
    """``value`` with every str subclass (enum keys such as dead-letter reasons) made a str."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    return value


W = TypeVar("W", bound=BaseWorker)


class WorkerPool(Generic[W]):
    """Runs ``num_workers`` instances of ``worker_class`` (default: ``num_internal_workers``).

    A worker task that crashes is logged and restarted after a short backoff. Use it as an
    async context manager, with :meth:`start`/:meth:`stop`, or as a FastAPI lifespan::

        pool = WorkerPool(UserWorker, settings)
        app = FastAPI(lifespan=pool.lifespan)

    Without a ``redis`` client the pool opens (and closes) its own from ``settings.redis_url``;
    :meth:`start` then waits for Redis up to ``connect_timeout_s`` seconds (0: forever), then
    raises :class:`~common.errors.RedisUnavailableError`.

    What the workers share lives in :attr:`resources` (one :class:`Resources` per pool, given
    to every worker as ``worker.resources``): the worker class's ``on_startup(resources)``
    hook fills it once per :meth:`start`, and ``on_shutdown(resources)`` releases it once per
    :meth:`stop`. ``resources=`` pre-fills it (objects the caller also holds, e.g. for HTTP
    routes or tests).
    """

    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

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
        self.worker_class = worker_class
        self.app_settings = app_settings
        self.settings = common_settings_of(app_settings)
        self.num_workers = (
            self.settings.num_internal_workers if num_workers is None else num_workers
        )
        if self.num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.restart_delay_s = restart_delay_s
        self.worker_kwargs = worker_kwargs
        self.workers: list[W] = []
        self.restarts = 0
        self._redis = redis
        self._manager: RedisManager | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reclaimers: list[Reclaimer] = []
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self.client: BaseRedisClient | None = None
        self.resources = resources if isinstance(resources, Resources) else Resources(resources)
        self._resources_started = False

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise WorkerStateError("the pool has not been started")
        return self._redis

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping

    async def start(self) -> None:
        """Run ``on_startup`` once, then start the workers (``on_shutdown`` if that fails)."""
        if self._tasks:
            raise WorkerStateError("the pool is already running")
        await self.worker_class.on_startup(self.resources)
        self._resources_started = True
        try:
            await self._start_workers()
        except BaseException:
            await self._shut_down_resources()
            raise

    async def _shut_down_resources(self) -> None:
        if not self._resources_started:
            return
        self._resources_started = False
        try:
            await self.worker_class.on_shutdown(self.resources)
        except Exception:
            logger.exception("%s.on_shutdown failed", self.worker_class.__name__)

    async def _start_workers(self) -> None:
        if self._tasks:
            raise WorkerStateError("the pool is already running")
        self._stopping = False
        self._stop_requested = asyncio.Event()
        if self._redis is None:
            # Waits for Redis (one log line per attempt), then RedisUnavailableError.
            manager = await connect_redis(self.settings, timeout_s=self.connect_timeout_s)
            assert manager is not None  # no stop event: it connects or raises
            self._manager = manager
            self._redis = manager.get_client()
        host = f"{socket.gethostname()}-{os.getpid()}"
        self.workers = [
            self.worker_class(
                app_settings=self.app_settings,
                async_redis_conn=self._redis,
                consumer_id_suffix=f"{host}-{i}",
                **self.worker_kwargs,
            )
            for i in range(self.num_workers)
        ]
        # One client (so one reply listener) for all the pool's workers' outgoing calls.
        self.client = BaseRedisClient(self.settings.service_name, self._redis, self.settings)
        for worker in self.workers:
            worker.standalone_recovery = False
            worker.redis_client = self.client
            worker.resources = self.resources
            await worker.initialize()
        self._tasks = [
            asyncio.create_task(self._supervise(w), name=f"worker:{w.consumer_name}")
            for w in self.workers
        ]
        # One reclaim (and trim, and scheduled-send) loop per stream for all the pool's workers.
        self._reclaimers = [Reclaimer(self.workers, stream=s) for s in self.workers[0].streams]
        for reclaimer in self._reclaimers:
            reclaimer.start()
        await asyncio.sleep(0)  # let every worker task begin: running once start() returns
        logger.info(
            "started %d %s workers on %s",
            len(self.workers),
            self.worker_class.__name__,
            self.workers[0].action_stream_name,
        )

    async def _supervise(self, worker: W) -> None:
        while not self._stop_requested.is_set():
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stop_requested.is_set():
                    return
                self.restarts += 1
                logger.exception(
                    "worker %s crashed; restarting in %.1fs",
                    worker.consumer_name,
                    self.restart_delay_s,
                )
                # A stop during the delay ends it at once: a stopped worker is never restarted.
                await wait_event(self._stop_requested, self.restart_delay_s)

    async def stop(self) -> None:
        """Stop every worker, let in-flight work finish within ``shutdown_grace_s``, close.

        Final (no worker is restarted afterwards) and bounded: about ``shutdown_grace_s`` plus
        one flush (:data:`FLUSH_ALLOWANCE_S`), then whatever is still running is cancelled, and
        a task that does not even end then is logged and left behind rather than waited for.
        """
        if not self._tasks:
            return
        self._stopping = True
        self._stop_requested.set()
        reclaimers, self._reclaimers = self._reclaimers, []
        for reclaimer in reclaimers:  # first: no claim may reach a worker that has let go
            await reclaimer.stop()
        for worker in self.workers:
            await worker.stop()
        # run() itself bounds in-flight work by the grace period; then comes one flush.
        grace = self.settings.shutdown_grace_s + FLUSH_ALLOWANCE_S
        _done, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            if not await cancel_and_wait(task, _CANCEL_WAIT_S):
                logger.error("worker task %s did not stop; leaving it", task.get_name())
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error(
                    "worker task %s failed at stop", task.get_name(), exc_info=task.exception()
                )
        self._tasks = []
        await self._shut_down_resources()  # the workers are done with them
        if self.client is not None:
            client, self.client = self.client, None
            await _bounded(client.close(), "closing the pool's client")
        if self._manager is not None:
            manager, self._manager = self._manager, None
            self._redis = None
            await _bounded(manager.close(), "closing the pool's Redis connections")
        logger.info("stopped %d %s workers", len(self.workers), self.worker_class.__name__)

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
            "workers": [
                {
                    "consumer": w.consumer_name,
                    "running": w.is_running,
                    **_json_ready(w.stats.as_dict()),
                }
                for w in self.workers
            ],
        }

    async def __aenter__(self) -> WorkerPool[W]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """A FastAPI lifespan: ``FastAPI(lifespan=pool.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

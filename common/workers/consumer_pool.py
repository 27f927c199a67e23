"""``ConsumerPool``: consumers of the engine as asyncio tasks in one process, supervised.

The machinery every pool shares, whatever its consumers are (``BaseWorker`` instances for
:class:`~common.workers.pool.WorkerPool`, topic subscribers for the declarative layer): it
connects (waiting for Redis with a bound), builds the consumers, runs each as a task that is
restarted after a crash, runs one reclaim (and trim, and scheduled-send) loop per stream for all
its consumers, runs the process-wide ``on_startup``/``on_shutdown`` hooks once, and stops in a
bounded time: stop is final, no consumer is restarted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import redis.asyncio as aioredis

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S, connect_redis
from common.clients.redis_manager import RedisManager
from common.config import CommonAppSettings
from common.errors import WorkerStateError
from common.workers.cancel import cancel_and_wait, wait_event
from common.workers.engine import StreamConsumer
from common.workers.recovery import Reclaimer
from common.workers.resources import Resources

__all__ = ["FLUSH_ALLOWANCE_S", "ConsumerPool"]

logger = logging.getLogger(__name__)

FLUSH_ALLOWANCE_S = 5.0
"""Allowed by :meth:`ConsumerPool.stop` past ``shutdown_grace_s`` for the last flush and
hand-back."""
_CANCEL_WAIT_S = 2.0  # how long a cancelled task (or a close) may take before it is left behind

C = TypeVar("C", bound=StreamConsumer)


async def bounded(closing: Coroutine[Any, Any, None], what: str) -> None:
    """Await ``closing`` for at most a couple of seconds; log and go on past that."""
    try:
        async with asyncio.timeout(_CANCEL_WAIT_S):
            await closing
    except TimeoutError:
        logger.error("%s took over %.1fs; left unfinished", what, _CANCEL_WAIT_S)


def json_ready(value: Any) -> Any:
    """``value`` with every str subclass (enum keys such as dead-letter reasons) made a str."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    return value


class ConsumerPool(ABC, Generic[C]):
    """Consumers built by :meth:`_build`, run as supervised tasks (see the module docstring)."""

    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __init__(
        self,
        settings: CommonAppSettings,
        redis: aioredis.Redis | None = None,
        *,
        restart_delay_s: float = 1.0,
        resources: Resources | Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.restart_delay_s = restart_delay_s
        self.workers: list[C] = []
        self.restarts = 0
        self.resources = resources if isinstance(resources, Resources) else Resources(resources)
        self._redis = redis
        self._manager: RedisManager | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reclaimers: list[Reclaimer] = []
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._resources_started = False

    # -- what a pool decides -----------------------------------------------------------------

    @abstractmethod
    async def _build(self, redis: aioredis.Redis) -> list[C]:
        """Make (and initialize) the consumers; each is then run as a supervised task."""

    def _reclaim_groups(self) -> Sequence[Sequence[C]]:
        """Consumers that share streams and a group: one set of reclaim loops per set."""
        return [self.workers]

    async def _on_startup(self) -> None:
        """The process-wide start-up hook (once per :meth:`start`)."""

    async def _on_shutdown(self) -> None:
        """The process-wide shut-down hook (once per :meth:`stop`)."""

    async def _close_clients(self) -> None:
        """Close what :meth:`_build` opened besides the consumers."""

    @property
    def describe(self) -> str:
        return type(self).__name__

    @property
    def _shutdown_hook_name(self) -> str:
        return f"{self.describe}: on_shutdown"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise WorkerStateError("the pool has not been started")
        return self._redis

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping

    async def start(self) -> None:
        """Run ``on_startup`` once, then start the consumers (``on_shutdown`` if that fails)."""
        if self._tasks:
            raise WorkerStateError("the pool is already running")
        await self._on_startup()
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
            await self._on_shutdown()
        except Exception:
            logger.exception("%s failed", self._shutdown_hook_name)

    async def _start_workers(self) -> None:
        self._stopping = False
        self._stop_requested = asyncio.Event()
        if self._redis is None:
            # Waits for Redis (one log line per attempt), then RedisUnavailableError.
            manager = await connect_redis(self.settings, timeout_s=self.connect_timeout_s)
            assert manager is not None  # no stop event: it connects or raises
            self._manager = manager
            self._redis = manager.get_client()
        self.workers = await self._build(self._redis)
        for worker in self.workers:
            worker.standalone_recovery = False
        self._tasks = [
            asyncio.create_task(self._supervise(w), name=f"worker:{w.consumer}")
            for w in self.workers
        ]
        # One reclaim (and trim, and scheduled-send) loop per stream, for the consumers of it.
        self._reclaimers = [
            Reclaimer(group, stream=stream)
            for group in self._reclaim_groups()
            if group
            for stream in group[0].streams
        ]
        for reclaimer in self._reclaimers:
            reclaimer.start()
        await asyncio.sleep(0)  # let every worker task begin: running once start() returns
        logger.info("started %s: %d consumers", self.describe, len(self.workers))

    async def _supervise(self, worker: C) -> None:
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
                    "consumer %s crashed; restarting in %.1fs",
                    worker.consumer,
                    self.restart_delay_s,
                )
                # A stop during the delay ends it at once: a stopped worker is never restarted.
                await wait_event(self._stop_requested, self.restart_delay_s)

    async def stop(self) -> None:
        """Stop every consumer, let in-flight work finish within ``shutdown_grace_s``, close.

        Final (no consumer is restarted afterwards) and bounded: about ``shutdown_grace_s``
        plus one flush (:data:`FLUSH_ALLOWANCE_S`), then whatever is still running is
        cancelled, and a task that does not even end then is logged and left behind.
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
        await self._close_clients()
        if self._manager is not None:
            manager, self._manager = self._manager, None
            self._redis = None
            await bounded(manager.close(), "closing the pool's Redis connections")
        logger.info("stopped %s", self.describe)

    def consumer_health(self) -> list[dict[str, Any]]:
        """Each consumer's name, state and counters, as plain JSON-ready data."""
        return [
            {"consumer": w.consumer, "running": w.is_running, **json_ready(w.stats.as_dict())}
            for w in self.workers
        ]

    async def __aenter__(self) -> Self:
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

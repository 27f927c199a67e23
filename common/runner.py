"""Running workers as a process of their own: SIGTERM and SIGINT stop them gracefully.

The runner owns the process, so it (and only it) installs signal handlers; inside FastAPI the
server owns them and the pool runs in the lifespan instead.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from typing import Any

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S, connect_redis
from common.config import CommonAppSettings, load_settings
from common.errors import ConfigurationError
from common.workers.base_worker import BaseWorker
from common.workers.pool import WorkerPool

__all__ = ["import_worker_class", "run_pool", "serve"]

logger = logging.getLogger("common.runner")


def import_worker_class(target: str) -> type[BaseWorker]:
    """Resolve ``package.module:ClassName`` to a ``BaseWorker`` subclass."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected 'module:WorkerClass', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseWorker)):
        raise ConfigurationError(f"{target!r} is not a BaseWorker subclass")
    return cls


async def run_pool(
    worker_class: type[BaseWorker],
    settings: CommonAppSettings,
    *,
    num_workers: int | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    **worker_kwargs: Any,
) -> WorkerPool[Any]:
    """Run a pool until SIGTERM/SIGINT (or ``stop`` is set), then drain it and return it.

    Redis is waited for first, one log line per attempt, for ``connect_timeout_s`` seconds at
    most (0: forever; a signal ends the wait), then :class:`RedisUnavailableError`."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            pass
    try:
        manager = await connect_redis(settings, timeout_s=connect_timeout_s, stop=stop)
        if manager is None:
            logger.info("stopped while waiting for Redis")
            return WorkerPool(worker_class, settings, num_workers=num_workers, **worker_kwargs)
        # The runner owns the connection (so that a signal can end the wait for it): the pool
        # is given it, and it is closed after the pool has stopped.
        pool: WorkerPool[Any] = WorkerPool(
            worker_class, settings, manager.get_client(), num_workers=num_workers, **worker_kwargs
        )
        async with manager, pool:
            logger.info(
                "running %d %s workers; SIGTERM or SIGINT to stop",
                pool.num_workers,
                worker_class.__name__,
            )
            await stop.wait()
            logger.info(
                "stopping: draining in-flight work (grace %.1fs)", settings.shutdown_grace_s
            )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return pool


def serve(target: str, settings: CommonAppSettings | None = None, **kwargs: Any) -> None:
    """Blocking entry point: ``serve("app.workers:UserWorker")``; uvloop when installed."""
    worker_class = import_worker_class(target)
    settings = settings or load_settings()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(run_pool(worker_class, settings, **kwargs))

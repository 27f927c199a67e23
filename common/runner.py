"""Running workers as a process of their own: SIGTERM and SIGINT stop them gracefully.

``python -m common run TARGET`` runs one of (:func:`resolve_target`):

- ``package.module:ClassName``: a ``BaseWorker`` subclass (a :class:`WorkerPool`), or a
  declarative ``@worker`` function / ``Worker`` class;
- ``package.module`` or ``package``: every declarative worker that module (or that package and
  all its submodules) registers, in one :class:`MessagingPool`;
- a registered worker name (qualified, or a unique short name), after importing ``--from``
  packages; a qualified name imports its own module;
- ``all``: everything registered once the ``--from`` packages are imported.

The runner owns the process, so it (and only it) installs signal handlers; inside FastAPI the
server owns them and the pool runs in the lifespan instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S, connect_redis
from common.config import CommonAppSettings, load_settings
from common.errors import ConfigurationError
from common.messaging.registry import discover_workers, get, registered
from common.messaging.runner import MessagingPool
from common.messaging.settings import configure_messaging, messaging_settings
from common.messaging.subscription import Subscription
from common.supervisor import METRICS_MIRROR_ENV
from common.workers.base_worker import BaseWorker
from common.workers.consumer_pool import ConsumerPool
from common.workers.pool import WorkerPool

__all__ = [
    "RunTarget",
    "check_redis",
    "import_worker_class",
    "resolve_target",
    "run_messaging",
    "run_pool",
    "run_target",
    "serve",
    "target_settings",
]

logger = logging.getLogger("common.runner")

ALL = "all"
"""The target naming every registered declarative worker."""

P = TypeVar("P", bound=ConsumerPool[Any])


@dataclass(frozen=True)
class RunTarget:
    """What ``run TARGET`` names: a ``BaseWorker`` class, or declarative subscriptions."""

    name: str
    worker_class: type[BaseWorker] | None = None
    subscriptions: tuple[Subscription, ...] = ()

    @property
    def declarative(self) -> bool:
        return self.worker_class is None


def import_worker_class(target: str) -> type[BaseWorker]:
    """Resolve ``package.module:ClassName`` to a ``BaseWorker`` subclass."""
    found = _import_attr(target)
    if not (isinstance(found, type) and issubclass(found, BaseWorker)):
        raise ConfigurationError(f"{target!r} is not a BaseWorker subclass")
    return found


def _import_attr(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected 'module:WorkerClass', got {target!r}")
    module = _import_module(module_name)
    return getattr(module, attr, None)


def _import_module(name: str) -> Any:
    """Import ``name``; any failure (not only ImportError: a module may raise anything at
    import) becomes one :class:`ConfigurationError` line naming the module and the cause."""
    try:
        return importlib.import_module(name)
    except ConfigurationError:
        raise
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {name!r}: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc


def _discover(package: str) -> list[Subscription]:
    _import_module(package)  # the root first, for a clear error naming it
    try:
        return discover_workers(package)
    except ConfigurationError:
        raise
    except Exception as exc:  # a submodule raising at import
        raise ConfigurationError(f"cannot import {package!r}: {type(exc).__name__}: {exc}") from exc


def _is_module(name: str) -> bool:
    """Whether ``name`` names an importable module (without importing it)."""
    if not all(part.isidentifier() for part in name.split(".")):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that does not exist
        return False
    except Exception as exc:  # a parent package that raises at import
        raise ConfigurationError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc


def _registered_name(name: str) -> Subscription | None:
    if not registered():
        return None
    try:
        return get(name)
    except ConfigurationError as exc:
        if "ambiguous" in str(exc):
            raise
        return None


def resolve_target(target: str, imports: Sequence[str] = ()) -> RunTarget:
    """What ``target`` names (see the module docstring), after importing ``imports`` (modules
    or packages whose declarative workers become registered: ``run all --from app.workers``).

    Raises :class:`ConfigurationError` (one line) when a module does not import or the target
    names nothing."""
    for package in imports:
        _discover(package)
    if ":" in target:
        found = _import_attr(target)
        if isinstance(found, type) and issubclass(found, BaseWorker):
            return RunTarget(target, worker_class=found)
        sub = getattr(found, "__subscription__", None)
        if isinstance(sub, Subscription):
            return RunTarget(target, subscriptions=(sub,))
        raise ConfigurationError(
            f"{target!r} is not a BaseWorker subclass nor a declarative worker"
        )
    if target == ALL:
        subs = registered()
        if not subs:
            hint = "" if imports else " (import them with --from PACKAGE)"
            raise ConfigurationError(f"nothing to run: no declarative worker is registered{hint}")
        return RunTarget(target, subscriptions=tuple(subs))
    sub = _registered_name(target)
    if sub is not None:
        return RunTarget(target, subscriptions=(sub,))
    if _is_module(target):
        subs = _discover(target)
        if not subs:
            raise ConfigurationError(
                f"module {target!r} registers no declarative worker "
                "(for a BaseWorker class: 'module:WorkerClass')"
            )
        return RunTarget(target, subscriptions=tuple(subs))
    module, _, _ = target.rpartition(".")
    if module and _is_module(module):  # a qualified name: its module registers it
        _import_module(module)
        sub = _registered_name(target)
        if sub is not None:
            return RunTarget(target, subscriptions=(sub,))
    raise ConfigurationError(
        f"{target!r} is neither 'module:Class', an importable module, 'all', nor a registered "
        "worker name (give --from PACKAGE to import the workers first)"
    )


def target_settings(target: RunTarget, **overrides: Any) -> CommonAppSettings:
    """The settings ``target`` runs with: the environment's (and ``overrides``); for
    declarative workers, what their modules gave :func:`configure_messaging` too."""
    if not target.declarative:
        return load_settings(**overrides)
    if overrides:
        return configure_messaging(**overrides)
    return messaging_settings()


class _Signals:
    """SIGTERM and SIGINT set ``stop`` while inside (where the loop can take them)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop.set)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MetricsAddress = tuple[str, int]
"""(host, port) where ``run --metrics-port`` serves ``GET /metrics``."""


@contextlib.asynccontextmanager
async def _metrics(pool: ConsumerPool[Any], address: MetricsAddress | None) -> AsyncIterator[None]:
    """Serve the pool's metrics at ``address``; in a child of a supervisor that serves them,
    mirror its counters (see :mod:`common.ops.multiprocess`). Neither: nothing is imported."""
    # A supervisor serving metrics gives its children both (see common.ops.multiprocess).
    mirror = os.environ.get(METRICS_MIRROR_ENV) if os.environ.get(MULTIPROC_DIR_ENV) else None
    if address is None and mirror is None:
        yield
        return
    try:
        from common.ops.multiprocess import process_metrics
    except ImportError as exc:
        raise ConfigurationError(
            "metrics need prometheus-client: pip install 'redis-streams-common[metrics]'"
        ) from exc
    try:
        mirror_s = None if mirror is None else float(mirror)
    except ValueError:
        raise ConfigurationError(f"{METRICS_MIRROR_ENV}={mirror!r} is not a number") from None
    async with process_metrics(pool, address, mirror_s):
        yield


async def _run_until_stopped(
    make_pool: Callable[[aioredis.Redis | None], P],
    settings: CommonAppSettings,
    what: Callable[[P], str],
    stop: asyncio.Event | None,
    connect_timeout_s: float,
    metrics_address: MetricsAddress | None = None,
) -> P:
    stop = stop or asyncio.Event()
    with _Signals(stop):
        manager = await connect_redis(settings, timeout_s=connect_timeout_s, stop=stop)
        if manager is None:
            logger.info("stopped while waiting for Redis")
            return make_pool(None)
        # The runner owns the connection (so that a signal can end the wait for it): the pool
        # is given it, and it is closed after the pool has stopped.
        pool = make_pool(manager.get_client())
        # The metrics are left after the pool has stopped: the last mirror counts the drain.
        async with manager, _metrics(pool, metrics_address), pool:
            logger.info("running %s; SIGTERM or SIGINT to stop", what(pool))
            await stop.wait()
            logger.info(
                "stopping: draining in-flight work (grace %.1fs)", settings.shutdown_grace_s
            )
    return pool


async def run_pool(
    worker_class: type[BaseWorker],
    settings: CommonAppSettings,
    *,
    num_workers: int | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    metrics_address: MetricsAddress | None = None,
    **worker_kwargs: Any,
) -> WorkerPool[Any]:
    """Run a pool until SIGTERM/SIGINT (or ``stop`` is set), then drain it and return it.

    Redis is waited for first, one log line per attempt, for ``connect_timeout_s`` seconds at
    most (0: forever; a signal ends the wait), then :class:`RedisUnavailableError`. With
    ``metrics_address`` (host, port), ``GET /metrics`` is served there meanwhile."""

    def make(redis: aioredis.Redis | None) -> WorkerPool[Any]:
        return WorkerPool(worker_class, settings, redis, num_workers=num_workers, **worker_kwargs)

    return await _run_until_stopped(
        make,
        settings,
        lambda pool: f"{pool.num_workers} {worker_class.__name__} workers",
        stop,
        connect_timeout_s,
        metrics_address,
    )


async def run_messaging(
    subscriptions: Sequence[Subscription],
    settings: CommonAppSettings,
    *,
    num_workers: int | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    metrics_address: MetricsAddress | None = None,
) -> MessagingPool:
    """Like :func:`run_pool` for declarative workers: a :class:`MessagingPool` of
    ``subscriptions`` (``num_workers``: consumers of each, instead of their own count)."""
    if num_workers is not None:
        subscriptions = [dataclasses.replace(s, consumers=num_workers) for s in subscriptions]

    def make(redis: aioredis.Redis | None) -> MessagingPool:
        return MessagingPool(subscriptions, settings, redis)

    def what(pool: MessagingPool) -> str:
        names = ", ".join(s.name for s in pool.subscriptions)
        return f"{len(pool.workers)} consumers of {len(pool.subscriptions)} workers ({names})"

    return await _run_until_stopped(make, settings, what, stop, connect_timeout_s, metrics_address)


def run_target(
    target: RunTarget,
    settings: CommonAppSettings,
    **kwargs: Any,
) -> Coroutine[Any, Any, ConsumerPool[Any]]:
    """The coroutine running ``target`` until a signal (:func:`run_pool` or
    :func:`run_messaging`)."""
    if target.worker_class is not None:
        return run_pool(target.worker_class, settings, **kwargs)
    return run_messaging(target.subscriptions, settings, **kwargs)


async def check_redis(
    settings: CommonAppSettings, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
) -> bool:
    """Wait for Redis as a run would (then :class:`RedisUnavailableError`), and let go of it.
    False if SIGTERM/SIGINT ended the wait."""
    stop = asyncio.Event()
    with _Signals(stop):
        manager = await connect_redis(settings, timeout_s=connect_timeout_s, stop=stop)
    if manager is None:
        return False
    await manager.close()
    return True


def event_loop_runner() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """``uvloop.run`` when installed, else ``asyncio.run``."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, Any]], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner


def serve(
    target: str | RunTarget,
    settings: CommonAppSettings | None = None,
    *,
    imports: Sequence[str] = (),
    **kwargs: Any,
) -> None:
    """Blocking entry point: ``serve("app.workers:UserWorker")``, ``serve("app.workers")``,
    ``serve("all", imports=["app"])``; uvloop when installed."""
    resolved = target if isinstance(target, RunTarget) else resolve_target(target, imports)
    settings = settings or target_settings(resolved)
    event_loop_runner()(run_target(resolved, settings, **kwargs))

"""Shared resources: ``on_startup``/``on_shutdown`` run once per pool (or per worker run on its
own), and every worker of the pool reaches the same ``self.resources``."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis

from common import (
    BaseRedisClient,
    BaseWorker,
    CommonAppSettings,
    DomainAction,
    Resources,
    WorkerPool,
)
from common.errors import WorkerStateError
from common.runner import run_pool


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.closed = False


class CountingWorker(BaseWorker):
    """Counts into one shared ``Counter``; records what its hooks saw."""

    events: ClassVar[list[str]] = []
    fail_startup: ClassVar[bool] = False
    fail_shutdown: ClassVar[bool] = False
    fail_initialize: ClassVar[bool] = False
    running_at_shutdown: ClassVar[list[bool]] = []
    live: ClassVar[list[CountingWorker]] = []

    @classmethod
    async def on_startup(cls, resources: Resources) -> None:
        cls.events.append("startup")
        if cls.fail_startup:
            raise RuntimeError("no database")
        resources.setdefault("counter", Counter)

    @classmethod
    async def on_shutdown(cls, resources: Resources) -> None:
        cls.events.append("shutdown")
        cls.running_at_shutdown.extend(w.is_running for w in cls.live)
        resources.counter.closed = True
        if cls.fail_shutdown:
            raise RuntimeError("close failed")

    async def _initialize_components(self) -> None:
        # Resources exist by now: on_startup ran before any worker initializes.
        self.events.append(f"init:{self.resources.counter.value}")
        self.live.append(self)
        if self.fail_initialize:
            raise OSError("cannot open a file of its own")

    async def _handle_counting_add(self, action: DomainAction) -> dict[str, Any]:
        counter: Counter = self.resources.counter
        counter.value += action.data["n"]
        return {"value": counter.value}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CountingWorker.events = []
    CountingWorker.running_at_shutdown = []
    CountingWorker.live = []
    CountingWorker.fail_startup = CountingWorker.fail_shutdown = False
    CountingWorker.fail_initialize = False


@pytest.fixture
def counting(settings: CommonAppSettings) -> CommonAppSettings:
    return settings.model_copy(update={"service_name": "counting"})


async def _add(client: BaseRedisClient, n: int) -> int:
    reply = await client.send_action_pseudo_sync(
        DomainAction(action_type="counting.add", data={"n": n}), timeout=5
    )
    value: int = reply.data["value"]
    return value


async def test_hooks_run_once_per_pool_start_and_stop(
    counting: CommonAppSettings, redis: aioredis.Redis
) -> None:
    pool = WorkerPool(CountingWorker, counting, redis, num_workers=4)
    async with pool, BaseRedisClient("api", redis, counting) as client:
        assert CountingWorker.events == ["startup"] + ["init:0"] * 4
        assert all(w.resources is pool.resources for w in pool.workers)
        values = [await _add(client, 1) for _ in range(12)]
        counter = pool.resources.counter
    assert values == list(range(1, 13))  # one counter, whichever worker answered
    assert CountingWorker.events == ["startup"] + ["init:0"] * 4 + ["shutdown"]
    assert CountingWorker.running_at_shutdown == [False] * 4  # after the workers stopped
    assert counter.closed

    # A pool started again runs its hooks again, on the same resources.
    CountingWorker.events = []
    async with pool:
        assert pool.resources.counter is counter
    assert CountingWorker.events == ["startup"] + ["init:12"] * 4 + ["shutdown"]


async def test_resources_given_to_the_pool_are_kept(
    counting: CommonAppSettings, redis: aioredis.Redis
) -> None:
    mine = Counter()
    mine.value = 100
    pool = WorkerPool(CountingWorker, counting, redis, num_workers=2, resources={"counter": mine})
    async with pool, BaseRedisClient("api", redis, counting) as client:
        assert await _add(client, 1) == 101
    assert pool.resources.counter is mine and mine.closed


@pytest.mark.parametrize("fail_shutdown", [False, True])
async def test_a_worker_run_on_its_own_runs_the_hooks_itself(
    counting: CommonAppSettings,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    fail_shutdown: bool,
) -> None:
    CountingWorker.fail_shutdown = fail_shutdown
    worker = CountingWorker(counting, redis, "alone")
    await worker.initialize()
    assert CountingWorker.events == ["startup", "init:0"]
    run = asyncio.create_task(worker.run())
    async with BaseRedisClient("api", redis, counting) as client:
        assert await _add(client, 2) == 2
    await worker.stop()
    await run  # a failed on_shutdown is logged, not raised
    assert CountingWorker.events == ["startup", "init:0", "shutdown"]
    assert worker.resources.counter.closed
    assert ("CountingWorker.on_shutdown failed" in caplog.text) is fail_shutdown


async def test_a_failed_on_startup_starts_nothing(
    counting: CommonAppSettings, redis: aioredis.Redis
) -> None:
    CountingWorker.fail_startup = True
    pool = WorkerPool(CountingWorker, counting, redis, num_workers=2)
    with pytest.raises(RuntimeError, match="no database"):
        await pool.start()
    assert not pool.running and pool.workers == []
    assert CountingWorker.events == ["startup"]  # no on_shutdown for what never started


async def test_a_start_failing_after_on_startup_releases_the_resources(
    counting: CommonAppSettings, redis: aioredis.Redis
) -> None:
    CountingWorker.fail_initialize = True
    pool = WorkerPool(CountingWorker, counting, redis, num_workers=2)
    with pytest.raises(WorkerStateError, match="cannot open a file"):
        await pool.start()
    assert not pool.running
    assert CountingWorker.events == ["startup", "init:0", "shutdown"]
    assert pool.resources.counter.closed


async def test_a_failed_on_shutdown_is_logged_and_the_pool_still_stops(
    counting: CommonAppSettings, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    CountingWorker.fail_shutdown = True
    pool = WorkerPool(CountingWorker, counting, num_workers=2)  # its own connections
    await pool.start()
    await pool.stop()
    assert not pool.running and pool.client is None
    assert CountingWorker.events[-1] == "shutdown"
    assert "CountingWorker.on_shutdown failed" in caplog.text
    with pytest.raises(WorkerStateError):
        pool.redis  # noqa: B018  (closed: the pool's own connections were released)


async def test_the_command_line_runner_runs_the_hooks(
    counting: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """``python -m common run`` builds its pool with ``run_pool``: the hooks run there too."""
    stop = asyncio.Event()
    runner = asyncio.create_task(run_pool(CountingWorker, counting, num_workers=4, stop=stop))
    async with BaseRedisClient("api", redis, counting) as client:
        values = [await _add(client, 1) for _ in range(8)]
    stop.set()
    pool = await asyncio.wait_for(runner, 30)
    assert values == list(range(1, 9))
    assert CountingWorker.events == ["startup"] + ["init:0"] * 4 + ["shutdown"]
    assert len({id(w.resources) for w in pool.workers}) == 1


def test_resources_namespace() -> None:
    resources = Resources({"a": 1}, b=2)
    assert "a" in resources and "c" not in resources
    assert sorted(resources) == ["a", "b"] and len(resources) == 2
    assert resources.get("c") is None and resources.setdefault("a", lambda: 9) == 1
    assert resources.setdefault("c", list) == [] and resources.c == []
    with pytest.raises(AttributeError, match=r"no shared resource 'missing'.*on_startup"):
        resources.missing  # noqa: B018
    assert repr(resources) == "Resources(a, b, c)"

"""The planned Depends resolution: same results as fast-depends for the common shapes, sync
dependencies inline, teardown once per message also on failure, failures never swallowed."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fast_depends import Depends, dependency_provider

from common.messaging.depends import DependsPlan, plan_depends


async def test_sync_async_and_nested_dependencies_are_resolved_once_per_call() -> None:
    made: list[str] = []

    def config() -> dict[str, str]:
        made.append("config")
        assert threading.current_thread() is threading.main_thread()  # inline, no thread
        return {"dsn": "x"}

    async def session(cfg: dict[str, str] = Depends(config)) -> str:
        made.append("session")
        return f"session({cfg['dsn']})"

    async def handler(
        payload: int, db: str = Depends(session), cfg: dict[str, str] = Depends(config)
    ) -> tuple[int, str, str]:
        return payload, db, cfg["dsn"]

    call = plan_depends(handler)
    assert isinstance(call.__self__, DependsPlan)  # type: ignore[attr-defined]
    assert await call(1) == (1, "session(x)", "x")
    assert made == ["config", "session"]  # config cached within the call
    assert await call(2) == (2, "session(x)", "x")
    assert made == ["config", "session"] * 2  # made again for the next message


async def test_generator_teardown_runs_once_also_on_failure_and_the_failure_is_raised() -> None:
    events: list[str] = []

    async def swallowing_db() -> AsyncIterator[str]:
        events.append("open")
        try:
            yield "db"
        except Exception:
            events.append("rollback")  # swallows the error: must not hide the failure
        finally:
            events.append("close")

    def sync_res() -> Iterator[str]:
        yield "res"
        events.append("sync-close")

    async def handler(payload: str, db: str = Depends(swallowing_db), r: str = Depends(sync_res)):
        if payload == "fail":
            raise ValueError("boom")
        return db + r

    call = plan_depends(handler)
    assert await call("ok") == "dbres"
    assert events == ["open", "sync-close", "close"]
    events.clear()
    with pytest.raises(ValueError, match="boom"):
        await call("fail")
    assert events == ["open", "rollback", "close"]


async def test_use_cache_false_makes_a_new_one_at_each_use() -> None:
    count = 0

    def counter() -> int:
        nonlocal count
        count += 1
        return count

    async def handler(a: int = Depends(counter, use_cache=False), b: int = Depends(counter)) -> Any:
        return a, b

    assert await plan_depends(handler)() == (1, 2)


async def test_unusual_shapes_and_overrides_go_to_fast_depends() -> None:
    def needs_value(value: int) -> int:  # a required parameter fast-depends would look for
        return value

    async def handler(x: int = Depends(needs_value)) -> int:
        return x

    assert not isinstance(getattr(plan_depends(handler), "__self__", None), DependsPlan)

    def real() -> str:
        return "real"

    async def uses(v: str = Depends(real)) -> str:
        return v

    call = plan_depends(uses)
    assert await call() == "real"
    with dependency_provider.scope(real, lambda: "fake"):
        assert await call() == "fake"

"""Readiness of a process's worker pools: can they do their work right now?

Four checks, each with the reason when it fails: Redis answers (a PING within a bound), the
consumer groups exist on every stream the pools read, the workers are running, and no outbox
is stuck (``WorkerStats.flush_error`` is None: replies and ACKs can be written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from common.errors import WorkerStateError
from common.secrets import redact_url

__all__ = ["Readiness", "check_ready"]


@dataclass(slots=True)
class Readiness:
    """``ready`` if every check passed; ``reasons`` says why not; ``checks``: pass or fail each."""

    ready: bool = True
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    def fail(self, check: str, reason: str) -> None:
        self.ready = False
        self.checks[check] = False
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _check_pool(pool: Any, result: Readiness, timeout_s: float) -> None:
    name = pool.settings.service_name
    if not pool.running or not pool.workers or not all(w.is_running for w in pool.workers):
        stopped = sum(1 for w in pool.workers if not w.is_running)
        detail = "not started" if not pool.workers else f"{stopped} of {len(pool.workers)} stopped"
        result.fail("workers", f"{name}: workers not running ({detail})")
    stuck = [w.stats.flush_error for w in pool.workers if w.stats.flush_error is not None]
    if stuck:
        result.fail("outbox", f"{name}: outbox stuck in {len(stuck)} worker(s): {stuck[0]}")
    try:
        redis = pool.redis
    except WorkerStateError:
        result.fail("redis", f"{name}: no Redis connection (the pool is not started)")
        return
    url = redact_url(pool.settings.redis_url)
    try:
        async with asyncio.timeout(timeout_s):
            await redis.ping()
            streams = list(pool.workers[0].streams) if pool.workers else []
            group = pool.workers[0].group if pool.workers else None
            for stream in streams:
                try:
                    groups = await redis.xinfo_groups(stream)
                except Exception as exc:
                    if "no such key" not in str(exc).lower():
                        raise
                    groups = []
                if group not in {_text(g["name"]) for g in groups}:
                    result.fail("groups", f"{name}: consumer group {group} missing on {stream}")
    except TimeoutError:
        result.fail("redis", f"{name}: Redis at {url} did not answer within {timeout_s:g}s")
    except Exception as exc:
        result.fail("redis", f"{name}: Redis at {url} unreachable: {type(exc).__name__}: {exc}")


async def check_ready(pools: Sequence[Any], timeout_s: float = 1.0) -> Readiness:
    """The readiness of ``pools`` (:class:`~common.workers.WorkerPool` objects)."""
    result = Readiness(checks={"redis": True, "groups": True, "workers": True, "outbox": True})
    for pool in pools:
        await _check_pool(pool, result, timeout_s)
    return result

"""The demo command itself, as a user runs it: on the embedded memory:// default and against
a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from common import CommonAppSettings, QueueManager
from common.testing import RedisServer
from services.demo.report import percentile

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "QUEUE_PREFIX")}
    env.update(PYTHONIOENCODING="utf-8", COLUMNS="120", **extra)
    return env


async def _run_demo(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.demo",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _row(output: str, name: str) -> list[str]:
    """The cells of the summary table row that starts with ``name``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)]
        if name in cells:
            return cells[cells.index(name) :]
    raise AssertionError(f"no row {name!r} in:\n{output}")


async def test_demo_on_memory_finishes_with_the_expected_counts() -> None:
    code, out, err = await _run_demo("--actions", "100", env=_env())
    assert code == 0, out + err
    assert re.search(r"all \d+ checks passed in [\d.]+s on memory://", out), out
    # what, sent, expected, actual, ok
    assert _row(out, "async inventory.restock handled")[1:5] == ["100", "100", "100", "ok"]
    assert _row(out, "pseudo-sync inventory.check replies")[1:5] == ["10", "10", "10", "ok"]
    assert _row(out, "callbacks: order reserved")[1:5] == ["5", "4", "4", "ok"]
    assert _row(out, "unknown inventory.teleport: reply")[3:5] == ["404", "ok"]
    assert _row(out, "dead-lettered: malformed")[1:5] == ["2", "2", "2", "ok"]
    assert _row(out, "dead-lettered: max_retries")[2:5] == ["3", "3", "ok"]
    assert _row(out, "dead-lettered: unknown_action")[2:5] == ["1", "1", "ok"]
    assert _row(out, "entries left pending")[2:5] == ["0", "0", "ok"]
    assert "p50" in out and "p99" in out
    assert "FAIL" not in out
    # The progress bars went to stderr, the summary to stdout.
    assert "callbacks received by orders" in err


async def test_demo_against_a_real_server(
    redis_server: RedisServer, settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    env = _env(REDIS_URL=redis_server.url, QUEUE_PREFIX=settings.queue_prefix)
    code, out, err = await _run_demo("--actions", "100", "--json", env=env)
    assert code == 0, out + err
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["redis_url"] == redis_server.url
    assert summary["queue_prefix"] == settings.queue_prefix
    assert all(check["ok"] for check in summary["checks"])
    assert summary["dead_letters"] == {"malformed": 2, "max_retries": 3, "unknown_action": 1}
    assert summary["http_statuses"] == {"201": 9, "409": 1}
    assert summary["callback_statuses"] == {"reserved": 4, "rejected": 1}
    assert summary["workers"]["inventory"]["retried"] == 6
    assert summary["latency_ms"]["pseudo_sync"]["count"] == 10

    # A prefix given in the environment is kept: the server holds what the demo reported.
    queues = QueueManager(settings.queue_prefix, settings.environment)
    reasons = await _dead_letter_reasons(redis, queues.dead_letter_stream("inventory"))
    assert reasons == ["malformed"] * 2 + ["max_retries"] * 3 + ["unknown_action"]
    for service in ("inventory", "orders"):
        pending = await redis.xpending(
            queues.action_stream(service), queues.consumer_group(service)
        )
        assert pending["pending"] == 0


async def test_demo_exits_non_zero_when_it_cannot_finish() -> None:
    code, out, _err = await _run_demo("--actions", "50", "--quiet", "--timeout", "0.01", env=_env())
    assert code == 1
    assert "timed out" in out and "FAILED" in out


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


async def _dead_letter_reasons(redis: aioredis.Redis, stream: str) -> list[str]:
    entries: Any = await redis.xrange(stream)
    return sorted(fields[b"reason"].decode() for _id, fields in entries)

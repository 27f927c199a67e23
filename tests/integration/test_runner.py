"""The command-line runner: a real process, stopped gracefully by SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _start(
    settings: CommonAppSettings,
    target: str = "tests.integration.workers:CalcWorker",
    **extra_env: str,
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "SERVICE_NAME": "calc",
        "WORKER_BLOCK_MS": "100",
        "SHUTDOWN_GRACE_S": "10",
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "common", "run", target, "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_in_flight_work_and_exits_zero(
    settings: CommonAppSettings, redis: aioredis.Redis, sig: signal.Signals
) -> None:
    proc = _start(settings)
    try:
        client = BaseRedisClient("api", redis, settings)
        ready = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=20
        )
        assert ready.data == {"sum": 2}
        slow = DomainAction(action_type="calc.slow", data={"seconds": 1.0})
        future = client._replies.expect(slow.action_id)
        await client.send_action_async(
            slow.model_copy(update={"callback_queue_name": client.reply_key})
        )
        stream = client.queues.action_stream("calc")
        await wait_for(lambda: _pending(redis, stream, 1))  # it is being handled
        proc.send_signal(sig)
        reply = await wait_for(lambda: future.done() and future.result(), timeout=10)
        assert reply.data == {"slept": 1.0}
        assert proc.wait(15) == 0
        assert await redis.xpending(stream, "calc-group") == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }
        # Consumers that stopped holding nothing removed themselves from the group.
        assert await redis.xinfo_consumers(stream, "calc-group") == []
        await client.close()
    finally:
        proc.kill()
        output = proc.communicate()[0]
    assert "draining in-flight work" in output


async def _pending(redis: aioredis.Redis, stream: str, n: int) -> bool:
    return (await redis.xpending(stream, "calc-group"))["pending"] == n


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.integration.workers:Nope", "is not a BaseWorker subclass"),
        ("tests.integration.workers", "expected 'module:WorkerClass'"),
        ("tests.no_such_module:Worker", "cannot import 'tests.no_such_module'"),
    ],
)
def test_bad_target_exits_with_a_clear_error(
    settings: CommonAppSettings, target: str, message: str
) -> None:
    proc = _start(settings, target=target)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2
    assert message in output


def test_bad_setting_in_the_environment_exits_naming_it(settings: CommonAppSettings) -> None:
    proc = _start(settings, WORKER_BATCH_SIZE="0")
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2
    assert "worker_batch_size" in output and "Traceback" not in output

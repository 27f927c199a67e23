"""The command-line runner: a real process, stopped gracefully by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, RedisManager
from common.testing import RedisServer, free_port, unique_settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
_CALC = "tests.integration.workers:CalcWorker"


def _start(
    settings: CommonAppSettings,
    target: str = "tests.integration.workers:CalcWorker",
    *args: str,
    stderr: int = subprocess.STDOUT,
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
        [sys.executable, "-m", "common", "run", target, "--workers", "2", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
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
        ("tests.integration.workers", "registers no declarative worker (for a BaseWorker class"),
        ("tests.integration.workers:", "expected 'module:WorkerClass'"),
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


def test_no_redis_exits_after_connect_timeout_with_one_clear_line() -> None:
    port = free_port()
    settings = CommonAppSettings(redis_url=f"redis://app:s3cret@127.0.0.1:{port}/0")
    proc = _start(settings, _CALC, "--connect-timeout", "1", stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in out + err and "s3cret" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert (
        errors == [errors[0]]
        and f"cannot connect to Redis at redis://app:***@127.0.0.1:{port}/0" in errors[0]
    )
    assert "Error 111" in errors[0]
    # Every other line is a one-line log record of an attempt.
    attempts = [line for line in err.splitlines() if not line.startswith("error:")]
    assert attempts and all(
        "WARNING common.clients.connect Redis unavailable" in a for a in attempts
    )


async def test_waits_for_a_server_that_comes_up_later_then_serves() -> None:
    server = RedisServer()  # port chosen; nothing listens there yet
    try:
        settings = unique_settings(redis_url=server.url, service_name="calc")
        proc = _start(settings, _CALC, "--connect-timeout", "30", stderr=subprocess.PIPE)
        lines: list[str] = []
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        try:
            await wait_for(lambda: any("Redis unavailable" in line for line in lines), 20)
            await asyncio.to_thread(server.start)
            async with (
                RedisManager(settings) as manager,
                BaseRedisClient("api", manager.get_client(), settings) as client,
            ):
                reply = await client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.add", data={"a": 4, "b": 5}), timeout=20
                )
            assert reply.data == {"sum": 9}
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
        finally:
            proc.kill()
            proc.communicate()
            reader.join(5)
    finally:
        server.close()
    assert not any("Traceback" in line for line in lines)

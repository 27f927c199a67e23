"""``run TARGET --processes P``: P worker processes under one supervisor (real processes)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction
from common.testing import free_port
from tests.helpers import wait_for
from tests.integration.test_run_targets import Run

CALC = "tests.integration.workers:CalcWorker"
STARTED = re.compile(r"started worker process (\d) \(pid (\d+)\)")


def _started(run: Run) -> list[tuple[int, int]]:
    found = (STARTED.search(line) for line in run.lines)
    return [(int(m[1]), int(m[2])) for m in found if m]


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def _no_pending(redis: aioredis.Redis, stream: str) -> bool:
    return int((await redis.xpending(stream, "calc-group"))["pending"]) == 0


async def _add(client: BaseRedisClient, a: int, b: int) -> None:
    reply = await client.send_action_pseudo_sync(
        DomainAction(action_type="calc.add", data={"a": a, "b": b}), timeout=20
    )
    assert reply.data == {"sum": a + b}


async def test_processes_restart_a_killed_child_and_drain_on_sigterm(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    run = Run(settings, CALC, "--processes", "2", "--workers", "1", service="calc")
    client = BaseRedisClient("api", redis, settings)
    try:
        await wait_for(lambda: len(run.seen("running 1 CalcWorker workers")) == 2, 30)
        started = sorted(_started(run))
        assert [slot for slot, _pid in started] == [0, 1]
        first, second = (pid for _slot, pid in started)
        await _add(client, 1, 2)
        stream = client.queues.action_stream("calc")
        # Its XACK follows the reply within a few ms: kill an idle child, not one whose last
        # action would then wait a visibility timeout to be reclaimed and run again.
        await wait_for(lambda: _no_pending(redis, stream), timeout=10)

        os.kill(first, signal.SIGKILL)  # a crash: the supervisor starts another process
        await wait_for(lambda: run.seen("worker process 0 (pid") and run.seen("restarting"), 20)
        await wait_for(lambda: len(run.seen("running 1 CalcWorker workers")) == 3, 30)
        restarted = sorted(_started(run))
        assert [slot for slot, _pid in restarted] == [0, 0, 1]
        replacement = next(pid for slot, pid in restarted if slot == 0 and pid != first)
        assert restarted[2][1] == second and not _gone(replacement) and not _gone(second)
        await _add(client, 3, 4)

        slow = DomainAction(action_type="calc.slow", data={"seconds": 1.0})
        future = client._replies.expect(slow.action_id)
        await client.send_action_async(
            slow.model_copy(update={"callback_queue_name": client.reply_key})
        )
        await wait_for(
            lambda: _pending(redis, stream), timeout=10
        )  # it is being handled in one of the processes
        run.proc.send_signal(signal.SIGTERM)
        reply = await wait_for(lambda: future.done() and future.result(), timeout=15)
        assert reply.data == {"slept": 1.0}  # drained, not dropped
        assert await run.wait(30) == 0, run.output
        assert _gone(replacement) and _gone(second)
        assert (await redis.xpending(stream, "calc-group"))["pending"] == 0
    finally:
        await client.close()
        run.close()
    assert len(run.seen("draining in-flight work")) == 2  # each child drained
    assert "Traceback" not in run.output


async def _pending(redis: aioredis.Redis, stream: str) -> bool:
    return bool((await redis.xpending(stream, "calc-group"))["pending"])


async def test_children_stop_when_the_supervisor_is_killed(settings: CommonAppSettings) -> None:
    run = Run(settings, CALC, "--processes", "2", "--workers", "1", service="calc")
    try:
        await wait_for(lambda: len(run.seen("running 1 CalcWorker workers")) == 2, 30)
        pids = [pid for _slot, pid in _started(run)]
        run.proc.kill()
        await wait_for(lambda: all(_gone(pid) for pid in pids), 20)
    finally:
        run.close()


async def test_processes_without_redis_exit_1_with_one_clear_line() -> None:
    port = free_port()
    settings = CommonAppSettings(redis_url=f"redis://app:s3cret@127.0.0.1:{port}/0")
    run = Run(settings, CALC, "--processes", "2", "--connect-timeout", "1")
    try:
        assert await run.wait(30) == 1
    finally:
        run.close()
    errors = [line for line in run.lines if line.startswith("error:")]
    assert (
        len(errors) == 1
        and f"cannot connect to Redis at redis://app:***@127.0.0.1:{port}/0" in errors[0]
    )
    assert "s3cret" not in run.output and "Traceback" not in run.output
    assert not run.seen("started worker process")

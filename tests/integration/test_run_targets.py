"""``python -m common run TARGET`` with declarative targets: a module, a package, a worker
name, ``all``; and bad targets (one clear line, status 2). Real processes on a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.messaging import Producer
from common.messaging.events import decode_event
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.declarative_app"


class Run:
    """A ``python -m common run ...`` process whose output lines are collected."""

    def __init__(self, settings: CommonAppSettings, *args: str, service: str = "cli") -> None:
        env = {
            **os.environ,
            "REDIS_URL": settings.redis_url,
            "QUEUE_PREFIX": settings.queue_prefix,
            "SERVICE_NAME": service,
            "WORKER_BLOCK_MS": "100",
            "SHUTDOWN_GRACE_S": "10",
            "PYTHONPATH": str(ROOT),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "common", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def seen(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait(self, timeout: float = 20) -> int:
        code = await asyncio.to_thread(self.proc.wait, timeout)
        await asyncio.to_thread(self._reader.join, 5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


async def _published(redis: aioredis.Redis, settings: CommonAppSettings, topic: str) -> list[Any]:
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream(topic)
    entries = await redis.xrange(stream)
    return [decode_event(fields, 1 << 20).data for _id, fields in entries]


async def _feed(redis: aioredis.Redis, settings: CommonAppSettings) -> None:
    producer = Producer(settings=settings, redis=redis)
    for n in range(3):
        await producer.send("cli.numbers", {"n": n})
    await producer.send("cli.names", {"name": "ada"})


async def _expect(
    redis: aioredis.Redis, settings: CommonAppSettings, *, doubled: bool, greeted: bool
) -> None:
    if doubled:
        out = await wait_for(lambda: _published(redis, settings, "cli.doubled"), 20)
        await wait_for(lambda: _count(redis, settings, "cli.doubled", 3), 20)
        out = await _published(redis, settings, "cli.doubled")
        assert sorted(o["doubled"] for o in out) == [0, 2, 4]
    if greeted:
        out = await wait_for(lambda: _published(redis, settings, "cli.greetings"), 20)
        assert out == [{"greeting": "hello ada"}]


async def _count(redis: aioredis.Redis, settings: CommonAppSettings, topic: str, n: int) -> bool:
    return len(await _published(redis, settings, topic)) >= n


@pytest.mark.parametrize(
    ("args", "doubled", "greeted"),
    [
        pytest.param([APP], True, True, id="package"),
        pytest.param([f"{APP}.doubling"], True, False, id="module"),
        pytest.param([f"{APP}.doubling.double"], True, False, id="qualified-name"),
        pytest.param(["Greeter", "--from", APP], False, True, id="short-name-from"),
        pytest.param([f"{APP}.greeting:Greeter"], False, True, id="module-colon-class"),
        pytest.param(["all", "--from", APP], True, True, id="all-from"),
    ],
)
async def test_declarative_target_runs_then_drains_on_sigterm(
    settings: CommonAppSettings,
    redis: aioredis.Redis,
    args: list[str],
    doubled: bool,
    greeted: bool,
) -> None:
    await _feed(redis, settings)  # the groups start at the beginning of each topic
    run = Run(settings, *args)
    try:
        await _expect(redis, settings, doubled=doubled, greeted=greeted)
        await wait_for(lambda: run.seen("SIGTERM or SIGINT to stop"), 20)
        run.proc.send_signal(signal.SIGTERM)
        assert await run.wait() == 0, run.output
    finally:
        run.close()
    [running] = run.seen("running ")
    assert ("double" in running) is doubled and ("Greeter" in running) is greeted
    assert "draining in-flight work" in run.output and "Traceback" not in run.output
    if not doubled:
        assert await _published(redis, settings, "cli.doubled") == []
    if not greeted:
        assert await _published(redis, settings, "cli.greetings") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["all"], "nothing to run: no declarative worker is registered (import them with --from"),
        (["tests.helpers"], "module 'tests.helpers' registers no declarative worker"),
        (["nope"], "'nope' is neither 'module:Class', an importable module, 'all', nor a"),
        (["Greeter"], "nor a registered worker name (give --from PACKAGE"),
        (["tests.no_such.thing"], "'tests.no_such.thing' is neither"),
        (["all", "--from", "tests.no_such"], "cannot import 'tests.no_such'"),
        (
            ["tests.integration.declarative_broken"],
            "cannot import 'tests.integration.declarative_broken': RuntimeError: broken on",
        ),
        (
            ["tests.integration.declarative_broken_pkg.workers"],
            "cannot import 'tests.integration.declarative_broken_pkg.workers': RuntimeError",
        ),
        ([f"{APP}.doubling:nope"], "is not a BaseWorker subclass nor a declarative worker"),
        (["--processes", "2", "nope"], "'nope' is neither"),
    ],
)
async def test_bad_target_exits_2_with_one_clear_line(
    settings: CommonAppSettings, args: list[str], message: str
) -> None:
    run = Run(settings, *args)
    try:
        assert await run.wait(30) == 2
    finally:
        run.close()
    assert run.lines == [f"error: {run.lines[0][len('error: ') :]}"], run.output
    assert message in run.lines[0]

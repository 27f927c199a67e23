"""``common send`` and ``common call``, and every command's failures: one line, exit 1."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings, WorkerPool
from common.testing import free_port
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker
from tests.ops.conftest import Invoke


async def test_send_fires_an_action_that_a_worker_handles(
    settings: CommonAppSettings, cli: Invoke
) -> None:
    async with WorkerPool(CalcWorker, settings, num_workers=1) as pool:
        result = await cli("send", "calc.add", '{"a": 1, "b": 2}')
        assert result.exit_code == 0, result.output
        sent = json.loads(result.stdout)
        assert sent["stream"] == pool.workers[0].action_stream_name
        assert sent["entry_id"]
        await wait_for(lambda: pool.workers[0].handled == [sent["action_id"]])


async def test_call_prints_the_response(settings: CommonAppSettings, cli: Invoke) -> None:
    async with WorkerPool(CalcWorker, settings, num_workers=1):
        result = await cli("call", "calc.add", '{"a": 20, "b": 22}', "--timeout", "10")
        assert result.exit_code == 0, result.output
        response = json.loads(result.stdout)
        assert response["success"] is True
        assert response["data"] == {"sum": 42}
        failed = await cli("call", "calc.reject", "{}", "--timeout", "10")
        assert failed.exit_code == 1  # printed, but not a success
        assert json.loads(failed.stdout)["success"] is False


async def test_call_without_a_running_service_times_out_in_one_line(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    stream = f"{settings.queue_prefix}:dev:{{calc}}:actions"
    await redis.xgroup_create(stream, "calc-group", mkstream=True)
    result = await cli("call", "calc.add", '{"a": 1, "b": 1}', "--timeout", "0.3")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: no response to action") and "0.3s" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("send", "calc.add", "{bad json"), "error: malformed JSON"),
        (("call", "calc.add", '{"a": 1'), "error: malformed JSON"),
        (("send", "calc.add", "[1, 2]"), "error: the data must be a JSON object, not list"),
        (("send", "Not A Type", "{}"), "error: invalid action: action_type"),
        (("send", "nosuch.thing", "{}"), "error: unknown service 'nosuch'"),
        (("call", "nosuch.thing", "{}"), "error: unknown service 'nosuch'"),
    ],
)
async def test_bad_input_is_one_clear_line_and_exit_1(
    settings: CommonAppSettings,
    redis: aioredis.Redis,
    cli: Invoke,
    args: tuple[str, ...],
    expected: str,
) -> None:
    await redis.xgroup_create(
        f"{settings.queue_prefix}:dev:{{calc}}:actions", "calc-group", mkstream=True
    )
    result = await cli(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(expected), line


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--watch", "--count", "1"),
        ("dlq", "list", "calc"),
        ("dlq", "show", "calc", "1-1"),
        ("dlq", "replay", "calc"),
        ("dlq", "purge", "calc", "--yes"),
        ("send", "calc.add", "{}"),
        ("call", "calc.add", "{}"),
    ],
)
async def test_redis_down_is_one_line_without_the_password(
    cli: Invoke, args: tuple[str, ...]
) -> None:
    url = f"redis://admin:s3cret-pw@127.0.0.1:{free_port()}/0"
    result = await cli(*args, "--connect-timeout", "1", REDIS_URL=url)
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot connect to Redis at redis://admin:***@127.0.0.1:")


async def test_a_memory_url_and_a_bad_url_are_refused_clearly(cli: Invoke) -> None:
    memory = await cli("status", REDIS_URL="memory://")
    assert memory.exit_code == 1
    assert memory.stderr.startswith("error: REDIS_URL is memory://")
    bad = await cli("status", REDIS_URL="http://user:s3cret-pw@host/0")
    assert bad.exit_code == 2
    assert "s3cret" not in bad.output
    assert len(bad.stderr.splitlines()) == 1

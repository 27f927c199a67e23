"""``run --metrics-port``: one process serves its metrics; with ``--processes 2`` the supervisor
serves the children's sum (Prometheus's multi-process mode). Real processes, real Redis."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, QueueManager
from common.messaging import Producer
from common.testing import free_port
from tests.helpers import metric_labels as _key
from tests.helpers import metric_samples, wait_for
from tests.integration.test_run_targets import Run

CALC = "tests.integration.workers:CalcWorker"
STARTED = re.compile(r"started worker process (\d) \(pid (\d+)\)")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(port: int) -> Samples | None:
    """The samples at ``/metrics``, or None while nothing answers there yet."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.TransportError:
        return None
    assert response.status_code == 200, response.text
    return metric_samples(response.text)


async def _send_workload(client: BaseRedisClient) -> None:
    await client.send_actions_async(
        [DomainAction(action_type="calc.add", data={"a": i, "b": 1}) for i in range(20)]
        + [DomainAction(action_type="calc.fail") for _ in range(3)]
    )


def _metrics_dirs(parent: Path) -> list[Path]:
    """The supervisor's metrics directories under ``parent`` (its ``$TMPDIR``)."""
    return [p for p in parent.glob("common-metrics-*") if p.is_dir()]


def _only_the_handlers_tracebacks(run: Run) -> None:
    """The failing handler's tracebacks are logged (first and last attempt); nothing else's."""
    output = run.output
    assert output.count("Traceback") == output.count("in _handle_calc_fail")


@pytest.fixture
def metrics_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment of the ``run`` processes: detailed metrics on, a fast mirror, and a
    temporary directory of the test's own (where the supervisor makes its metrics dir)."""
    monkeypatch.setenv("COMMON_METRICS_DETAILED", "1")
    monkeypatch.setenv("COMMON_METRICS_MIRROR_S", "0.2")
    monkeypatch.setenv("MAX_RETRIES", "2")
    monkeypatch.setenv("RETRY_INITIAL_DELAY_S", "0.05")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


async def test_two_processes_serve_the_sum_of_their_children(
    settings: CommonAppSettings, redis: aioredis.Redis, metrics_env: Path
) -> None:
    port = free_port()
    args = ("--processes", "2", "--workers", "1", "--metrics-port", str(port))
    run = Run(settings, CALC, *args, service="calc")
    client = BaseRedisClient("api", redis, settings)
    stream = client.queues.action_stream("calc")
    key = _key(service="calc", stream=stream)
    try:
        await wait_for(lambda: len(run.seen("running 1 CalcWorker workers")) == 2, 30)
        assert len(_metrics_dirs(metrics_env)) == 1
        await _send_workload(client)

        async def counted() -> Samples | None:
            values = await _scrape(port)
            dead = _key(service="calc", stream=stream, reason="max_retries")
            done = (
                values
                and values.get(("common_actions_dead_lettered_total", dead)) == 3
                and values.get(("common_actions_handled_total", key)) == 20
            )
            return values if done else None

        values = await wait_for(counted, timeout=30, interval=0.2)
        assert values[("common_actions_failed_total", key)] == 6  # 3 actions, 2 attempts each
        assert values[("common_workers_running", _key(service="calc"))] == 2
        added = _key(service="calc", stream=stream, type="calc.add")
        failed = _key(service="calc", stream=stream, type="calc.fail")
        assert values[("common_handled_by_type_total", added)] == 20
        assert values[("common_failed_by_type_total", failed)] == 6
        counts = [v for k, v in values.items() if k[0] == "common_handler_duration_seconds_count"]
        assert sum(counts) == 26  # handled + failed, over both processes
        # The gauges, sampled from Redis by the supervisor.
        assert values[("common_redis_up", _key(service="calc"))] == 1
        assert values[("common_stream_length", key)] == 23
        assert values[("common_dead_letters", key)] == 3
        group = _key(service="calc", stream=stream, group="calc-group")
        assert values[("common_stream_lag", group)] == 0

        # A SIGKILLed child: its counts stay in the sum, its "running" goes with it.
        first = next(int(m[2]) for line in run.lines if (m := STARTED.search(line)))
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: len(run.seen("running 1 CalcWorker workers")) == 3, 30)

        async def recounted() -> Samples | None:
            values = await _scrape(port)
            running = values and values.get(("common_workers_running", _key(service="calc")))
            return values if running == 2 else None

        values = await wait_for(recounted, timeout=20, interval=0.2)
        assert values[("common_actions_handled_total", key)] == 20

        run.proc.send_signal(signal.SIGTERM)
        assert await run.wait(30) == 0, run.output
    finally:
        await client.close()
        run.close()
    assert not _metrics_dirs(metrics_env)  # removed at exit
    _only_the_handlers_tracebacks(run)


async def test_one_process_serves_its_own_metrics(
    settings: CommonAppSettings, redis: aioredis.Redis, metrics_env: Path
) -> None:
    port = free_port()
    run = Run(settings, CALC, "--workers", "1", "--metrics-port", str(port), service="calc")
    client = BaseRedisClient("api", redis, settings)
    stream = client.queues.action_stream("calc")
    try:
        await wait_for(lambda: run.seen("running 1 CalcWorker workers"), 30)
        assert run.seen(f"serving metrics on http://127.0.0.1:{port}/metrics")
        await _send_workload(client)

        key = _key(service="calc", stream=stream)
        count = _key(service="calc", type="calc.fail")

        async def counted() -> Samples | None:
            # The failing actions' second attempts may come after the 20 handled ones.
            values = await _scrape(port)
            done = values and values.get(("common_actions_handled_total", key)) == 20
            dead = _key(service="calc", stream=stream, reason="max_retries")
            failed = values and values.get(("common_actions_dead_lettered_total", dead))
            return values if done and failed == 3 else None

        values = await wait_for(counted, timeout=30, interval=0.2)
        assert values[("common_handler_duration_seconds_count", count)] == 6
        assert values[("common_workers_running", _key(service="calc"))] == 1
        async with httpx.AsyncClient(timeout=5) as http:
            missing = await http.get(f"http://127.0.0.1:{port}/other")
        assert missing.status_code == 404
        run.proc.send_signal(signal.SIGTERM)
        assert await run.wait(30) == 0, run.output
    finally:
        await client.close()
        run.close()
    assert not _metrics_dirs(metrics_env)  # one process: no directory at all
    _only_the_handlers_tracebacks(run)


async def test_two_processes_of_declarative_workers_report_their_topic(
    settings: CommonAppSettings, redis: aioredis.Redis, metrics_env: Path
) -> None:
    port = free_port()
    target = "tests.integration.declarative_app.doubling"
    run = Run(settings, target, "--processes", "2", "--metrics-port", str(port), service="cli")
    producer = Producer(settings=settings, redis=redis)
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream("cli.numbers")
    key = _key(service="cli", stream=stream)
    try:
        await wait_for(lambda: len(run.seen("running ")) == 2, 30)
        for n in range(5):
            await producer.send("cli.numbers", {"n": n})

        async def counted() -> Samples | None:
            values = await _scrape(port)
            done = values and values.get(("common_actions_handled_total", key)) == 5
            return values if done else None

        values = await wait_for(counted, timeout=30, interval=0.2)
        by_type = _key(service="cli", stream=stream, type="cli.numbers")
        assert values[("common_handled_by_type_total", by_type)] == 5
        assert values[("common_stream_length", key)] == 5  # the topic, sampled by the supervisor
        group = next(dict(k[1])["group"] for k in values if k[0] == "common_stream_lag")
        assert values[("common_stream_lag", _key(service="cli", stream=stream, group=group))] == 0
        run.proc.send_signal(signal.SIGTERM)
        assert await run.wait(30) == 0, run.output
    finally:
        run.close()
    assert not _metrics_dirs(metrics_env)
    assert "Traceback" not in run.output


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_metrics_port_in_use_is_one_clear_line_and_status_2(
    settings: CommonAppSettings, processes: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ("--processes", processes, "--metrics-port", str(port))
        run = Run(settings, CALC, *args, service="calc")
        try:
            assert await run.wait(30) == 2, run.output
        finally:
            run.close()
    errors = [line for line in run.lines if line.startswith("error:")]
    assert errors == [f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in run.output

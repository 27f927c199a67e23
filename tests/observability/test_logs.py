"""Structured logs: JSON lines that carry the trace id of the action or event being handled."""

from __future__ import annotations

import importlib
import io
import logging
import pkgutil
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import common
from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.messaging import run_workers, worker
from common.messaging.producer import Producer
from common.observability import DeliveryLogFilter, JsonFormatter, configure_json_logging
from common.workers.logs import ContextLogger
from tests.helpers import wait_for

handler_log = logging.getLogger("tests.observability.handler")


class LoggingWorker(BaseWorker):
    async def _handle_calc_log(self, action: DomainAction) -> dict[str, Any]:
        handler_log.info("handling %s", action.data["what"])
        self.log.info("from the worker's own logger")
        return {}


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The JSON lines of the test's handler logger and of the toolkit's loggers."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(service="fallback"))
    handler.addFilter(DeliveryLogFilter())
    targets = [handler_log, logging.getLogger("common")]
    levels = [t.level for t in targets]
    for target in targets:
        target.addHandler(handler)
        target.setLevel(logging.INFO)
    try:
        yield out
    finally:
        for target, level in zip(targets, levels, strict=True):
            target.removeHandler(handler)
            target.setLevel(level)


def _docs(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def _about(out: io.StringIO, text: str) -> list[dict[str, Any]]:
    return [doc for doc in _docs(out) if text in doc["message"]]


async def test_handler_log_lines_carry_the_trace_id_of_the_action_being_handled(
    settings: CommonAppSettings,
    redis: aioredis.Redis,
    lines: io.StringIO,
    spans: InMemorySpanExporter,
) -> None:
    action = DomainAction(action_type="calc.log", data={"what": "a sum"}, trace_id="trace-42")
    async with (
        WorkerPool(LoggingWorker, settings, redis) as pool,
        BaseRedisClient("api", redis, settings) as client,
    ):
        await client.send_action_pseudo_sync(action, timeout=5)
    [line] = _about(lines, "handling a sum")
    [process] = [s for s in spans.get_finished_spans() if s.name == "process calc.log"]
    assert process.context is not None
    assert line["trace_id"] == "trace-42"
    assert line["service"] == "calc"
    assert line["consumer"] == pool.workers[0].consumer_name
    assert line["logger"] == "tests.observability.handler" and line["level"] == "INFO"
    assert line["otel_trace_id"] == f"{process.context.trace_id:032x}"
    assert line["span_id"] == f"{process.context.span_id:016x}"
    [own] = _about(lines, "from the worker's own logger")
    assert own["trace_id"] == "trace-42" and own["service"] == "calc"
    # Lines not about a delivery carry no trace id.
    assert all(
        "trace_id" not in doc
        for doc in _docs(lines)
        if "handling" not in doc["message"] and "own logger" not in doc["message"]
    )


async def test_declarative_handler_log_lines_carry_the_event_trace_id(
    settings: CommonAppSettings, lines: io.StringIO
) -> None:
    @worker(topic="orders.created")
    async def on_order(order: dict[str, Any]) -> None:
        handler_log.info("order %s", order["id"])

    producer = Producer(settings)
    try:
        async with run_workers(on_order, settings=settings):
            await producer.send("orders.created", {"id": 9})
            found = await wait_for(lambda: _about(lines, "order 9"))
    finally:
        await producer.close()
    [line] = found
    assert line["service"] == settings.service_name and line["consumer"]
    assert isinstance(line["trace_id"], str) and line["trace_id"]
    assert "otel_trace_id" not in line  # tracing is off


def test_the_json_formatter_writes_one_parsable_object_without_secrets() -> None:
    formatter = JsonFormatter(service="api")
    try:
        raise ConnectionError("cannot reach redis://app:hunter2@db:6379/0")
    except ConnectionError:
        record = logging.getLogger("common.clients").makeRecord(
            "common.clients",
            logging.ERROR,
            __file__,
            1,
            "lost %s",
            ("redis://:s3cret@db:6379/0?password=other",),
            exc_info=sys.exc_info(),
        )
    line = formatter.format(record)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "ERROR" and doc["logger"] == "common.clients"
    assert doc["service"] == "api" and "trace_id" not in doc
    assert doc["time"].endswith("+00:00")
    assert doc["message"] == "lost redis://:***@db:6379/0?password=***"
    assert "ConnectionError" in doc["exception"] and "redis://app:***@db" in doc["exception"]
    for secret in ("hunter2", "s3cret", "other"):
        assert secret not in line


def test_context_logger_records_carry_service_and_consumer() -> None:
    out = io.StringIO()
    handler = configure_json_logging(stream=out, logger="tests.observability.ctx")
    try:
        ContextLogger(logging.getLogger("tests.observability.ctx"), "svc", "c-1").warning("hi")
    finally:
        logging.getLogger("tests.observability.ctx").removeHandler(handler)
    [doc] = _docs(out)
    assert doc == {**doc, "message": "[svc c-1] hi", "service": "svc", "consumer": "c-1"}


def test_each_module_logs_to_its_own_logger_under_a_silent_common() -> None:
    names: dict[str, str] = {}
    for info in pkgutil.walk_packages(common.__path__, "common."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        found = getattr(module, "logger", None)
        if isinstance(found, logging.Logger):
            names[info.name] = found.name
    assert len(names) >= 10
    # endpoint.py keeps the name its users already filter on.
    expected = {name: name for name in names} | {
        "common.messaging.endpoint": "common.messaging.event"
    }
    assert names == {name: expected[name] for name in names}
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("common").handlers)

"""OpenTelemetry spans on a real Redis: one trace from the sender through the handlers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.messaging import Event, Handler, run_workers, worker
from common.messaging.producer import Producer
from common.observability import logs, tracing
from tests.helpers import wait_for


class CalcWorker(BaseWorker):
    """Answers calc.add, and tells the audit service about it (a send inside the handler)."""

    async def _handle_calc_add(self, action: DomainAction) -> dict[str, Any]:
        await self.redis_client.send_action_async(
            DomainAction(action_type="audit.record", data={"of": str(action.action_id)})
        )
        return {"sum": action.data["a"] + action.data["b"]}

    async def _handle_calc_fail(self, action: DomainAction) -> None:
        raise ValueError("no such sum")


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def _parent_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and child.context is not None and parent.context is not None
    return (
        child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
    )


def _action_stream(settings: CommonAppSettings, service: str) -> str:
    return QueueManager(settings.queue_prefix, settings.environment).action_stream(service)


async def _entries(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    return [orjson.loads(f[b"action"]) for _, f in await redis.xrange(stream)]


async def test_a_pseudo_sync_call_and_the_sends_of_its_handler_are_one_trace(
    settings: CommonAppSettings, redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    async with (
        WorkerPool(CalcWorker, settings, redis),
        BaseRedisClient("api", redis, settings) as client,
    ):
        response = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 2, "b": 3}), timeout=5
        )
    assert response.data == {"sum": 5}
    call = _named(spans, "call calc.add")
    process = _named(spans, "process calc.add")
    audit = _named(spans, "send audit.record")
    assert call.kind is SpanKind.CLIENT and call.parent is None
    assert process.kind is SpanKind.CONSUMER and _parent_of(process, call)
    assert audit.kind is SpanKind.PRODUCER and _parent_of(audit, process)
    assert process.attributes is not None and call.attributes is not None
    assert process.attributes["messaging.destination.name"] == _action_stream(settings, "calc")
    assert process.attributes["common.trace_id"] == call.attributes["common.trace_id"]
    assert call.attributes["common.status_code"] == 200
    # The envelope on the wire carries the sending span's W3C trace context.
    [sent] = await _entries(redis, _action_stream(settings, "audit"))
    assert audit.context is not None
    assert sent["metadata"]["traceparent"].startswith(
        f"00-{audit.context.trace_id:032x}-{audit.context.span_id:016x}-"
    )


async def test_a_failing_handler_and_a_fire_and_forget_send_are_traced(
    settings: CommonAppSettings, redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    fast = settings.model_copy(update={"max_retries": 1})
    async with (
        WorkerPool(CalcWorker, fast, redis),
        BaseRedisClient("api", redis, fast) as client,
    ):
        await client.send_action_async(DomainAction(action_type="calc.fail"))
        await wait_for(
            lambda: any(s.name == "process calc.fail" for s in spans.get_finished_spans())
        )
    send = _named(spans, "send calc.fail")
    process = _named(spans, "process calc.fail")
    assert _parent_of(process, send)
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]


async def test_a_batch_send_is_the_parent_of_each_handling(
    settings: CommonAppSettings, redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    actions = [DomainAction(action_type="calc.add", data={"a": i, "b": 0}) for i in range(3)]
    async with (
        WorkerPool(CalcWorker, settings, redis),
        BaseRedisClient("api", redis, settings) as client,
    ):
        await client.send_actions_async(actions)
        await wait_for(
            lambda: sum(s.name == "process calc.add" for s in spans.get_finished_spans()) == 3
        )
    batch = _named(spans, "send batch")
    processed = [s for s in spans.get_finished_spans() if s.name == "process calc.add"]
    assert all(_parent_of(p, batch) for p in processed)
    assert {p.attributes["messaging.message.id"] for p in processed if p.attributes} == {
        str(a.action_id) for a in actions
    }


class ApiWorker(BaseWorker):
    added: list[dict[str, Any]] = []

    async def _handle_api_added(self, action: DomainAction) -> None:
        self.added.append(action.data)


async def test_a_callback_send_its_handling_and_the_callback_are_one_trace(
    settings: CommonAppSettings, redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    api = settings.model_copy(update={"service_name": "api"})
    ApiWorker.added = []
    async with (
        WorkerPool(CalcWorker, settings, redis),
        WorkerPool(ApiWorker, api, redis),
        BaseRedisClient("api", redis, api) as client,
    ):
        await client.send_action_async_with_callback(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), "api.added"
        )
        await wait_for(lambda: ApiWorker.added == [{"sum": 2}])
        await wait_for(
            lambda: any(s.name == "process api.added" for s in spans.get_finished_spans())
        )
    send = _named(spans, "send calc.add")
    assert _parent_of(_named(spans, "process calc.add"), send)
    assert _parent_of(_named(spans, "process api.added"), send)


async def test_a_publish_and_the_declarative_handlers_downstream_are_one_trace(
    settings: CommonAppSettings, redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    billed: list[dict[str, Any]] = []

    @worker(topic="orders.created", output_topic="orders.billed")
    async def bill(order: dict[str, Any]) -> dict[str, Any]:
        return {"order": order["id"], "amount": 10}

    @worker(topic="orders.billed")
    async def record(bill: dict[str, Any]) -> None:
        billed.append(bill)

    producer = Producer(settings)
    try:
        async with run_workers(bill, record, settings=settings):
            await producer.send("orders.created", {"id": 7})
            await wait_for(lambda: billed == [{"order": 7, "amount": 10}])
            await wait_for(lambda: len(spans.get_finished_spans()) >= 3)
    finally:
        await producer.close()
    publish = _named(spans, "publish orders.created")
    first = _named(spans, "process orders.created")
    second = _named(spans, "process orders.billed")
    assert publish.kind is SpanKind.PRODUCER and publish.parent is None
    assert first.kind is SpanKind.CONSUMER and _parent_of(first, publish)
    assert _parent_of(second, first)  # the output event carries its handler's context
    assert first.attributes is not None and first.attributes["common.handler"].endswith(".bill")
    queues = QueueManager(settings.queue_prefix, settings.environment)
    [(_, fields)] = await redis.xrange(queues.topic_stream("orders.created"))
    assert publish.context is not None
    event = Event.model_validate_json(fields[b"event"])
    assert event.traceparent is not None
    assert f"{publish.context.span_id:016x}" in event.traceparent


async def test_tracing_off_wraps_nothing_stamps_nothing_and_never_loads_opentelemetry(
    settings: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_opentelemetry(*args: Any) -> None:
        raise AssertionError("OpenTelemetry used while tracing is off")

    monkeypatch.setattr(tracing, "_Otel", no_opentelemetry)
    monkeypatch.setattr(logs, "_wanted", False)  # no JSON formatter either: nothing wrapped
    assert not tracing.is_enabled()
    handled: list[dict[str, Any]] = []

    @worker(topic="orders.created")
    async def on_order(order: dict[str, Any]) -> None:
        handled.append(order)

    producer = Producer(settings)
    try:
        async with (
            WorkerPool(CalcWorker, settings, redis) as pool,
            run_workers(on_order, settings=settings) as messaging,
        ):
            async with BaseRedisClient("api", redis, settings) as client:
                response = await client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.add", data={"a": 2, "b": 3}), timeout=5
                )
                assert not vars(client).keys() & {"send_action_async", "send_action_pseudo_sync"}
            await producer.send("orders.created", {"id": 1})
            await wait_for(lambda: len(handled) == 1)
            assert all("_handle_action" not in vars(w) for w in pool.workers)
            assert "send_event" not in vars(producer)
            assert all(s._run_handler is Handler.run for s in messaging.workers)
    finally:
        await producer.close()
    assert response.data == {"sum": 5}
    queues = QueueManager(settings.queue_prefix, settings.environment)
    [(_, fields)] = await redis.xrange(queues.topic_stream("orders.created"))
    assert Event.model_validate_json(fields[b"event"]).traceparent is None
    [audit] = await _entries(redis, _action_stream(settings, "audit"))
    assert "traceparent" not in audit["metadata"]


def test_the_environment_variable_switches_tracing_on() -> None:
    code = (
        "import redis.asyncio as r\n"
        "from common import BaseRedisClient\n"
        "from common.observability import tracing\n"
        "assert tracing.is_enabled()\n"
        "client = BaseRedisClient('api', r.Redis())\n"
        "assert 'send_action_pseudo_sync' in vars(client)\n"
    )
    env = {**os.environ, tracing.ENV_VAR: "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()

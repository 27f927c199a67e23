"""@event on FastAPI endpoints, through a real app (httpx's ASGI transport) and a real Redis:
published after the response, not on error, failures logged and counted."""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.messaging import Event, configure_messaging, event, get_producer
from common.messaging import endpoint as endpoint_module
from common.messaging.settings import reset_messaging
from tests.helpers import wait_for


class NewUser(BaseModel):
    email: str


class User(BaseModel):
    id: int
    email: str


@pytest.fixture
async def configured(settings: CommonAppSettings) -> AsyncIterator[CommonAppSettings]:
    """The process's messaging defaults on the test's Redis and key prefix."""
    reset_messaging()
    yield configure_messaging(
        redis_url=settings.redis_url, queue_prefix=settings.queue_prefix, service_name="users-api"
    )
    await get_producer().close()
    reset_messaging()


async def _events(redis: aioredis.Redis, settings: CommonAppSettings, topic: str) -> list[Event]:
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream(topic)
    return [Event.model_validate_json(f[b"event"]) for _, f in await redis.xrange(stream)]


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _users_app() -> FastAPI:
    app = FastAPI()

    @app.post("/users", status_code=201)
    @event("user.created", topic="user-events", key_field="id")
    async def register(body: NewUser) -> dict[str, Any]:
        """Create a user."""
        if body.email == "taken@example.com":
            raise HTTPException(status_code=409, detail="taken")
        if body.email == "boom@example.com":
            raise RuntimeError("database down")
        return {"id": 7, "email": body.email}

    return app


async def test_the_result_is_published_after_the_response_is_sent(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    app = _users_app()
    stream = QueueManager(configured.queue_prefix, configured.environment).topic_stream(
        "user-events"
    )
    published_when_sent: list[int] = []

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                published_when_sent.append(await redis.xlen(stream))  # the response is out

        await app(scope, receive, spy)

    async with _client(observed) as client:
        response = await client.post("/users", json={"email": "a@example.com"})
    assert response.status_code == 201 and response.json() == {"id": 7, "email": "a@example.com"}
    assert published_when_sent == [0]  # nothing was published before the response went out
    [published] = await _events(redis, configured, "user-events")
    assert published.name == "user.created" and published.key == "7"
    assert published.data == {"id": 7, "email": "a@example.com"}
    assert published.source == "users-api"


async def test_an_endpoint_that_raises_publishes_nothing(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with _client(_users_app()) as client:
        conflict = await client.post("/users", json={"email": "taken@example.com"})
        crash = await client.post("/users", json={"email": "boom@example.com"})
        invalid = await client.post("/users", json={"nope": 1})
        ok = await client.post("/users", json={"email": "b@example.com"})
    assert [r.status_code for r in (conflict, crash, invalid, ok)] == [409, 500, 422, 201]
    assert [e.data for e in await _events(redis, configured, "user-events")] == [
        {"id": 7, "email": "b@example.com"}
    ]


async def test_the_signature_is_kept_for_fastapi_and_the_openapi_schema() -> None:
    app = _users_app()
    [route] = [r for r in app.routes if getattr(r, "path", "") == "/users"]
    register = route.endpoint  # type: ignore[attr-defined]
    assert register.__name__ == "register" and register.__doc__ == "Create a user."
    assert list(inspect.signature(register).parameters) == ["body", "_event_background_tasks"]
    operation = app.openapi()["paths"]["/users"]["post"]
    assert "parameters" not in operation  # the hidden BackgroundTasks is not a parameter
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewUser"
    }


async def test_include_result_false_sends_only_the_key_and_models_are_serialised(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    app = FastAPI()

    @app.put("/users/{user_id}")
    @event("user.updated", topic="user-events", key_field="id", include_result=False)
    async def update(user_id: int, body: NewUser) -> User:
        return User(id=user_id, email=body.email)

    @app.delete("/users/{user_id}", status_code=204)
    @event("user.deleted", include_result=False)
    async def delete(user_id: int) -> None:
        return None

    @app.post("/users/{user_id}/ping")
    @event("user.pinged")
    def ping(user_id: int) -> User:  # a sync endpoint (run in FastAPI's thread pool)
        return User(id=user_id, email="x@example.com")

    async with _client(app) as client:
        assert (await client.put("/users/3", json={"email": "c@example.com"})).status_code == 200
        assert (await client.delete("/users/3")).status_code == 204
        assert (await client.post("/users/3/ping")).status_code == 200
    [updated] = await _events(redis, configured, "user-events")
    assert (updated.name, updated.data, updated.key) == ("user.updated", {"id": 3}, "3")
    [deleted] = await _events(redis, configured, "user.deleted")  # topic: the event's name
    assert (deleted.data, deleted.key) == ({}, None)
    [pinged] = await _events(redis, configured, "user.pinged")
    assert pinged.data == {"id": 3, "email": "x@example.com"}


async def test_a_returned_response_is_published_unless_it_is_an_error(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.post("/orders/{order_id}")
    @event("order.placed", key_field="order_id")
    async def place(order_id: int, tasks: BackgroundTasks) -> JSONResponse:
        tasks.add_task(ran.append, "own task")  # the endpoint's own BackgroundTasks is reused
        if order_id == 0:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order_id": order_id}, status_code=202)

    async with _client(app) as client:
        assert (await client.post("/orders/0")).status_code == 404
        assert (await client.post("/orders/5")).status_code == 202
    assert ran == ["own task", "own task"]
    [placed] = await _events(redis, configured, "order.placed")
    assert (placed.data, placed.key) == ({"order_id": 5}, "5")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_publish_failure_is_logged_and_counted_never_raised_into_the_request(
    settings: CommonAppSettings, caplog: pytest.LogCaptureFixture
) -> None:
    reset_messaging()
    configure_messaging(
        redis_url=f"redis://127.0.0.1:{_closed_port()}/0", queue_prefix=settings.queue_prefix
    )
    failed_before = endpoint_module.stats.failed
    try:
        with caplog.at_level(logging.ERROR, logger="common.messaging.event"):
            async with _client(_users_app()) as client:
                response = await client.post("/users", json={"email": "d@example.com"})
    finally:
        await get_producer().close()
        reset_messaging()
    assert response.status_code == 201 and response.json()["id"] == 7
    assert endpoint_module.stats.failed == failed_before + 1
    assert endpoint_module.stats.last_error is not None
    assert "ConnectionError" in endpoint_module.stats.last_error
    [record] = [r for r in caplog.records if "user.created" in r.getMessage()]
    assert record.levelno == logging.ERROR and "not published" in record.getMessage()


async def test_a_result_json_cannot_carry_is_counted_not_raised(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    app = FastAPI()

    @app.post("/big")
    @event("blob.stored")
    async def store() -> dict[str, str]:
        return {"blob": "x" * (configured.max_payload_bytes + 1)}

    failed_before = endpoint_module.stats.failed
    async with _client(app) as client:
        assert (await client.post("/big")).status_code == 200
    assert endpoint_module.stats.failed == failed_before + 1
    assert "PayloadTooLarge" in (endpoint_module.stats.last_error or "")
    assert await _events(redis, configured, "blob.stored") == []


async def test_outside_a_request_the_publish_is_scheduled_on_the_loop(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    class OrderService:
        @event("order.created", topic="order-events", key_field="id")
        async def perform_create(self, data: dict[str, Any]) -> User:
            return User(id=data["id"], email="e@example.com")

    created = await OrderService().perform_create({"id": 11})
    assert created == User(id=11, email="e@example.com")
    events = await wait_for(lambda: _events(redis, configured, "order-events"))
    assert [(e.name, e.key, e.data) for e in events] == [
        ("order.created", "11", {"id": 11, "email": "e@example.com"})
    ]


def test_bad_options_fail_when_decorating() -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        event("UserCreated")  # the topic defaults to the event's name
    with pytest.raises(ValueError, match="invalid topic"):
        event("user.created", topic="User Events")
    with pytest.raises(ValueError, match="invalid event name"):
        event("")

"""Seed 001 (Portuguese, "Messaging"): every example that can run on Redis, with its imports
changed from ``core.messaging`` to ``common.messaging``, on a real Redis.

Adaptations (the least each example needs; the seed's own code is otherwise kept):

- the seed's application objects (``User``, ``Order``, ``send_email``, ``payment_gateway``)
  are small fakes defined here;
- the bare ``db`` parameter becomes ``db: Session = Depends(get_db)`` (a providers registry for
  bare parameters is another piece of work); ``**kwargs`` is dropped with it;
- ``from core.messaging.base import Event`` becomes ``from common.messaging import Event``;
- ``core``'s ``ModelViewSet``/``@action`` do not exist here: ``register`` becomes a FastAPI
  endpoint (``request: Request``), and ``OrderViewSet`` a plain class whose base provides
  ``perform_create``;
- ``retry_delay=5`` is run with 0.05 s (the seed's exact decorator is checked separately).

Not run: ``configure_messaging(broker="kafka", bootstrap_servers=...)`` (Kafka: this toolkit
runs on Redis Streams only; the test checks the clear refusal and runs the Redis form), the
RabbitMQ/Kafka environment variables, and the ``core consumer [--topic ...]`` command line
(this toolkit's command is ``python -m common run``, tested with the command line).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from pydantic import BaseModel

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.errors import ConfigurationError
from common.messaging import (
    Depends,
    Event,
    RetryPolicy,
    configure_messaging,
    consumer,
    event,
    get_producer,
    message_handler,
    on_event,
    publish_event,
    run_workers,
)
from common.messaging.runner import subscription_of
from common.messaging.settings import reset_messaging
from tests.helpers import wait_for

# ---- the application the seed's examples assume (fakes) -------------------------------------


@dataclass
class Session:
    """A database session (fake): what the examples write, in order."""

    log: list[tuple[str, Any]] = field(default_factory=list)


DB = Session()


async def get_db() -> AsyncIterator[Session]:
    yield DB


@dataclass
class User:
    id: int
    email: str

    @classmethod
    async def create_user(cls, email: str, password: str, db: Session) -> User:
        db.log.append(("user.create", email))
        return cls(id=1, email=email)


@dataclass
class Order:
    id: int
    user_id: int
    total: float
    items: list[str]
    created_at: datetime

    @staticmethod
    async def create_welcome_order(user_id: int, db: Session) -> None:
        db.log.append(("order.welcome", user_id))

    @staticmethod
    async def mark_paid(order_id: int, db: Session) -> None:
        db.log.append(("order.paid", order_id))


sent_emails: list[dict[str, str]] = []


async def send_email(to: str, subject: str, body: str) -> None:
    sent_emails.append({"to": to, "subject": subject, "body": body})


@dataclass
class Charge:
    success: bool


@dataclass
class PaymentGateway:
    failures_left: int = 2
    charges: list[float] = field(default_factory=list)

    async def charge(self, amount: float, card_token: str) -> Charge:
        self.charges.append(amount)
        if self.failures_left:
            self.failures_left -= 1
            return Charge(success=False)
        return Charge(success=True)


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def configured(settings: CommonAppSettings) -> AsyncIterator[CommonAppSettings]:
    """``configure_messaging`` as the seed's ``src/main.py`` does (on the test's Redis)."""
    DB.log.clear()
    sent_emails.clear()
    reset_messaging()
    yield configure_messaging(
        broker="redis",
        redis_url=settings.redis_url,
        queue_prefix=settings.queue_prefix,
        service_name="my-service",
        worker_block_ms=50,
        retry_initial_delay_s=0.05,
    )
    await get_producer().close()
    reset_messaging()


async def _events(redis: aioredis.Redis, settings: CommonAppSettings, topic: str) -> list[Event]:
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream(topic)
    return [Event.model_validate_json(f[b"event"]) for _, f in await redis.xrange(stream)]


# ---- Configuracao ---------------------------------------------------------------------------


def test_configuracao_kafka_is_refused_and_redis_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="Redis Streams only"):
        configure_messaging(
            # Broker a ser usado: "kafka", "rabbitmq" ou "redis"
            broker="kafka",
            # Endereco do broker - formato depende do broker escolhido
            bootstrap_servers="localhost:9092",
        )
    assert configure_messaging(broker="redis").service_name == "my-service"  # unchanged


# ---- @event - Publicacao Automatica ---------------------------------------------------------


async def test_event_publicacao_automatica(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    app = FastAPI()

    @app.post("/users/register")
    @event("user.created", topic="user-events", key_field="id")
    async def register(request: Request, db: Session = Depends(get_db)) -> dict[str, Any]:
        body = await request.json()
        user = await User.create_user(
            email=body["email"],
            password=body["password"],
            db=db,
        )
        # O retorno deste metodo se torna o "data" do evento
        return {"id": user.id, "email": user.email}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/users/register", json={"email": "user@example.com", "password": "x"}
        )
    assert response.json() == {"id": 1, "email": "user@example.com"}
    [published] = await _events(redis, configured, "user-events")
    # Estrutura do evento publicado (the seed's JSON), plus the key from key_field
    assert published.name == "user.created"
    assert published.data == {"id": 1, "email": "user@example.com"}
    assert published.source == "my-service" and published.timestamp.tzinfo is not None
    assert published.key == "1"


# ---- Publicacao Manual / publish_event ------------------------------------------------------


async def test_publicacao_manual_and_publish_event(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async def send_order_created(order_id: int, user_id: int) -> None:
        producer = get_producer()

        # send() e async - aguarda confirmacao do broker
        # Em caso de falha, levanta excecao
        await producer.send(
            topic="orders.created",
            message={
                "order_id": order_id,
                "user_id": user_id,
                "timestamp": datetime.utcnow().isoformat(),
            },
        )

    async def notify_user_updated(user_id: int, email: str) -> None:
        await publish_event(
            event_name="user.updated",
            data={"id": user_id, "email": email},
            topic="user-events",
        )

    await send_order_created(order_id=10, user_id=1)
    await notify_user_updated(user_id=1, email="new@example.com")
    [order] = await _events(redis, configured, "orders.created")
    assert order.data["order_id"] == 10 and order.data["user_id"] == 1
    [updated] = await _events(redis, configured, "user-events")
    assert (updated.name, updated.data) == ("user.updated", {"id": 1, "email": "new@example.com"})


# ---- @consumer + @on_event ------------------------------------------------------------------


async def test_consumer_on_event(configured: CommonAppSettings) -> None:
    @consumer("order-service", topics=["user-events", "payment-events"])
    class OrderEventsConsumer:
        @on_event("user.created")
        async def handle_user_created(self, event: Event, db: Session = Depends(get_db)) -> None:
            await Order.create_welcome_order(
                user_id=event.data["id"],
                db=db,
            )

        @on_event("payment.completed")
        async def handle_payment_completed(
            self, event: Event, db: Session = Depends(get_db)
        ) -> None:
            await Order.mark_paid(
                order_id=event.data["order_id"],
                db=db,
            )

    async with run_workers(OrderEventsConsumer):
        await publish_event("user.created", {"id": 1, "email": "a@b.c"}, topic="user-events")
        await publish_event("user.updated", {"id": 1}, topic="user-events")  # nobody handles it
        await publish_event("payment.completed", {"order_id": 10}, topic="payment-events")
        await wait_for(lambda: len(DB.log) == 2)
    assert sorted(DB.log) == [("order.paid", 10), ("order.welcome", 1)]


# ---- @message_handler, retry, multiple topics, typed messages -------------------------------


async def test_message_handler(configured: CommonAppSettings) -> None:
    @message_handler(topic="orders.created")
    async def handle_order_created(message: dict[str, Any], db: Session = Depends(get_db)) -> None:
        order_id = message["order_id"]

        await send_email(
            to=message["user_email"],
            subject="Order Confirmed",
            body=f"Order #{order_id} received.",
        )

    async with run_workers(handle_order_created):
        await get_producer().send("orders.created", {"order_id": 3, "user_email": "u@x.io"})
        await wait_for(lambda: len(sent_emails) == 1)
    assert sent_emails == [
        {"to": "u@x.io", "subject": "Order Confirmed", "body": "Order #3 received."}
    ]


async def test_retry_em_handlers(configured: CommonAppSettings) -> None:
    payment_gateway = PaymentGateway(failures_left=2)

    @message_handler(
        topic="payments.process",
        max_retries=3,  # Numero maximo de tentativas
        retry_delay=5,  # Segundos entre tentativas (backoff linear)
    )
    async def process_payment(message: dict[str, Any], db: Session = Depends(get_db)) -> None:
        result = await payment_gateway.charge(
            amount=message["amount"],
            card_token=message["card_token"],
        )

        if not result.success:
            # Levantar excecao aciona retry
            raise Exception("Payment failed")

    # "O delay e linear (sempre retry_delay segundos)": 5 s before every retry, 3 attempts.
    handler = subscription_of(process_payment).handler
    assert handler is not None
    policy = handler.policy_from(RetryPolicy.from_settings(configured))
    assert policy is not None and policy.max_retries == 3
    assert [policy.get_delay(n) for n in (1, 2, 3)] == [5.0, 5.0, 5.0]

    @message_handler(topic="payments.process", max_retries=3, retry_delay=0.05)  # 0.05 s: fast
    async def process_payment_fast(message: dict[str, Any], db: Session = Depends(get_db)) -> None:
        result = await payment_gateway.charge(
            amount=message["amount"],
            card_token=message["card_token"],
        )
        if not result.success:
            raise Exception("Payment failed")

    async with run_workers(process_payment_fast) as pool:
        await get_producer().send("payments.process", {"amount": 9.5, "card_token": "tok"})
        [subscriber] = pool.subscribers(process_payment_fast)
        await wait_for(lambda: subscriber.stats.handled == 1)
    assert payment_gateway.charges == [9.5, 9.5, 9.5]  # failed twice, succeeded the third time


async def test_multiplos_topicos(configured: CommonAppSettings) -> None:
    received: list[dict[str, Any]] = []

    @message_handler(topic=["orders.created", "orders.updated"])
    async def sync_inventory(message: dict[str, Any], db: Session = Depends(get_db)) -> None:
        received.append(message)  # the seed's body is `pass`

    async with run_workers(sync_inventory):
        await get_producer().send("orders.created", {"order_id": 1})
        await get_producer().send("orders.updated", {"order_id": 1, "total": 3})
        await wait_for(lambda: len(received) == 2)
    assert sorted(received, key=len) == [{"order_id": 1}, {"order_id": 1, "total": 3}]


class OrderCreatedEvent(BaseModel):
    """Schema da mensagem esperada."""

    order_id: int
    user_id: int
    total: float


async def test_mensagens_tipadas(
    configured: CommonAppSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    @message_handler(topic="orders.created", schema=OrderCreatedEvent)
    async def handle_order(message: OrderCreatedEvent, db: Session = Depends(get_db)) -> None:
        print(f"Order {message.order_id} total: {message.total}")

    async with run_workers(handle_order) as pool:
        await get_producer().send("orders.created", {"order_id": "?", "user_id": 1, "total": 1})
        await get_producer().send("orders.created", {"order_id": 4, "user_id": 1, "total": 25})
        [subscriber] = pool.subscribers(handle_order)
        await wait_for(lambda: subscriber.stats.handled == 1)
        # "Mensagem e logada como erro e descartada (nao vai para retry)": dead-lettered
        await wait_for(lambda: subscriber.stats.dead_lettered == {"malformed": 1})
    assert subscriber.stats.failed == 0
    assert capsys.readouterr().out == "Order 4 total: 25.0\n"


# ---- Exemplo Completo em ViewSet ------------------------------------------------------------


async def test_exemplo_completo_em_viewset(
    configured: CommonAppSettings, redis: aioredis.Redis
) -> None:
    class ModelViewSet:  # the one method of core's ModelViewSet these examples use (fake)
        async def perform_create(self, data: dict[str, Any], db: Session) -> Order:
            return Order(
                id=5,
                user_id=data["user_id"],
                total=data["total"],
                items=data["items"],
                created_at=datetime(2026, 2, 1, 12, 0),
            )

    class OrderViewSet(ModelViewSet):
        model = Order

        # Abordagem 1: @event (recomendado para casos simples)
        @event("order.created", topic="order-events", key_field="id")
        async def perform_create(self, data: dict[str, Any], db: Session) -> Order:
            order = await super().perform_create(data, db)
            return order  # Este objeto e serializado e enviado como evento

        # Abordagem 2: get_producer() (para payloads customizados)
        async def perform_create_manual(self, data: dict[str, Any], db: Session) -> Order:
            order = await super().perform_create(data, db)

            producer = get_producer()
            await producer.send(
                "orders.created",
                {
                    "order_id": order.id,
                    "user_id": order.user_id,
                    "total": float(order.total),
                    "items_count": len(order.items),  # Dado adicional
                    "created_at": order.created_at.isoformat(),
                },
            )

            return order

    data = {"user_id": 2, "total": 30, "items": ["a", "b"]}
    view = OrderViewSet()
    created = await view.perform_create(data, DB)  # outside a request: scheduled on the loop
    assert created.id == 5
    await view.perform_create_manual(data, DB)
    [auto] = await wait_for(lambda: _events(redis, configured, "order-events"))
    assert (auto.name, auto.key) == ("order.created", "5")
    assert auto.data == {
        "id": 5,
        "user_id": 2,
        "total": 30,
        "items": ["a", "b"],
        "created_at": "2026-02-01T12:00:00",
    }
    [manual] = await _events(redis, configured, "orders.created")
    assert manual.data == {
        "order_id": 5,
        "user_id": 2,
        "total": 30.0,
        "items_count": 2,
        "created_at": "2026-02-01T12:00:00",
    }

"""Seed 000 (``../shared/seeds/000_eadc7d72cb6ace94.txt``, "Async Listeners") on Redis.

Each listener of the seed runs here with its imports changed to ``common.messaging``
(``vega.listeners`` and ``vega.di`` both map to it). What the seed leaves to the application is
written here as the application would: the domain services and repositories it imports
(``domain.services`` ...), the helper methods its snippets call without showing
(``self.validate_order`` ...), and the registration of providers (the seed's ``config.py``
container). Otherwise the seed's code is unchanged (a ``# seed:`` comment marks each
adaptation).

Not run, and why:

- the SQS driver, its ``@bean``/``Container`` configuration, LocalStack, the boto3 DLQ
  (``RedrivePolicy``) and publishing set-up, ``RegisterUser`` publishing with boto3, the
  RabbitMQ and custom ``QueueDriver`` drivers, ``MockQueueDriver`` and ``Summon(QueueDriver)``:
  SQS/RabbitMQ drivers are out of scope (there is one driver: Redis Streams; dead letters go to
  the group's dead-letter stream, and ``publish`` replaces ``sqs.send_message``);
- ``ResizeImageListener`` (Pillow), the structlog and prometheus_client snippets, and the
  aiofiles ``FileListener``: third-party libraries that are not dependencies of this toolkit
  (the listener machinery they use is covered by the others);
- the ``vega listener ...`` and ``vega generate listener`` commands: ``python -m common run``
  and ``list`` are the command line here.
"""

import asyncio
import logging
import sys
import textwrap
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings
from common.messaging import (
    JobListener,
    Message,
    MessageContext,
    Scope,
    bind,
    discover_workers,
    injectable,
    injection,
    job_listener,
    provide,
    run_workers,
)
from common.messaging.producer import Producer
from common.workers.delays import delay_set_key
from tests.helpers import wait_for

logger = logging.getLogger("seed000")


@pytest.fixture(autouse=True)
def _restore_providers() -> Iterator[None]:
    yield
    injection.reset_providers()


def _fast(settings: CommonAppSettings) -> CommonAppSettings:
    return settings.model_copy(update={"retry_initial_delay_s": 0.01, "claim_interval_s": 0.1})


def _handled(pool: Any, target: Any) -> int:
    return sum(c.stats.handled for c in pool.subscribers(target))


def _dead_count(pool: Any, target: Any, reason: str) -> int:
    return sum(c.stats.dead_lettered.get(reason, 0) for c in pool.subscribers(target))


# -- what the seed's application provides (its domain layer) ----------------------------------


class EmailService:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_welcome(self, to: str, name: str) -> None:
        self.sent.append({"to": to, "name": name})

    async def send(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    async def send_order_confirmation(self, email: str, order: dict[str, Any]) -> None:
        self.sent.append({"to": email, "order": order["order_id"]})


class Record(dict[str, Any]):
    """A stored row (attribute access, as the seed's repositories return)."""

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class OrderRepository:
    def __init__(self) -> None:
        self.orders: dict[str, Record] = {}

    async def get(self, order_id: str) -> Record:
        return self.orders.setdefault(order_id, Record(order_id=order_id, status="new"))

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        self.orders[data["order_id"]] = Record(data)
        return data

    async def save(self, order: Record) -> None:
        self.orders[order.order_id] = order


class UserRepository:
    async def get(self, user_id: str) -> Record:
        return Record(id=user_id, email=f"{user_id}@example.com")


class PaymentService:
    def __init__(self) -> None:
        self.charged: list[str] = []

    async def charge(self, user: Record, order: dict[str, Any]) -> str:
        self.charged.append(order["order_id"])
        return "paid"

    async def process(self, body: dict[str, Any]) -> None:
        raise ConnectionError("payment gateway down")


class APIClient:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, endpoint: str) -> str:
        self.calls.append(endpoint)
        if len(self.calls) < 3:
            raise ConnectionError("rate limited")
        return "ok"


class StorageService:
    def __init__(self) -> None:
        self.uploaded: list[bytes] = []

    async def download(self, url: str) -> bytes:
        return url.encode()

    async def upload(self, data: bytes) -> None:
        self.uploaded.append(data)


class AnalyticsRepository:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def save_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class PaymentTemporaryError(Exception):
    pass


class ValidationError(Exception):
    pass


# -- Quick Start, and "Da codice Python" (discovery, then running) ----------------------------


async def test_quick_start_listener_is_discovered_from_its_package_and_sends_the_emails(
    settings: CommonAppSettings, producer: Producer, tmp_path: Path
) -> None:
    package = tmp_path / "seed000_infrastructure" / "listeners"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (tmp_path / "seed000_domain").mkdir()
    (tmp_path / "seed000_domain" / "__init__.py").write_text("")
    (tmp_path / "seed000_domain" / "services.py").write_text(
        "from tests.messaging.test_seed_000 import EmailService\n"
    )
    (package / "send_welcome_email_listener.py").write_text(
        textwrap.dedent(
            '''
            from common.messaging import JobListener, job_listener, Message  # seed: vega.listeners
            from common.messaging import bind  # seed: vega.di
            from seed000_domain.services import EmailService  # seed: domain.services

            @job_listener(queue="welcome-emails", workers=3)
            class SendWelcomeEmailListener(JobListener):
                """Invia email di benvenuto ai nuovi utenti"""

                @bind
                async def handle(self, message: Message, email_service: EmailService) -> None:
                    data = message.body

                    await email_service.send_welcome(
                        to=data['email'],
                        name=data['name']
                    )

                    # Messaggio auto-acknowledged se successo!
            '''
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        email = EmailService()
        provide(EmailService, lambda: email, scope="singleton")  # seed: import config

        listeners = discover_workers("seed000_infrastructure")  # seed: discover_listeners
        assert [s.kind for s in listeners] == ["listener"]
        async with run_workers(*listeners, settings=settings) as pool:  # seed: ListenerManager
            assert len(pool.workers) == 3
            await producer.send(
                "welcome-emails", {"user_id": "123", "email": "user@example.com", "name": "John"}
            )
            await wait_for(lambda: email.sent == [{"to": "user@example.com", "name": "John"}])
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(("seed000_",))]:
            del sys.modules[name]


def test_the_decorator_parameters_map_onto_the_subscription() -> None:
    @job_listener(
        queue="nome-coda",  # Nome della coda da ascoltare
        workers=3,  # Numero worker concorrenti (default: 1)
        auto_ack=True,  # Auto-acknowledge su successo (default: True)
        visibility_timeout=30,  # Timeout visibilità in secondi (default: 30)
        max_messages=1,  # Max messaggi per poll (default: 1)
        retry_on_error=False,  # Retry automatico su errore (default: False)
        max_retries=3,  # Tentativi massimi (default: 3)
    )
    class NomeCodaListener(JobListener):  # seed: the decorator alone
        async def handle(self, message: Message) -> None: ...

    sub = NomeCodaListener.__subscription__
    assert sub is not None and sub.handler is not None
    assert (sub.topics, sub.consumers, sub.auto_ack) == (("nome-coda",), 3, True)
    assert (sub.visibility_timeout_s, sub.max_messages) == (30, 1)
    assert sub.handler.retry_on_error is False and sub.handler.retry == {"max_retries": 3}


# -- Pattern d'uso ----------------------------------------------------------------------------


async def test_pattern_1_auto_acknowledgment(
    settings: CommonAppSettings, producer: Producer
) -> None:
    email = EmailService()
    provide(EmailService, lambda: email, scope="singleton")

    @job_listener(queue="email-queue", auto_ack=True)
    class SendEmailListener(JobListener):
        @bind
        async def handle(self, message: Message, email_service: EmailService):
            # Processa messaggio
            await email_service.send(**message.body)
            # ✅ Auto-acknowledged se successo
            # ❌ Auto-rejected se eccezione

    async with run_workers(SendEmailListener, settings=settings) as pool:
        await producer.send("email-queue", {"to": "a@example.com", "subject": "Hi"})
        await wait_for(lambda: _handled(pool, SendEmailListener) == 1)
    assert email.sent == [{"to": "a@example.com", "subject": "Hi"}]


async def test_pattern_2_manual_acknowledgment(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    repo = OrderRepository()
    provide(OrderRepository, lambda: repo, scope="singleton")
    shipped: list[str] = []

    @job_listener(queue="orders", auto_ack=False, workers=5)
    class ProcessOrderListener(JobListener):
        @bind
        async def handle(
            self, message: Message, context: MessageContext, order_repo: OrderRepository
        ):
            try:
                order = await order_repo.get(message.body["order_id"])
                await self.validate_order(order)
                await self.process_payment(order)
                await self.ship_order(order)

                # ✅ Successo completo
                await context.ack()

            except PaymentTemporaryError:
                # 💳 Errore temporaneo pagamento - riprova dopo
                await context.reject(requeue=True, visibility_timeout=300)

            except ValidationError as e:
                # ❌ Errore validazione - non ritentare (DLQ)
                await context.reject(requeue=False)
                logger.error(f"Invalid order: {e}")

        # seed: the helpers the snippet calls
        async def validate_order(self, order: Record) -> None:
            if order.order_id.startswith("bad"):
                raise ValidationError(order.order_id)

        async def process_payment(self, order: Record) -> None:
            if order.order_id.startswith("later"):
                raise PaymentTemporaryError(order.order_id)

        async def ship_order(self, order: Record) -> None:
            shipped.append(order.order_id)

    async with run_workers(ProcessOrderListener, settings=settings) as pool:
        for order_id in ("ok-1", "bad-1", "later-1"):
            await producer.send("orders", {"order_id": order_id})
        await wait_for(lambda: _handled(pool, ProcessOrderListener) == 1)
        await wait_for(lambda: _dead_count(pool, ProcessOrderListener, "rejected") == 1)
        [consumer, *_] = pool.subscribers(ProcessOrderListener)
        delays = delay_set_key(consumer.stream, consumer.group)
        [(_, due_ms)] = await wait_for(lambda: redis.zrange(delays, 0, -1, withscores=True))
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
    assert shipped == ["ok-1"]
    assert 290_000 < due_ms - now_ms <= 300_000  # retried in 5 minutes, as asked


async def test_pattern_3_retry_with_backoff(
    settings: CommonAppSettings, producer: Producer
) -> None:
    client = APIClient()
    provide(APIClient, lambda: client, scope="singleton")

    @job_listener(
        queue="api-calls", retry_on_error=True, max_retries=5, workers=10, visibility_timeout=60
    )
    class CallExternalAPIListener(JobListener):
        @bind
        async def handle(self, message: Message, api_client: APIClient):
            # Retry automatico fino a 5 volte con backoff esponenziale
            result = await api_client.call(message.body["endpoint"])  # noqa: F841

            # Se fallisce 5 volte → rejected

    async with run_workers(CallExternalAPIListener, settings=_fast(settings)) as pool:
        await producer.send("api-calls", {"endpoint": "/sync"})
        await wait_for(lambda: _handled(pool, CallExternalAPIListener) == 1)
    assert client.calls == ["/sync"] * 3  # failed twice, then succeeded


async def test_pattern_4_long_running_job(settings: CommonAppSettings, producer: Producer) -> None:
    storage = StorageService()
    provide(StorageService, lambda: storage)  # scoped: one per message (the same object)

    @job_listener(
        queue="video-processing",
        visibility_timeout=300,  # 5 minuti iniziali
        workers=2,
    )
    class ProcessVideoListener(JobListener):
        @bind
        async def handle(self, message: Message, context: MessageContext, storage: StorageService):
            video_url = message.body["video_url"]

            # Estendi timeout per lavoro lungo
            await context.extend_visibility(600)  # Altri 10 minuti

            # Processing pesante
            video = await storage.download(video_url)
            processed = await self.encode_video(video)  # Lungo!
            await storage.upload(processed)

            await context.ack()

        async def encode_video(self, video: bytes) -> bytes:  # seed: not shown
            await asyncio.sleep(0.01)
            return video.upper()

    async with run_workers(ProcessVideoListener, settings=settings) as pool:
        await producer.send("video-processing", {"video_url": "s3://v.mp4"})
        await wait_for(lambda: _handled(pool, ProcessVideoListener) == 1)
    assert storage.uploaded == [b"S3://V.MP4"]


async def test_pattern_5_batch_processing(settings: CommonAppSettings, producer: Producer) -> None:
    repo = AnalyticsRepository()
    provide(AnalyticsRepository, lambda: repo, scope="singleton")

    @job_listener(
        queue="analytics-events",
        max_messages=10,  # Ricevi fino a 10 messaggi per volta
        workers=3,
    )
    class AnalyticsListener(JobListener):
        @bind
        async def handle(self, message: Message, analytics_repo: AnalyticsRepository):
            # Anche se richiedi 10 messaggi, ogni messaggio viene
            # processato individualmente dal framework
            event = message.body
            await analytics_repo.save_event(event)

    async with run_workers(AnalyticsListener, settings=settings) as pool:
        for n in range(25):
            await producer.send("analytics-events", {"n": n})
        await wait_for(lambda: _handled(pool, AnalyticsListener) == 25)
        assert all(c.settings.worker_batch_size == 10 for c in pool.subscribers(AnalyticsListener))
    assert sorted(e["n"] for e in repo.events) == list(range(25))


# -- Dependency Injection ---------------------------------------------------------------------


async def test_dependency_injection_of_four_services(
    settings: CommonAppSettings, producer: Producer
) -> None:
    email, payments = EmailService(), PaymentService()
    provide(UserRepository)  # scoped: a new one per message
    provide(OrderRepository)
    provide(EmailService, lambda: email, scope="singleton")
    provide(PaymentService, lambda: payments, scope="singleton")

    @job_listener(queue="orders")
    class ProcessOrderListener(JobListener):
        @bind
        async def handle(
            self,
            message: Message,
            # Tutte queste dipendenze sono auto-iniettate!
            user_repo: UserRepository,
            order_repo: OrderRepository,
            email_service: EmailService,
            payment_service: PaymentService,
        ):
            order_data = message.body

            user = await user_repo.get(order_data["user_id"])
            order = await order_repo.create(order_data)

            payment = await payment_service.charge(user, order)  # noqa: F841

            await email_service.send_order_confirmation(user.email, order)

    async with run_workers(ProcessOrderListener, settings=settings):
        await producer.send("orders", {"order_id": "o-7", "user_id": "u1"})
        await wait_for(lambda: email.sent == [{"to": "u1@example.com", "order": "o-7"}])
    assert payments.charged == ["o-7"]


async def test_dependency_scopes(settings: CommonAppSettings, producer: Producer) -> None:
    @injectable(scope=Scope.SINGLETON)
    class EmailService:
        """Condiviso tra tutti i worker e messaggi"""

        pass

    @injectable(scope=Scope.SCOPED)
    class DatabaseSession:
        """Nuovo per ogni messaggio processato"""

        pass

    @injectable(scope=Scope.TRANSIENT)
    class RequestTracker:
        """Nuovo ad ogni uso"""

        pass

    class Repo:  # seed: something using the session, to show it is shared in one message
        def __init__(self, session: DatabaseSession, tracker: RequestTracker) -> None:
            self.session, self.tracker = session, tracker

    provide(Repo)
    seen: list[tuple[Any, ...]] = []

    @job_listener(queue="scopes", workers=2)
    class ScopesListener(JobListener):  # seed: a listener using the three
        @bind
        async def handle(
            self,
            message: Message,
            email: EmailService,
            session: DatabaseSession,
            tracker: RequestTracker,
            repo: Repo,
        ) -> None:
            seen.append((email, session, tracker, repo))

    async with run_workers(ScopesListener, settings=settings):
        for n in range(4):
            await producer.send("scopes", {"n": n})
        await wait_for(lambda: len(seen) == 4)
    assert len({id(email) for email, *_ in seen}) == 1  # one per process
    assert all(repo.session is session for _, session, _, repo in seen)  # one per message
    assert len({id(session) for _, session, _, _ in seen}) == 4
    assert all(repo.tracker is not tracker for _, _, tracker, repo in seen)  # one per use


# -- Lifecycle hooks --------------------------------------------------------------------------


class EmailClient:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    @classmethod
    async def connect(cls) -> "EmailClient":
        return cls()

    async def send(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    async def close(self) -> None:
        self.closed = True


async def test_on_startup_and_on_shutdown_run_once_around_the_workers(
    settings: CommonAppSettings, producer: Producer
) -> None:
    @job_listener(queue="emails")
    class EmailListener(JobListener):
        async def on_startup(self) -> None:
            """
            Inizializzazione:
            - Connessioni database
            - Cache warming
            - Validazione configurazione
            """
            self.email_client = await EmailClient.connect()
            self.template_cache = await self.load_templates()
            logger.info("EmailListener started successfully")

        # seed: the second snippet's on_shutdown, on the same class
        async def on_shutdown(self) -> None:
            """
            Cleanup:
            - Chiudi connessioni
            - Flush buffer
            - Salva stato
            """
            await self.email_client.close()
            await self.flush_metrics()
            logger.info("EmailListener stopped gracefully")

        @bind
        async def handle(self, message: Message):
            # Usa self.email_client inizializzato
            await self.email_client.send(**message.body)

        async def load_templates(self) -> dict[str, str]:  # seed: not shown
            return {"welcome": "<h1>Hi</h1>"}

        async def flush_metrics(self) -> None:  # seed: not shown
            self.flushed = True

    async with run_workers(EmailListener, settings=settings) as pool:
        listener = pool.subscribers(EmailListener)[0].subscription.handler.func.__self__
        await producer.send("emails", {"to": "a@example.com"})
        await wait_for(lambda: listener.email_client.sent == [{"to": "a@example.com"}])
    assert listener.email_client.closed and listener.flushed


async def test_on_error_runs_once_after_the_last_retry(
    settings: CommonAppSettings, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: list[BaseException] = []
    sentry_sdk = types.ModuleType("sentry_sdk")  # seed: a stand-in for Sentry
    sentry_sdk.capture_exception = captured.append
    monkeypatch.setitem(sys.modules, "sentry_sdk", sentry_sdk)
    provide(PaymentService, scope="singleton")
    notified: list[tuple[str, str, Any]] = []

    @job_listener(queue="payments", retry_on_error=True, max_retries=3)
    class PaymentListener(JobListener):
        async def on_error(self, message: Message, error: Exception) -> None:
            """
            Gestione errori:
            - Logging su Sentry/DataDog
            - Notifiche team
            - Salvataggio su DLQ custom
            """
            import sentry_sdk

            # Log su Sentry
            sentry_sdk.capture_exception(error)

            # Notifica team
            await self.notify_team(
                f"Payment failed after 3 retries: {message.id}",
                error=str(error),
                order_id=message.body.get("order_id"),
            )

            # Salva per analisi
            await self.save_failed_message(message, error)

        @bind
        async def handle(self, message: Message, payment_service: PaymentService):
            await payment_service.process(message.body)

        async def notify_team(self, text: str, error: str, order_id: Any) -> None:  # seed
            notified.append((text, error, order_id))

        async def save_failed_message(self, message: Message, error: Exception) -> None:
            pass  # seed: not shown

    async with run_workers(PaymentListener, settings=_fast(settings)) as pool:
        await producer.send("payments", {"order_id": "o-9"})
        await wait_for(lambda: _dead_count(pool, PaymentListener, "max_retries") == 1)
    [(text, error, order_id)] = notified
    assert text.startswith("Payment failed after 3 retries: ") and order_id == "o-9"
    assert error == "payment gateway down" and len(captured) == 1


# -- Error handling ---------------------------------------------------------------------------


class NotificationService:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, body: dict[str, Any]) -> None:
        if body.get("broken"):
            raise ValueError("no such user")
        self.sent.append(body)


class TemporaryNetworkError(Exception):
    pass


class PaymentDeclined(Exception):
    pass


class OrderService:
    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def process(self, body: dict[str, Any]) -> None:
        kind = body["kind"]
        self.attempts[kind] = self.attempts.get(kind, 0) + 1
        if kind == "flaky" and self.attempts[kind] == 1:
            raise TemporaryNetworkError()
        if kind == "invalid":
            raise ValidationError()
        if kind == "declined":
            raise PaymentDeclined()


async def test_error_handling_strategies(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    notifier, service, api = NotificationService(), OrderService(), APIClient()
    provide(NotificationService, lambda: notifier, scope="singleton")
    provide(OrderService, lambda: service, scope="singleton")
    provide("api", lambda: api, scope="singleton")  # seed: `api: APIClient`, by name here
    declined: list[dict[str, Any]] = []

    @job_listener(queue="notifications", auto_ack=True)
    class NotificationListener(JobListener):
        @bind
        async def handle(self, message: Message, notifier: NotificationService):
            # Qualsiasi eccezione → reject e log
            await notifier.send(message.body)

    @job_listener(queue="api-sync", retry_on_error=True, max_retries=5)
    class APISyncListener(JobListener):
        @bind
        async def handle(self, message: Message, api):
            # Retry automatico per QUALSIASI eccezione
            await api.call(message.body["endpoint"])  # seed: api.sync(...)

    @job_listener(queue="orders", auto_ack=False)
    class OrderListener(JobListener):
        @bind
        async def handle(self, message: Message, context: MessageContext, service: OrderService):
            try:
                await service.process(message.body)
                await context.ack()

            except TemporaryNetworkError:
                # Retry: errore temporaneo
                await context.reject(requeue=True)

            except ValidationError as e:
                # No retry: errore permanente → DLQ
                await context.reject(requeue=False)
                logger.error(f"Invalid order: {e}")

            except PaymentDeclined:
                # No retry ma notifica utente
                await context.reject(requeue=False)
                await self.notify_user_payment_failed(message.body)

        async def notify_user_payment_failed(self, body: dict[str, Any]) -> None:  # seed
            declined.append(body)

    targets = (NotificationListener, APISyncListener, OrderListener)
    async with run_workers(*targets, settings=_fast(settings)) as pool:
        await producer.send("notifications", {"to": "a"})
        await producer.send("notifications", {"broken": True})
        await producer.send("api-sync", {"endpoint": "/users"})
        for kind in ("ok", "flaky", "invalid", "declined"):
            await producer.send("orders", {"kind": kind})
        await wait_for(lambda: _dead_count(pool, NotificationListener, "non_retryable") == 1)
        await wait_for(lambda: _handled(pool, APISyncListener) == 1)
        await wait_for(lambda: _handled(pool, OrderListener) == 2)
        await wait_for(lambda: _dead_count(pool, OrderListener, "rejected") == 2)
    assert notifier.sent == [{"to": "a"}]  # the failed one is dead-lettered, not lost
    assert api.calls == ["/users"] * 3
    assert service.attempts == {"ok": 1, "flaky": 2, "invalid": 1, "declined": 1}
    assert declined == [{"kind": "declined"}]


async def test_a_listener_on_a_dead_letter_queue(
    settings: CommonAppSettings, producer: Producer
) -> None:
    reviewed: list[Any] = []

    @job_listener(queue="orders-dlq", workers=1)
    class OrderDLQListener(JobListener):
        """Gestisce ordini falliti per investigazione"""

        async def handle(self, message: Message):
            # Log per investigazione
            logger.error(f"Order in DLQ: {message.body}")

            # Salva in database per review manuale
            await self.save_for_manual_review(message)

            # Notifica team
            await self.alert_team(message)

        async def save_for_manual_review(self, message: Message) -> None:  # seed: not shown
            reviewed.append(message.body)

        async def alert_team(self, message: Message) -> None:  # seed: not shown
            pass

    async with run_workers(OrderDLQListener, settings=settings):
        await producer.send("orders-dlq", {"order_id": "o-1", "error": "boom"})
        await wait_for(lambda: reviewed == [{"order_id": "o-1", "error": "boom"}])


# -- Esempi pratici ---------------------------------------------------------------------------


class AbstractEmailService(ABC):  # seed: domain/services/email_service.py's EmailService
    @abstractmethod
    async def send_email(self, to: str, subject: str, body: str) -> None:
        pass


async def test_example_1_email_notifications_through_sendgrid(
    settings: CommonAppSettings, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    EmailService = AbstractEmailService
    requests: list[httpx.Request] = []

    def sendgrid(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(202)

    real_client = httpx.AsyncClient
    monkeypatch.setattr(  # seed: no network in a test
        httpx, "AsyncClient", lambda: real_client(transport=httpx.MockTransport(sendgrid))
    )
    provide("api_key", lambda: "SG.key", scope="singleton")  # seed: the app's configuration

    # infrastructure/services/sendgrid_email_service.py
    @injectable(scope=Scope.SINGLETON)
    class SendgridEmailService(EmailService):
        def __init__(self, api_key: str):
            self.api_key = api_key
            self.client = httpx.AsyncClient()

        async def send_email(self, to: str, subject: str, body: str):
            response = await self.client.post(
                "https://api.sendgrid.com/v3/mail/send",
                headers={"Authorization": f"Bearer {self.api_key}"},
                json={
                    "personalizations": [{"to": [{"email": to}]}],
                    "from": {"email": "noreply@myapp.com"},
                    "subject": subject,
                    "content": [{"type": "text/html", "value": body}],
                },
            )
            response.raise_for_status()

    # infrastructure/listeners/send_email_listener.py
    @job_listener(queue="email-notifications", workers=5, retry_on_error=True, max_retries=3)
    class SendEmailListener(JobListener):
        @bind
        async def handle(self, message: Message, email_service: EmailService):
            data = message.body
            await email_service.send_email(
                to=data["to"], subject=data["subject"], body=data["body"]
            )

        async def on_error(self, message: Message, error: Exception):
            # Log errore per debugging
            logger.error(f"Failed to send email to {message.body.get('to')}: {error}")

    async with run_workers(SendEmailListener, settings=settings):
        # seed: publish instead of boto3's sqs.send_message
        await producer.send(
            "email-notifications",
            {"to": "user@example.com", "subject": "Welcome to MyApp!", "body": "<h1>Hi!</h1>"},
        )
        await wait_for(lambda: len(requests) == 1)
    [request] = requests
    assert request.headers["Authorization"] == "Bearer SG.key"
    assert orjson.loads(request.content)["personalizations"] == [
        {"to": [{"email": "user@example.com"}]}
    ]


class PaymentRepository:
    def __init__(self) -> None:
        self.payments: dict[str, Record] = {}

    async def get_by_stripe_id(self, stripe_id: str) -> Record:
        return self.payments.setdefault(
            stripe_id, Record(id=stripe_id, status="pending", user_id="u1")
        )

    async def save(self, payment: Record) -> None:
        self.payments[payment.id] = payment


async def test_example_3_webhook_handler(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    payments = PaymentRepository()
    provide(PaymentRepository, lambda: payments, scope="singleton")
    provide(UserRepository)
    receipts: list[str] = []
    pages: list[str] = []

    # seed: `import stripe` dropped (unused by the listener, and not a dependency here)
    @job_listener(
        queue="stripe-webhooks",
        workers=2,
        retry_on_error=False,  # No retry per webhook (idempotency)
    )
    class StripeWebhookListener(JobListener):
        @bind
        async def handle(
            self, message: Message, payment_repo: PaymentRepository, user_repo: UserRepository
        ):
            event_type = message.body["event_type"]
            event_data = message.body["data"]

            if event_type == "payment_intent.succeeded":
                await self.handle_payment_success(event_data, payment_repo, user_repo)

            elif event_type == "payment_intent.payment_failed":
                await self.handle_payment_failed(event_data, payment_repo)

            elif event_type == "customer.subscription.created":
                await self.handle_subscription_created(event_data, user_repo)

            # Messaggio auto-acknowledged se successo

        async def handle_payment_success(self, data, payment_repo, user_repo):
            payment_intent_id = data["id"]

            # Aggiorna database
            payment = await payment_repo.get_by_stripe_id(payment_intent_id)
            payment.status = "succeeded"
            await payment_repo.save(payment)

            # Notifica utente
            user = await user_repo.get(payment.user_id)
            await self.send_receipt(user.email, payment)

        async def on_error(self, message: Message, error: Exception):
            # Webhook falliti sono critici - alert immediato
            await self.page_on_call_engineer(
                f"Stripe webhook failed: {message.body['event_id']}", error=str(error)
            )

        # seed: the helpers the snippet calls
        async def handle_payment_failed(self, data: Any, payment_repo: Any) -> None:
            raise RuntimeError("cannot record the failure")

        async def handle_subscription_created(self, data: Any, user_repo: Any) -> None:
            pass

        async def send_receipt(self, email: str, payment: Record) -> None:
            receipts.append(f"{email}:{payment.id}")

        async def page_on_call_engineer(self, text: str, error: str) -> None:
            pages.append(text)

    async with run_workers(StripeWebhookListener, settings=settings) as pool:
        await producer.send(
            "stripe-webhooks",
            {"event_type": "payment_intent.succeeded", "event_id": "evt_1", "data": {"id": "pi_1"}},
        )
        await producer.send(
            "stripe-webhooks",
            {"event_type": "payment_intent.payment_failed", "event_id": "evt_2", "data": {}},
        )
        await wait_for(lambda: _handled(pool, StripeWebhookListener) == 1)
        await wait_for(lambda: _dead_count(pool, StripeWebhookListener, "non_retryable") == 1)
    assert payments.payments["pi_1"].status == "succeeded"
    assert receipts == ["u1@example.com:pi_1"]
    assert pages == ["Stripe webhook failed: evt_2"]  # at once: no retry


# -- Best practices ---------------------------------------------------------------------------


async def test_best_practice_idempotency(settings: CommonAppSettings, producer: Producer) -> None:
    repo = OrderRepository()
    provide(OrderRepository, lambda: repo, scope="singleton")
    processed: list[str] = []

    @job_listener(queue="orders")
    class ProcessOrderListener(JobListener):
        @bind
        async def handle(self, message: Message, order_repo: OrderRepository):
            order_id = message.body["order_id"]

            # ✅ Controlla se già processato
            order = await order_repo.get(order_id)
            if order.status == "processed":
                logger.info(f"Order {order_id} already processed, skipping")
                return  # Idempotente!

            # Processa ordine
            await self.process_order(order)
            order.status = "processed"
            await order_repo.save(order)

        async def process_order(self, order: Record) -> None:  # seed: not shown
            processed.append(order.order_id)

    async with run_workers(ProcessOrderListener, settings=settings) as pool:
        for _ in range(2):  # the same order delivered twice
            await producer.send("orders", {"order_id": "o-1"})
        await wait_for(lambda: _handled(pool, ProcessOrderListener) == 2)
    assert processed == ["o-1"]

    # "Testing": the listener is a plain class; its handle is callable in a unit test.
    # seed: a Message instead of MockQueueDriver's (driver-specific, out of scope)
    await ProcessOrderListener().handle(Message("m-1", {"order_id": "o-1"}), order_repo=repo)


SLOW_SHUTDOWN = """
# ✅ Handler rispetta cancellation
@job_listener(queue="jobs")
class JobListener(JobListener):
    @bind
    async def handle(self, message: Message):
        for item in message.body['items']:
            # Permetti cancellazione tra items
            await asyncio.sleep(0)
            await self.process(item)
"""


async def test_troubleshooting_a_listener_that_shadows_the_base_class_name(
    settings: CommonAppSettings, producer: Producer
) -> None:
    # Run as module-level code (the class shadows the name of its base), in its own namespace.
    namespace: dict[str, Any] = {
        "__name__": "seed000_jobs",
        "asyncio": asyncio,
        "job_listener": job_listener,
        "JobListener": JobListener,
        "bind": bind,
        "Message": Message,
    }
    exec(compile(SLOW_SHUTDOWN, "seed000_jobs", "exec"), namespace)
    listener_cls = namespace["JobListener"]
    items: list[int] = []

    async def process(self: Any, item: int) -> None:  # seed: not shown
        items.append(item)

    listener_cls.process = process
    async with run_workers(listener_cls, settings=settings):
        await producer.send("jobs", {"items": [1, 2, 3]})
        await wait_for(lambda: items == [1, 2, 3])

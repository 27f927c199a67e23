"""Injection on a real Redis: scoped, singleton and transient dependencies, by ``Depends`` and
by providers registered by parameter name or by type."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from common import CommonAppSettings, NonRetryableError
from common.messaging import (
    ActionContext,
    Depends,
    Scope,
    injectable,
    injection,
    provide,
    run_workers,
    singleton,
    worker,
)
from common.messaging.producer import Producer
from tests.helpers import wait_for


@pytest.fixture(autouse=True)
def _restore_providers() -> Iterator[None]:
    yield
    injection.reset_providers()


class Session:
    """A database session that records its life."""

    ids = itertools.count(1)

    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.id = next(self.ids)
        self.log = log
        log.append(("open", self.id))

    def close(self) -> None:
        self.log.append(("close", self.id))


class Repository:
    def __init__(self, db: Session) -> None:
        self.db = db


class EmailService:
    made = 0

    def __init__(self) -> None:
        type(self).made += 1


class Tracker:
    pass


class Notifier:  # an interface: the app registers an implementation
    pass


async def test_a_scoped_provider_by_name_makes_one_session_per_message_closed_also_on_failure(
    settings: CommonAppSettings, producer: Producer
) -> None:
    log: list[tuple[str, int]] = []
    seen: list[tuple[int, int, bool]] = []

    async def open_session() -> AsyncIterator[Session]:
        session = Session(log)
        try:
            yield session
        finally:
            session.close()

    provide("db", open_session)  # scoped: the default
    provide("repo", Repository)  # its own `db` parameter gets this message's session

    @worker(topic="users.created", group_id="welcome", consumers=2, concurrency=4)
    async def welcome(user: dict[str, Any], db, repo: Repository) -> None:  # type: ignore[no-untyped-def]
        seen.append((user["n"], db.id, repo.db is db))
        if user["n"] % 3 == 0:
            raise NonRetryableError("this user cannot be welcomed")

    async with run_workers(welcome, settings=settings) as pool:
        for n in range(1, 13):
            await producer.send("users.created", {"n": n})
        await wait_for(lambda: len([e for e in log if e[0] == "close"]) == 12)
        consumers = pool.subscribers(welcome)
        await wait_for(
            lambda: sum(c.stats.dead_lettered.get("non_retryable", 0) for c in consumers) == 4
        )

    assert sorted(n for n, _, _ in seen) == list(range(1, 13))
    assert all(shared for _, _, shared in seen)  # one session per message, shared by its repo
    sessions = [session for _, session, _ in seen]
    assert len(set(sessions)) == 12
    opened = sorted(i for what, i in log if what == "open")
    closed = sorted(i for what, i in log if what == "close")
    assert opened == closed == sorted(sessions)  # each closed once, failed ones included


async def test_a_depends_generator_is_torn_down_once_per_message_also_when_the_handler_fails(
    settings: CommonAppSettings, producer: Producer
) -> None:
    log: list[tuple[str, int]] = []
    failures: list[int] = []

    async def get_session() -> AsyncIterator[Session]:
        session = Session(log)
        try:
            yield session
        finally:
            session.close()

    @worker(topic="orders.paid", group_id="ledger", max_retries=2, retry_backoff="fixed")
    async def ledger(order: dict[str, Any], db: Session = Depends(get_session)) -> None:
        if order["fail"]:
            failures.append(db.id)
            raise RuntimeError("ledger down")

    fast = settings.model_copy(update={"retry_initial_delay_s": 0.01})
    async with run_workers(ledger, settings=fast) as pool:
        await producer.send("orders.paid", {"fail": False})
        await producer.send("orders.paid", {"fail": True})
        [consumer] = pool.subscribers(ledger)
        await wait_for(lambda: consumer.stats.dead_lettered.get("max_retries") == 1)
        await wait_for(lambda: len(log) == 6)

    assert len(failures) == 2  # two attempts of the failing message, a session each
    opened = [i for what, i in log if what == "open"]
    closed = [i for what, i in log if what == "close"]
    assert len(opened) == 3 and sorted(opened) == sorted(closed)


async def test_a_singleton_provider_by_type_is_made_once_per_process(
    settings: CommonAppSettings, producer: Producer
) -> None:
    EmailService.made = 0
    services: list[EmailService] = []

    async def make_email_service() -> EmailService:
        return EmailService()

    provide(EmailService, make_email_service, scope="singleton")

    @worker(topic="emails", group_id="mailer", consumers=3, concurrency=4)
    async def mailer(message: dict[str, Any], email_service: EmailService) -> None:
        services.append(email_service)

    async with run_workers(mailer, settings=settings):
        for n in range(30):
            await producer.send("emails", {"n": n})
        await wait_for(lambda: len(services) == 30)
    assert EmailService.made == 1 and len({id(s) for s in services}) == 1


async def test_transient_dependencies_are_new_at_each_use(
    settings: CommonAppSettings, producer: Producer
) -> None:
    made: list[Tracker] = []

    def make_tracker() -> Tracker:
        tracker = Tracker()
        made.append(tracker)
        return tracker

    provide(Tracker, make_tracker, scope=Scope.TRANSIENT)
    calls = itertools.count()

    def counter() -> int:
        return next(calls)

    uses: list[tuple[Tracker, Tracker, int, int]] = []

    @worker(topic="clicks", group_id="trackers")
    async def track(
        click: dict[str, Any],
        first: Tracker,
        second: Tracker,
        a: int = Depends(counter, use_cache=False),
        b: int = Depends(counter, use_cache=False),
    ) -> None:
        uses.append((first, second, a, b))

    async with run_workers(track, settings=settings):
        for n in range(3):
            await producer.send("clicks", {"n": n})
        await wait_for(lambda: len(uses) == 3)
    assert len(made) == 6 and len({id(t) for t in made}) == 6  # two per message
    assert sorted(n for _, _, a, b in uses for n in (a, b)) == list(range(6))


async def test_depends_singleton_and_injectable_classes_serve_their_base_type(
    settings: CommonAppSettings, producer: Producer
) -> None:
    made: list[int] = []

    @injectable(scope=Scope.SINGLETON)
    class SlackNotifier(Notifier):
        def __init__(self) -> None:
            made.append(1)

    async def make_client() -> Tracker:
        made.append(2)
        return Tracker()

    got: list[tuple[Notifier, Tracker]] = []

    @worker(topic="alerts", group_id="pager", concurrency=3)
    async def pager(
        alert: dict[str, Any],
        notifier: Notifier,
        client: Tracker = Depends(singleton(make_client)),  # noqa: B008
    ) -> None:
        got.append((notifier, client))

    async with run_workers(pager, settings=settings):
        for n in range(10):
            await producer.send("alerts", {"n": n})
        await wait_for(lambda: len(got) == 10)
    assert sorted(made) == [1, 2]  # each made once
    assert all(isinstance(n, SlackNotifier) for n, _ in got)
    assert len({id(n) for n, _ in got}) == len({id(c) for _, c in got}) == 1


async def test_a_parameter_without_a_provider_dead_letters_its_message_with_its_name(
    settings: CommonAppSettings, producer: Producer
) -> None:
    @worker(topic="reports", group_id="reporter", max_retries=1)
    async def report(request: dict[str, Any], warehouse) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("never called")

    async with run_workers(report, settings=settings) as pool:
        await producer.send("reports", {"n": 1})
        [consumer] = pool.subscribers(report)
        stream = consumer.outbox.dead_letter_stream
        [(_, dead)] = await wait_for(lambda: consumer.redis.xrange(stream))
    assert b"no provider for parameter 'warehouse'" in dead[b"error"]


async def test_a_provider_registered_after_the_decorator_is_used() -> None:
    @worker(topic="late.binding", group_id="late")
    async def late(payload: dict[str, Any], db: str = "default") -> str:
        return db

    call = late.__subscription__.handler.call  # type: ignore[attr-defined]
    assert await call({}, None, None) == "default"  # no provider: the default
    provide("db", lambda: "provided")
    assert await call({}, None, None) == "provided"


def test_handlers_that_inject_nothing_are_called_directly() -> None:
    async def plain(payload: dict[str, Any]) -> None: ...

    async def with_context(payload: dict[str, Any], context: ActionContext) -> None: ...

    assert injection.build_call(plain).__name__ == "call_payload"
    assert injection.build_call(with_context).__name__ == "call"
    assert injection.build_call(plain).__qualname__.startswith("build_call.")


def test_a_singleton_cannot_be_a_generator() -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(ValueError, match="singleton"):
        provide("x", gen, scope="singleton")

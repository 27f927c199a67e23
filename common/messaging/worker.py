"""``@worker`` functions and ``Worker`` classes: a topic in, optionally a topic out.

::

    @worker(topic="events.raw", output_topic="events.processed")
    async def process_event(event: dict) -> dict:
        return {**event, "processed": True}

    class OrderProcessor(Worker):
        input_topic = "orders"
        output_topic = "orders.processed"
        max_retries = 3

        async def process(self, order: dict) -> dict: ...

Each registers a :class:`~common.messaging.subscription.Subscription` (see
:mod:`common.messaging.registry`); :func:`~common.messaging.runner.run_workers` or ``python -m
common run`` runs it. The decorated function is returned unchanged: it keeps its signature for
type checkers and stays directly callable in unit tests (``await process_event({...})``), as
``await OrderProcessor().process(...)`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel

from common.messaging.handler import Handler
from common.messaging.registry import register
from common.messaging.subscription import Subscription
from common.naming import is_group_id, is_topic_name
from common.workers.retry import RetryPolicy

__all__ = ["Worker", "worker"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Backoff = Literal["exponential", "linear", "fixed"]


def check_topic(topic: str, what: str = "topic") -> str:
    if not isinstance(topic, str) or not is_topic_name(topic):
        raise ValueError(
            f"invalid {what} {topic!r}: lowercase letters, digits, '.', '_' or '-' "
            "(e.g. 'orders.created')"
        )
    return topic


def retry_overrides(max_retries: int | None, retry_backoff: Backoff | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if max_retries is not None:
        if max_retries < 1:
            raise ValueError("max_retries must be >= 1")
        overrides["max_retries"] = max_retries
    if retry_backoff is not None:
        if retry_backoff not in ("exponential", "linear", "fixed"):
            raise ValueError(f"unknown retry_backoff {retry_backoff!r}")
        overrides["backoff"] = retry_backoff
    return overrides


def check_group(group_id: str | None, concurrency: int, consumers: int = 1) -> None:
    if group_id is not None and not is_group_id(group_id):
        raise ValueError(f"invalid group_id {group_id!r}")
    if concurrency < 1 or consumers < 1:
        raise ValueError("concurrency and consumers must be >= 1")


def register_function(
    func: F, *, kind: str, topics: tuple[str, ...], handler: dict[str, Any], **subscription: Any
) -> F:
    """Register ``func`` as the one handler of ``topics`` (what ``@worker`` and
    ``@message_handler`` do); returns it unchanged but for its ``__subscription__``."""
    name = f"{func.__module__}.{func.__qualname__}"
    registered = register(
        Subscription(
            name=name,
            topics=topics,
            handler=Handler(func, name, **handler),
            kind=kind,
            module=func.__module__,
            **subscription,
        )
    )
    func.__subscription__ = registered  # type: ignore[attr-defined]
    return func


def worker(
    topic: str,
    output_topic: str | None = None,
    group_id: str | None = None,
    concurrency: int = 1,
    max_retries: int | None = None,
    retry_backoff: Backoff | None = None,
    retry_policy: RetryPolicy | None = None,
    input_schema: type[BaseModel] | None = None,
    output_schema: type[BaseModel] | None = None,
    dlq_topic: str | None = None,
    *,
    consumers: int = 1,
) -> Callable[[F], F]:
    """Register an async function as the handler of ``topic`` (see the module docstring).

    ``group_id`` names its subscriber group (default ``<service>.<function name>``): each group
    gets every message once, the consumers of one group share them. ``concurrency`` handlers
    run at once per consumer (``consumers`` per process). Retries follow ``retry_policy``, or the
    settings' policy with ``max_retries``/``retry_backoff`` changed. ``input_schema`` validates
    the payload first (invalid: dead-lettered at once); the result is validated against
    ``output_schema`` and published to ``output_topic`` (``None``: nothing). After the last
    failed attempt the message goes to ``dlq_topic`` as ``{original, error, worker, retries}``
    (and to the group's dead-letter stream)."""
    check_topic(topic)
    for other in (output_topic, dlq_topic):
        if other is not None:
            check_topic(other)
    check_group(group_id, concurrency, consumers)
    handler = {
        "input_schema": input_schema,
        "output_schema": output_schema,
        "output_topic": output_topic,
        "dlq_topic": dlq_topic,
        "policy": retry_policy,
        "retry": retry_overrides(max_retries, retry_backoff),
    }

    def decorate(func: F) -> F:
        return register_function(
            func,
            kind="worker",
            topics=(topic,),
            handler=handler,
            group_id=group_id,
            concurrency=concurrency,
            consumers=consumers,
        )

    return decorate


class Worker:
    """A class-based worker: set ``input_topic`` (and any of ``@worker``'s options as class
    attributes), implement ``async process(payload)``. Hooks: ``on_startup()`` and
    ``on_shutdown()`` run once per process; ``on_success(payload, result)`` after each success,
    ``on_error(payload, error)`` after the last failed attempt.

    A subclass that sets ``input_topic`` is registered when it is defined; one instance (made
    without arguments) serves every message of the process."""

    input_topic: ClassVar[str | None] = None
    output_topic: ClassVar[str | None] = None
    group_id: ClassVar[str | None] = None
    concurrency: ClassVar[int] = 1
    consumers: ClassVar[int] = 1
    max_retries: ClassVar[int | None] = None
    retry_backoff: ClassVar[Backoff | None] = None
    retry_policy: ClassVar[RetryPolicy | None] = None
    input_schema: ClassVar[type[BaseModel] | None] = None
    output_schema: ClassVar[type[BaseModel] | None] = None
    dlq_topic: ClassVar[str | None] = None
    __subscription__: ClassVar[Subscription | None] = None

    async def process(self, payload: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.process is not implemented")

    async def on_startup(self) -> None:
        """Once per process, before its consumers start."""

    async def on_shutdown(self) -> None:
        """Once per process, after its consumers stopped."""

    async def on_success(self, payload: Any, result: Any) -> None:
        """After each successful message."""

    async def on_error(self, payload: Any, error: BaseException) -> None:
        """After the last failed attempt of a message."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.input_topic is None:
            return  # an abstract intermediate class
        check_topic(cls.input_topic, "input_topic")
        for other in (cls.output_topic, cls.dlq_topic):
            if other is not None:
                check_topic(other)
        check_group(cls.group_id, cls.concurrency, cls.consumers)
        instance = cls()
        name = f"{cls.__module__}.{cls.__qualname__}"
        handler = Handler(
            instance.process,
            name,
            input_schema=cls.input_schema,
            output_schema=cls.output_schema,
            output_topic=cls.output_topic,
            dlq_topic=cls.dlq_topic,
            policy=cls.retry_policy,
            retry=retry_overrides(cls.max_retries, cls.retry_backoff),
            on_success=instance.on_success if _overrides(cls, "on_success") else None,
            on_error=instance.on_error if _overrides(cls, "on_error") else None,
        )
        cls.__subscription__ = register(
            Subscription(
                name=name,
                topics=(cls.input_topic,),
                handler=handler,
                group_id=cls.group_id,
                concurrency=cls.concurrency,
                consumers=cls.consumers,
                kind="worker",
                on_startup=instance.on_startup if _overrides(cls, "on_startup") else None,
                on_shutdown=instance.on_shutdown if _overrides(cls, "on_shutdown") else None,
                module=cls.__module__,
            )
        )


def _overrides(cls: type, hook: str) -> bool:
    return getattr(cls, hook) is not getattr(Worker, hook)

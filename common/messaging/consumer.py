"""``@consumer`` classes with ``@on_event`` methods: one group, several topics, a handler per event.

::

    @consumer("order-service", topics=["user-events", "payment-events"])
    class OrderEventsConsumer:
        @on_event("user.created")
        async def handle_user_created(self, event: Event, db: Session = Depends(get_db)) -> None:
            ...

The class is registered as one :class:`~common.messaging.subscription.Subscription` whose group
``group_id`` reads every listed topic; each event goes to the method registered for its
``name`` (``by_event`` routes). An event that no method handles is ACKed and counted
(``TopicSubscriber.unhandled``), never dead-lettered: a topic carries events for many readers.

A method gets the whole :class:`~common.messaging.events.Event` as its first parameter; like any
handler it may also ask for the :class:`~common.messaging.context.ActionContext` and ``Depends``
parameters (see :mod:`common.messaging.injection`). The class is instantiated once per process,
without arguments, when it is decorated (the methods of that instance share its state); its
optional ``async on_startup()`` / ``async on_shutdown()`` run once per process.

``auto_start=False`` registers the consumer without running it by default:
``run_workers()`` with no targets skips it, and it runs only when named
(``run_workers(OrderEventsConsumer)``, or its name).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from common.messaging.handler import Handler
from common.messaging.registry import register
from common.messaging.subscription import Subscription
from common.messaging.worker import Backoff, check_topic, retry_overrides
from common.naming import is_group_id
from common.workers.retry import RetryPolicy

__all__ = ["consumer", "on_event"]

C = TypeVar("C", bound=type)
M = TypeVar("M", bound=Callable[..., Awaitable[Any]])

_EVENTS_ATTR = "__on_event__"


def on_event(*event_names: str) -> Callable[[M], M]:
    """Mark an ``async`` method of a ``@consumer`` class as the handler of the events called
    ``event_names`` (one or more; the decorator may also be stacked). The method is returned
    unchanged."""
    if not event_names:
        raise ValueError("on_event needs at least one event name")
    for name in event_names:
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ValueError(f"invalid event name {name!r}")

    def mark(method: M) -> M:
        func: Any = method
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@on_event: {func.__qualname__} must be an 'async def' method")
        names: tuple[str, ...] = getattr(method, _EVENTS_ATTR, ())
        setattr(method, _EVENTS_ATTR, names + tuple(n for n in event_names if n not in names))
        return method

    return mark


def _routes(cls: type) -> dict[str, str]:
    """Event name -> method name, over the class and its bases (a subclass's method wins)."""
    routes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        own: dict[str, str] = {}
        for attr, value in vars(klass).items():
            for name in getattr(value, _EVENTS_ATTR, ()):
                if name in own:
                    raise ValueError(
                        f"@consumer {klass.__qualname__}: event {name!r} is handled by both "
                        f"{own[name]} and {attr}"
                    )
                own[name] = attr
        routes.update(own)
    return routes


def consumer(
    group_id: str,
    topics: Sequence[str] | str,
    auto_start: bool = True,
    *,
    concurrency: int = 1,
    consumers: int = 1,
    max_retries: int | None = None,
    retry_backoff: Backoff | None = None,
    retry_policy: RetryPolicy | None = None,
    dlq_topic: str | None = None,
) -> Callable[[C], C]:
    """Register a class whose ``@on_event`` methods handle the events of ``topics`` in the
    subscriber group ``group_id`` (see the module docstring).

    ``concurrency`` handlers run at once per consumer, ``consumers`` per process. Retries follow
    ``retry_policy``, or the settings' policy with ``max_retries``/``retry_backoff`` changed;
    after the last failed attempt an event goes to the group's dead-letter stream (and to
    ``dlq_topic`` as ``{original, error, worker, retries}`` when given)."""
    if not isinstance(group_id, str) or not is_group_id(group_id):
        raise ValueError(f"invalid group_id {group_id!r}")
    names = (topics,) if isinstance(topics, str) else tuple(topics)
    if not names:
        raise ValueError("@consumer needs at least one topic")
    for topic in names:
        check_topic(topic)
    if len(set(names)) != len(names):
        raise ValueError(f"a topic is listed twice: {list(names)}")
    if dlq_topic is not None:
        check_topic(dlq_topic)
    if concurrency < 1 or consumers < 1:
        raise ValueError("concurrency and consumers must be >= 1")
    retry = retry_overrides(max_retries, retry_backoff)

    def decorate(cls: C) -> C:
        if not isinstance(cls, type):
            raise TypeError("@consumer decorates a class")
        routes = _routes(cls)
        if not routes:
            raise ValueError(f"@consumer {cls.__qualname__} has no @on_event method")
        instance = cls()
        name = f"{cls.__module__}.{cls.__qualname__}"
        by_event = {
            event_name: Handler(
                getattr(instance, attr),
                f"{name}.{attr}",
                dlq_topic=dlq_topic,
                policy=retry_policy,
                retry=retry,
                pass_event=True,
            )
            for event_name, attr in routes.items()
        }
        subscription = Subscription(
            name=name,
            topics=names,
            by_event=by_event,
            group_id=group_id,
            concurrency=concurrency,
            consumers=consumers,
            kind="consumer",
            on_startup=_hook(instance, "on_startup"),
            on_shutdown=_hook(instance, "on_shutdown"),
            module=cls.__module__,
            auto_start=auto_start,
        )
        register(subscription)
        cls.__subscription__ = subscription  # type: ignore[attr-defined]
        return cls

    return decorate


def _hook(instance: object, name: str) -> Callable[[], Awaitable[None]] | None:
    hook = getattr(instance, name, None)
    if hook is None:
        return None
    if not inspect.iscoroutinefunction(hook):
        raise TypeError(f"{type(instance).__qualname__}.{name} must be an 'async def' method")
    return hook  # type: ignore[no-any-return]

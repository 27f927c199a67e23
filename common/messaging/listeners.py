"""Seed 000's listener names on the engine of every worker: ``job_listener`` and ``JobListener``.

::

    @job_listener(queue="welcome-emails", workers=3)
    class SendWelcomeEmailListener(JobListener):
        @bind
        async def handle(self, message: Message, email_service: EmailService) -> None:
            await email_service.send_welcome(to=message.body["email"], name=message.body["name"])

A *queue* is a topic here (:func:`~common.messaging.producer.publish` puts a message on it);
each listener class reads it in its own subscriber group (``group_id``, default
``<service>.<class name>``), so two listener classes on one queue each get every message,
and the ``workers`` consumers of one listener share them. The options map onto the engine:

- ``workers``: consumers of the group in this process (one message at a time each);
- ``auto_ack``: ``True`` settles by the outcome (returned: ACKed; raised: failed); ``False`` is
  manual mode: the handler calls ``context.ack()`` / ``context.reject(requeue, delay)`` (seed
  000's ``visibility_timeout=`` is accepted for the delay), and a handler that returns without
  settling gets its message retried, never lost;
- ``visibility_timeout``: seconds before a silent consumer's message may be claimed by another
  (the lease keeper renews it while the handler runs; ``context.extend_visibility()`` renews it
  now); None: the settings' ``visibility_timeout_s``;
- ``max_messages``: the read batch size (each message is still handled on its own); None: the
  settings' ``worker_batch_size``;
- ``retry_on_error``: ``True`` retries a failed message with the settings' backoff, up to
  ``max_retries`` deliveries in all; ``False`` (seed 000's default) dead-letters it at once:
  nothing is lost silently, it waits in the group's dead-letter stream (``common dlq``).
  ``max_retries`` also bounds the redeliveries a manual ``reject(requeue=True)`` may ask for.

``on_startup()`` and ``on_shutdown()`` run once per process; ``on_error(message, error)`` runs
when a message failed for good (after its last retry, or at once without ``retry_on_error``).
One instance of the class, made without arguments, handles every message of the process, and
``await Listener().handle(message)`` works in a unit test.

``handle``'s first parameter gets a :class:`Message`; a parameter annotated
``MessageContext`` (or named ``context``) gets the context; the others are injected (see
:mod:`common.messaging.injection`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from common.messaging.context import ActionContext
from common.messaging.events import Event
from common.messaging.handler import Handler
from common.messaging.registry import register
from common.messaging.subscription import Subscription
from common.messaging.worker import check_topic
from common.naming import is_group_id

__all__ = ["JobListener", "Message", "job_listener"]

L = TypeVar("L", bound="type[JobListener]")


@dataclass(slots=True)
class Message:
    """One message as a listener sees it.

    ``id`` is the event's ``event_id``: the same on every redelivery of the message and in every
    group that reads it, as its publisher knows it (the stream entry id is
    ``context.message_id``). ``body`` is the payload that was published; ``received_count``
    counts its deliveries to this group, this one included (1 on the first)."""

    id: str
    body: Any
    received_count: int = 1
    event: Event | None = None  # the envelope: name, timestamp, source, trace id, ...

    @classmethod
    def from_event(cls, event: Event, received_count: int = 1) -> Message:
        return cls(event.event_id, event.data, received_count, event)


class JobListener:
    """Base class of seed 000's listeners (see the module docstring). Implement
    ``async handle(self, message: Message, ...)``; the hooks are optional."""

    __subscription__: ClassVar[Subscription | None] = None

    async def on_startup(self) -> None:
        """Once per process, before its consumers start."""

    async def on_shutdown(self) -> None:
        """Once per process, after its consumers stopped."""

    async def on_error(self, message: Message, error: BaseException) -> None:
        """When a message failed for good."""


class _ListenerHandler(Handler):
    """A handler whose payload is a :class:`Message` with its delivery count."""

    def __post_init__(self) -> None:
        super().__post_init__()
        call = self.call

        async def call_with_count(payload: Any, context: ActionContext, event: Event) -> Any:
            payload.received_count = context.delivery_count
            return await call(payload, context, event)

        self.call = call_with_count

    def payload(self, event: Event) -> Message:
        return Message.from_event(event)  # its count is set when the call starts


def job_listener(
    queue: str,
    workers: int = 1,
    auto_ack: bool = True,
    visibility_timeout: float | None = None,
    max_messages: int | None = None,
    retry_on_error: bool = False,
    max_retries: int = 3,
    *,
    group_id: str | None = None,
) -> Callable[[L], L]:
    """Register a :class:`JobListener` subclass as the reader of ``queue`` (a topic; see the
    module docstring for the options). Returns the class unchanged."""
    check_topic(queue, "queue")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if max_retries < 1:
        raise ValueError("max_retries must be >= 1")
    if visibility_timeout is not None and visibility_timeout <= 0:
        raise ValueError("visibility_timeout must be > 0")
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages must be >= 1")
    if group_id is not None and not is_group_id(group_id):
        raise ValueError(f"invalid group_id {group_id!r}")

    def decorate(cls: L) -> L:
        handle = getattr(cls, "handle", None)
        if not inspect.iscoroutinefunction(handle):
            raise TypeError(f"{cls.__qualname__} needs an 'async def handle(self, message, ...)'")
        instance = cls()
        name = f"{cls.__module__}.{cls.__qualname__}"
        handler = _ListenerHandler(
            instance.handle,  # type: ignore[attr-defined]
            name,
            retry={"max_retries": max_retries},
            retry_on_error=retry_on_error,
            on_error=instance.on_error if _overrides(cls, "on_error") else None,
        )
        cls.__subscription__ = register(
            Subscription(
                name=name,
                topics=(queue,),
                handler=handler,
                group_id=group_id,
                consumers=workers,
                auto_ack=auto_ack,
                visibility_timeout_s=visibility_timeout,
                max_messages=max_messages,
                kind="listener",
                on_startup=_hook(instance, cls, "on_startup"),
                on_shutdown=_hook(instance, cls, "on_shutdown"),
                module=cls.__module__,
            )
        )
        return cls

    return decorate


def _overrides(cls: type, hook: str) -> bool:
    return getattr(cls, hook) is not getattr(JobListener, hook)


def _hook(instance: JobListener, cls: type, hook: str) -> Callable[[], Awaitable[None]] | None:
    found: Callable[[], Awaitable[None]] = getattr(instance, hook)
    return found if _overrides(cls, hook) else None

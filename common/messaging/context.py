"""``ActionContext``: what a declarative handler may ask for about the message it handles.

The engine's :class:`~common.workers.context.DeliveryContext` (message id, stream, group,
delivery count, raw entry; ``ack()``, ``reject(requeue, delay)``, ``extend_visibility``) plus
the :class:`~common.messaging.events.Event` (trace id, name, key). Seed 000's
``MessageContext`` is the same object. A handler gets it by annotating a parameter with it
(any name), or by naming a parameter ``context``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.messaging.events import Event
from common.workers.context import DeliveryContext
from common.workers.outcome import Delivery

if TYPE_CHECKING:
    from common.workers.engine import StreamConsumer

__all__ = ["ActionContext", "MessageContext"]


class ActionContext(DeliveryContext):
    """One message as its handler sees it, and the means to settle it by hand."""

    __slots__ = ("event",)

    def __init__(
        self,
        consumer: StreamConsumer,
        delivery: Delivery,
        event: Event | None,
        *,
        auto_ack: bool = True,
    ) -> None:
        super().__init__(consumer, delivery, auto_ack=auto_ack)
        self.event = event

    @property
    def trace_id(self) -> str | None:
        return self.event.trace_id if self.event is not None else None

    @property
    def correlation_id(self) -> str | None:
        return self.event.correlation_id if self.event is not None else None

    @property
    def event_name(self) -> str | None:
        return self.event.name if self.event is not None else None

    async def reject(
        self,
        requeue: bool = True,
        delay: float | None = None,
        *,
        visibility_timeout: float | None = None,
    ) -> bool:
        """Settle as failed: retried after ``delay`` seconds (``visibility_timeout`` is seed
        000's name for it) or the backoff when ``requeue``; dead-lettered otherwise."""
        if delay is None:
            delay = visibility_timeout
        return await super().reject(requeue, delay)


MessageContext = ActionContext

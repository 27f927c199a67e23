"""Settlement by hand: a handler acks, rejects or asks for more time through a context.

A processor makes one :class:`DeliveryContext` per delivery and hands it to the handler. The
handler may settle the delivery itself:

- ``ack()``: done (written, then XACKed, like a returned result);
- ``reject(requeue=True, delay=None)``: try again, after ``delay`` seconds or the retry
  policy's backoff, through the durable delay set (the attempt counts against the budget);
  ``reject(requeue=False)`` dead-letters it at once (reason ``rejected``);
- ``extend_visibility(seconds)``: reset the entry's idle time now (the lease keeper goes on
  renewing it while the handler runs, however long it takes).

The first settlement wins; later calls change nothing and return False, so calling twice is
harmless. (``ack`` and ``reject`` are coroutines, as handlers await them; they make no round
trip: the engine writes the settlement as soon as the handler returns.) In manual mode
(``auto_ack=False``) a handler that returns without settling gets its delivery retried (never
lost, never ACKed by accident); otherwise what the handler returned settles it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.models.actions import ErrorDetail
from common.workers.outcome import Ack, DeadLetter, DeadLetterReason, Delivery, Fail, Outcome

if TYPE_CHECKING:
    from common.workers.engine import StreamConsumer

__all__ = ["DeliveryContext"]

_NOT_SETTLED = ErrorDetail(
    error_type="NotSettled",
    message="the handler returned without ack() or reject() (auto_ack is off): retried",
)


class DeliveryContext:
    """One delivery, as its handler sees it: ids, counts, the raw entry, and settlement."""

    __slots__ = ("_consumer", "auto_ack", "delivery", "outcome")

    def __init__(
        self, consumer: StreamConsumer, delivery: Delivery, *, auto_ack: bool = True
    ) -> None:
        self._consumer = consumer
        self.delivery = delivery
        self.auto_ack = auto_ack
        self.outcome: Outcome | None = None

    # -- what the handler may read ------------------------------------------------------------

    @property
    def message_id(self) -> str:
        """The stream entry id (``1700000000000-0``)."""
        return self.delivery.entry_id.decode()

    @property
    def stream(self) -> str:
        return self._consumer.stream_of(self.delivery)

    @property
    def group(self) -> str:
        return self._consumer.group

    @property
    def consumer(self) -> str:
        return self._consumer.consumer

    @property
    def delivery_count(self) -> int:
        """How many times Redis has delivered this entry, this delivery included."""
        return self.delivery.attempt

    @property
    def raw(self) -> dict[bytes, bytes]:
        """The entry's fields as they are in the stream."""
        return self.delivery.fields

    @property
    def settled(self) -> bool:
        return self.outcome is not None

    # -- settlement ---------------------------------------------------------------------------

    async def ack(self) -> bool:
        """Settle as done. False if already settled."""
        return self._settle(Ack())

    async def reject(self, requeue: bool = True, delay: float | None = None) -> bool:
        """Settle as failed: retried after ``delay`` (or the backoff) when ``requeue``,
        dead-lettered at once otherwise. False if already settled."""
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        if requeue:
            error = ErrorDetail(error_type="Rejected", message="rejected by the handler: requeued")
            return self._settle(Fail(error, delay=delay))
        error = ErrorDetail(error_type="Rejected", message="rejected by the handler")
        return self._settle(DeadLetter(DeadLetterReason.REJECTED, error))

    async def extend_visibility(self, seconds: float | None = None) -> bool:
        """Reset the entry's idle time now, so that no other consumer claims it for another
        visibility timeout (leases are also renewed automatically while the handler runs).
        False if it is no longer this consumer's, already settled, or was deleted."""
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self.outcome is not None:
            return False
        return await self._consumer.leases.extend(self.delivery)

    def _settle(self, outcome: Outcome) -> bool:
        if self.outcome is not None:
            return False
        self.outcome = outcome
        return True

    def resolve(self, returned: Outcome | None) -> Outcome:
        """The delivery's outcome: the context's settlement if the handler made one, else
        what the processor derived from the handler's return (auto-ack), else a retry."""
        if self.outcome is not None:
            return self.outcome
        if returned is not None and (self.auto_ack or not isinstance(returned, Ack)):
            return returned  # (a failure settles it in manual mode too)
        return Fail(_NOT_SETTLED)

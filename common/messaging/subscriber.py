"""``TopicSubscriber``: one consumer of a subscription's topics, on the engine of every worker.

It reads all the subscription's topic streams (every partition of each: see
:mod:`common.messaging.partitions`) with one XREADGROUP in the subscription's group
(the same engine as :class:`~common.workers.base_worker.BaseWorker`: reading, the flusher,
retries in the delay set, leases, reclaim, trimming and dead letters), decodes each entry into
an :class:`~common.messaging.events.Event`, and runs the handler its route picks with an
:class:`~common.messaging.context.ActionContext`. An entry that is not an event is dead-lettered
as ``malformed``; an event nobody handles is ACKed and counted (``unhandled``).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.errors import MessageError, PayloadTooLargeError
from common.messaging.context import ActionContext
from common.messaging.events import Event, decode_event
from common.messaging.handler import Handler, publish_write
from common.messaging.partitions import leftover_candidates, subscriber_streams
from common.messaging.subscription import Subscription
from common.models.actions import ErrorDetail
from common.observability.hooks import instrument_subscriber
from common.workers.engine import StreamConsumer
from common.workers.leftovers import streams_with_work
from common.workers.outcome import Ack, DeadLetter, DeadLetterReason, Delivery, Outcome, Write
from common.workers.retry import RetryPolicy

__all__ = ["TopicSubscriber"]

_ACK = Ack()
_UNSET: Any = object()


class TopicSubscriber(StreamConsumer):
    """A consumer of ``subscription``'s topics in its group (see the module docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: CommonAppSettings,
        subscription: Subscription,
        consumer: str,
    ) -> None:
        updates: dict[str, Any] = {"worker_concurrency": subscription.concurrency}
        if subscription.visibility_timeout_s is not None:
            updates["visibility_timeout_s"] = subscription.visibility_timeout_s
        if subscription.max_messages is not None:
            updates["worker_batch_size"] = subscription.max_messages
        settings = settings.model_copy(update=updates)
        self.subscription = subscription
        self.queues = QueueManager(settings.queue_prefix, settings.environment)
        group = subscription.group(settings.service_name)
        streams = subscriber_streams(self.queues, settings, subscription.topics, group)
        (first, first_dead), *more = streams.items()
        super().__init__(
            redis,
            settings,
            stream=first,
            group=group,
            consumer=consumer,
            dead_letter_stream=first_dead,
            retry_policy=subscription.policy,
            more_streams=dict(more),
        )
        self.unhandled = 0
        self.handled_by: dict[str, int] = {}
        self._policies: dict[Handler, RetryPolicy | None] = {}
        self._run_handler = Handler.run  # Handler.run, unless instrumented (decided here)
        instrument_subscriber(self)

    async def initialize(self) -> None:
        """Create the group on every partition of the topics; partitions beyond a topic's
        count that still hold work for the group (a larger count left them) are read too."""
        settings, topics = self.settings, self.subscription.topics
        candidates = leftover_candidates(self.queues, settings, topics, self.group)
        leftovers = await streams_with_work(self.redis, self.group, candidates)
        if leftovers:
            self.log.warning(
                "also consuming %d topic partitions beyond topic_partitions that still hold "
                "work (left by a larger value): %s",
                len(leftovers),
                ", ".join(leftovers),
            )
            self._add_streams(leftovers)
        await super().initialize()

    async def _process_delivery(self, delivery: Delivery) -> Outcome:
        try:
            event = decode_event(delivery.fields, self.settings.max_payload_bytes)
        except MessageError as exc:
            reason = (
                DeadLetterReason.PAYLOAD_TOO_LARGE
                if isinstance(exc, PayloadTooLargeError)
                else DeadLetterReason.MALFORMED
            )
            return DeadLetter(reason, ErrorDetail.from_exception(exc))
        handler = self.subscription.route(event.name)
        if handler is None:
            self.unhandled += 1
            return _ACK
        delivery.payload = (handler, event)
        policy = self._policies.get(handler, _UNSET)
        if policy is _UNSET:
            policy = self._policies[handler] = handler.policy_from(self.retry_policy)
        if policy is not None:
            delivery.policy = policy
        context = ActionContext(self, delivery, event, auto_ack=self.subscription.auto_ack)
        policy = delivery.policy or self.retry_policy
        outcome = await self._run_handler(
            handler, event, context, self.queues, self.settings, policy
        )
        if isinstance(outcome, Ack):
            self.handled_by[handler.name] = self.handled_by.get(handler.name, 0) + 1
        return context.resolve(outcome)

    def _handler_of(self, delivery: Delivery) -> tuple[Handler, Event] | None:
        payload = delivery.payload
        if isinstance(payload, tuple):
            return payload
        return None

    def _failure_writes(self, delivery: Delivery, error: ErrorDetail) -> tuple[Write, ...]:
        """A handler with a ``dlq_topic`` publishes ``{original, error, worker, retries}``
        (``original``: the failed payload; ``event``: its envelope without the data)
        there when it fails for good (the dead-letter stream keeps its record too)."""
        found = self._handler_of(delivery)
        if found is None or found[0].dlq_topic is None:
            return ()
        handler, event = found
        data = {
            "original": event.data,  # the payload, as seed 002 shows it
            "event": event.model_dump(mode="json", exclude={"data"}),  # its envelope (ids)
            "error": error.model_dump(mode="json"),
            "worker": handler.name,
            "retries": delivery.attempt,
            "topic": self.stream_of(delivery),
            "failed_at": time.time(),
        }
        assert handler.dlq_topic is not None
        return (publish_write(self.queues, self.settings, handler.dlq_topic, data, cause=event),)

    def _describe(self, delivery: Delivery) -> str:
        found = self._handler_of(delivery)
        if found is None:
            return super()._describe(delivery)
        handler, event = found
        return (
            f"event {event.event_id} ({event.name}, trace {event.trace_id}, handler "
            f"{handler.name}, entry {delivery.entry_id.decode()})"
        )

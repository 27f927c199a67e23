"""``BaseWorker``: the base class of every service's action worker."""

from __future__ import annotations

import inspect
import logging
from abc import ABC
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.clients.base_redis_client import BaseRedisClient
from common.clients.queue_manager import MAX_PARTITIONS, QueueManager
from common.config import CommonAppSettings
from common.errors import (
    InvalidKeyError,
    MessageError,
    NonRetryableError,
    PayloadTooLargeError,
    RetryLaterError,
    UnknownActionError,
    WorkerStateError,
)
from common.models.actions import DomainAction, DomainActionResponse, ErrorDetail
from common.models.codec import ACTION_FIELD_BYTES, decode_action
from common.observability.hooks import instrument_worker
from common.workers.engine import StreamConsumer
from common.workers.leftovers import streams_with_work
from common.workers.outcome import Ack, DeadLetter, DeadLetterReason, Delivery, Fail, Outcome, Write
from common.workers.replies import ReplyBuilder, check_result, to_response
from common.workers.resources import Resources
from common.workers.retry import RetryPolicy

__all__ = ["BaseWorker", "HandlerResult"]

logger = logging.getLogger(__name__)

HandlerResult = dict[str, Any] | DomainActionResponse | None

_ACK = Ack()


def common_settings_of(app_settings: Any) -> CommonAppSettings:
    """Accept a ``CommonAppSettings`` or a service settings object carrying one."""
    if isinstance(app_settings, CommonAppSettings):
        return app_settings
    nested = getattr(app_settings, "common_settings", None)
    if isinstance(nested, CommonAppSettings):
        return nested
    raise TypeError(
        "app_settings must be a CommonAppSettings or carry one as .common_settings, "
        f"not {type(app_settings).__name__}"
    )


class BaseWorker(StreamConsumer, ABC):
    """One consumer of its service's action stream.

    Subclasses add ``async def _handle_<action_type>(self, action)`` methods, where the action
    type's dots and dashes become underscores (``user.create`` -> ``_handle_user_create``), or
    override :meth:`_handle_action`. A handler returns a dict (the response data), a
    :class:`DomainActionResponse`, or ``None``. Raising :class:`NonRetryableError` dead-letters
    the action at once, :class:`RetryLaterError` retries it after the given delay, and any other
    exception retries it with the retry policy's backoff until ``max_retries`` deliveries.
    """

    def __init__(
        self,
        app_settings: Any,
        async_redis_conn: aioredis.Redis,
        consumer_id_suffix: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        settings = common_settings_of(app_settings)
        self.app_settings = app_settings
        self.common_settings = settings
        self.service_name = settings.service_name
        self.queue_manager = QueueManager(settings.queue_prefix, settings.environment)
        qm = self.queue_manager
        self.action_stream_name = qm.action_stream(self.service_name)
        self.dead_letter_stream_name = qm.dead_letter_stream(self.service_name)
        self.consumer_group_name = qm.consumer_group(self.service_name)
        self.consumer_name = qm.consumer_name(self.service_name, consumer_id_suffix)
        self.redis_client = BaseRedisClient(self.service_name, async_redis_conn, settings)
        self._replies = ReplyBuilder(self.service_name, qm, settings)
        self._handlers: dict[str, Any] = {}
        # Partition 0 is the action stream; the others (stream_partitions > 1) are read too.
        partitions = qm.partition_streams(self.service_name, settings.stream_partitions)
        partitions.pop(self.action_stream_name)
        super().__init__(
            async_redis_conn,
            settings,
            stream=self.action_stream_name,
            group=self.consumer_group_name,
            consumer=self.consumer_name,
            dead_letter_stream=self.dead_letter_stream_name,
            retry_policy=retry_policy,
            more_streams=partitions,
        )
        instrument_worker(self)  # tracing, log context: decided once, here

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_handlers_are_async(cls)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.consumer_name}>"

    async def initialize(self) -> None:
        """Create the consumer group, then run :meth:`_initialize_components`.

        A worker run on its own (not in a pool) runs its class's :meth:`on_startup` in between.

        Partitions beyond ``stream_partitions`` that still exist in Redis (left by a larger
        P: see :meth:`_leftover_partitions`) are consumed too, so nothing they hold is lost.
        """
        self._add_streams(await self._leftover_partitions())
        await super().initialize()
        if self.standalone_recovery and not self._resources_started:
            await type(self).on_startup(self.resources)
            self._resources_started = True
        try:
            await self._initialize_components()
        except (RedisConnectionError, RedisTimeoutError):
            raise  # Redis is unavailable: the caller may wait and try again
        except OSError as exc:
            # The service's own set-up failed (a file, a socket of its own): not "Redis is
            # unavailable", so not retried forever as if it were.
            raise WorkerStateError(
                f"{type(self).__name__}._initialize_components failed: {exc!r}"
            ) from exc

    async def run(self) -> None:
        """Consume until :meth:`stop`, then drain (see :class:`StreamConsumer`)."""
        try:
            await super().run()
        finally:
            if self.standalone_recovery:  # not in a pool: the client is this worker's own
                try:
                    await self.redis_client.close()
                finally:
                    await self._shut_down_resources()

    async def _leftover_partitions(self) -> dict[str, str]:
        """Partition streams ``stream_partitions .. MAX_PARTITIONS - 1`` of this service that
        still hold work: what a larger ``stream_partitions`` left behind (see the README's
        "Scaling out")."""
        qm = self.queue_manager
        first = self.settings.stream_partitions
        candidates = {
            qm.action_stream(self.service_name, k): qm.dead_letter_stream(self.service_name, k)
            for k in range(first, MAX_PARTITIONS)
        }
        leftovers = await streams_with_work(self.redis, self.consumer_group_name, candidates)
        if leftovers:
            self.log.warning(
                "also consuming %d partitions beyond stream_partitions=%d that still hold "
                "work (left by a larger value): %s",
                len(leftovers),
                first,
                ", ".join(leftovers),
            )
        return leftovers

    async def _initialize_components(self) -> None:
        """Override to set up what handlers need (clients, caches); runs in initialize()."""

    # -- shared resources: once per pool (or per worker run on its own) ----------------------

    _resources_started = False  # on_startup ran for this worker on its own (not in a pool)

    @classmethod
    async def on_startup(cls, resources: Resources) -> None:
        """Override to create what all workers of a pool share; runs once per pool start.

        :meth:`WorkerPool.start` (so also ``python -m common run`` and a FastAPI lifespan)
        awaits it once, before any worker initializes; a worker run on its own awaits it in
        :meth:`initialize`. Put the objects on ``resources`` (``resources.ledger = ...``):
        every worker of the pool reads the same ones as ``self.resources``. Objects passed to
        ``WorkerPool(resources=...)`` are already there (``resources.setdefault`` keeps them).
        """

    @classmethod
    async def on_shutdown(cls, resources: Resources) -> None:
        """Override to release what :meth:`on_startup` created; runs once per pool stop.

        :meth:`WorkerPool.stop` awaits it after every worker has stopped and drained, before
        the pool closes its Redis connections; a worker run on its own awaits it when
        :meth:`run` returns. Not called when :meth:`on_startup` itself failed.
        """

    async def _shut_down_resources(self) -> None:
        if not self._resources_started:
            return
        self._resources_started = False
        try:
            await type(self).on_shutdown(self.resources)
        except Exception:
            self.log.exception("%s.on_shutdown failed", type(self).__name__)

    @property
    def resources(self) -> Resources:
        """The objects shared by this worker's pool (see :meth:`on_startup`)."""
        shared: Resources | None = self.__dict__.get("_shared_resources")
        if shared is None:
            shared = self.__dict__["_shared_resources"] = Resources()
        return shared

    @resources.setter
    def resources(self, shared: Resources) -> None:
        self.__dict__["_shared_resources"] = shared

    async def extend_visibility(self, action: DomainAction) -> bool:
        """Reset the idle time of ``action``'s entry now, so no other consumer claims it.

        Leases are renewed automatically every third of ``visibility_timeout_s``; a handler
        that is about to block for long (one huge call) may also renew explicitly. Returns
        False if the entry is no longer this consumer's (taken over, or already settled).
        """
        for delivery in list(self.held.values()):
            payload = delivery.payload
            if isinstance(payload, DomainAction) and payload.action_id == action.action_id:
                return await self.leases.extend(delivery)
        return False

    async def _handle_action(self, action: DomainAction) -> HandlerResult:
        """Dispatch to ``_handle_<action_type>``; override for custom routing."""
        handler = self._handlers.get(action.action_type)
        if handler is None:
            handler = getattr(self, action.handler_name, None)
            if handler is None or not callable(handler):
                raise UnknownActionError(
                    f"{type(self).__name__} has no handler for {action.action_type!r} "
                    f"(expected method {action.handler_name})"
                )
            self._handlers[action.action_type] = handler
        result: HandlerResult = await handler(action)
        return result

    # -- the engine's hooks ------------------------------------------------------------------

    async def _process_delivery(self, delivery: Delivery) -> Outcome:
        try:
            action = decode_action(delivery.fields, self.settings.max_payload_bytes)
        except MessageError as exc:
            return self._malformed(delivery, exc)
        delivery.payload = action
        try:
            self._replies.check_target(action)
        except InvalidKeyError as exc:
            # Never write where a message says unless the key is ours: refuse, reply nowhere.
            return DeadLetter(DeadLetterReason.REFUSED_TARGET, ErrorDetail.from_exception(exc))
        if action.is_expired():
            error = ErrorDetail(
                error_type="DeadlineExpired",
                message=f"deadline {action.deadline.isoformat()} has passed"
                if action.deadline
                else "deadline has passed",
            )
            return DeadLetter(
                DeadLetterReason.EXPIRED, error, self._replies.failure_writes(action, error, 504)
            )
        try:
            result = await self._handle_action(action)
            try:
                if action.callback_queue_name is None:  # fire-and-forget: nothing to build
                    check_result(action, result)
                    return _ACK
                response = to_response(action, result)
            except (TypeError, ValueError) as exc:
                raise _BadResult(str(exc)) from exc
        except RetryLaterError as exc:
            return Fail(ErrorDetail.from_exception(exc), exc.delay, exc, _deadline_of(action))
        except _BadResult as exc:
            # Running the handler again would return the same: its side effects are not
            # repeated max_retries times. The caller gets the error at once.
            error = ErrorDetail.from_exception(exc.__cause__ or exc)
            self.log.error("%s: %s", self._describe(delivery), error.message)
            return DeadLetter(
                DeadLetterReason.NON_RETRYABLE,
                error,
                self._replies.failure_writes(action, error, 500),
            )
        except (NonRetryableError, NotImplementedError) as exc:
            unknown = isinstance(exc, (UnknownActionError, NotImplementedError))
            error = ErrorDetail.from_exception(exc)
            status = 404 if unknown else getattr(exc, "status_code", 422)
            reason = DeadLetterReason.UNKNOWN_ACTION if unknown else DeadLetterReason.NON_RETRYABLE
            return DeadLetter(reason, error, self._replies.failure_writes(action, error, status))
        except Exception as exc:
            return Fail(ErrorDetail.from_exception(exc), None, exc, _deadline_of(action))
        try:
            return Ack(self._replies.writes(action, response))
        except (PayloadTooLargeError, TypeError, ValueError) as exc:
            # The handler ran, but its callback is over the limit: running it again would
            # give the same. Dead-letter it and tell the sender (the error is small).
            # (Or it cannot be serialised at all: the same on every attempt.)
            error = ErrorDetail.from_exception(exc)
            reason = (
                DeadLetterReason.PAYLOAD_TOO_LARGE
                if isinstance(exc, PayloadTooLargeError)
                else DeadLetterReason.NON_RETRYABLE
            )
            return DeadLetter(reason, error, self._replies.failure_writes(action, error, 500))

    def _describe(self, delivery: Delivery) -> str:
        action = delivery.payload
        if isinstance(action, DomainAction):
            return (
                f"action {action.action_id} (type {action.action_type}, "
                f"trace {action.trace_id}, entry {delivery.entry_id.decode()})"
            )
        return super()._describe(delivery)

    def _failure_writes(self, delivery: Delivery, error: ErrorDetail) -> tuple[Write, ...]:
        action = delivery.payload if isinstance(delivery.payload, DomainAction) else None
        if action is None:  # never decoded (poison dead-lettered unrun): answer it all the same
            try:
                action = decode_action(delivery.fields, self.settings.max_payload_bytes)
            except MessageError:
                action = _salvage(delivery)
        return self._replies.failure_writes(action, error, 500)

    def _malformed(self, delivery: Delivery, exc: MessageError) -> DeadLetter:
        reason = (
            DeadLetterReason.PAYLOAD_TOO_LARGE
            if isinstance(exc, PayloadTooLargeError)
            else DeadLetterReason.MALFORMED
        )
        error = ErrorDetail.from_exception(exc)
        salvaged = None if reason is DeadLetterReason.PAYLOAD_TOO_LARGE else _salvage(delivery)
        return DeadLetter(reason, error, self._replies.failure_writes(salvaged, error, 400))


class _BadResult(Exception):
    """A handler returned something that is not a valid result (wrong type, not JSON)."""


def _deadline_of(action: DomainAction) -> float | None:
    return action.deadline.timestamp() if action.deadline is not None else None


def _check_handlers_are_async(cls: type) -> None:
    """Refuse, when the class is defined, a handler that is not ``async def``: awaiting its
    result would fail on every delivery, after it had run (and had its effects) each time."""
    for name in dir(cls):
        if not (name.startswith("_handle_") or name == "_handle_action"):
            continue
        method = getattr(cls, name, None)
        if callable(method) and not inspect.iscoroutinefunction(method):
            raise TypeError(
                f"{cls.__name__}.{name} must be 'async def' (a coroutine function), "
                f"not {type(method).__name__}"
            )


def _salvage(delivery: Delivery) -> DomainAction | None:
    """From an invalid action, recover just enough (id, reply target) to answer its caller."""
    raw = delivery.fields.get(ACTION_FIELD_BYTES)
    try:
        doc = orjson.loads(raw) if raw is not None else None
        if not isinstance(doc, dict) or not isinstance(doc.get("callback_queue_name"), str):
            return None
        return DomainAction.model_construct(
            action_id=UUID(str(doc["action_id"])),
            action_type="invalid.action",
            correlation_id=str(doc.get("correlation_id") or doc["action_id"]),
            trace_id=str(doc.get("trace_id") or ""),
            callback_queue_name=doc["callback_queue_name"],
            callback_action_type=None,
            tenant_id=None,
            user_id=None,
            session_id=None,
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None

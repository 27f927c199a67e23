"""Sending actions: fire-and-forget, pseudo-synchronous, and asynchronous with callback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
from pydantic import TypeAdapter

from common.clients.consumer_check import CONSUMER_CHECK_TIMEOUT_S, ConsumerCheck
from common.clients.deadlines import Deadlines, TaskBound
from common.clients.queue_manager import QueueManager
from common.clients.replication import Replication
from common.clients.reply_listener import ReplyListener
from common.clients.scheduled import due_ms, schedule
from common.clients.xadd_batch import (
    Command,
    QueuedSend,
    entry_id_text,
    not_confirmed,
    send_xadds,
    xadd_command,
)
from common.config import CommonAppSettings
from common.errors import (
    ActionTimeoutError,
    NoConsumerError,
    PartialSendError,
    SendTimeoutError,
)
from common.models.actions import ActionType, DomainAction, DomainActionResponse
from common.models.codec import ACTION_FIELD, encode_action
from common.observability.hooks import instrument_client

__all__ = ["CONSUMER_CHECK_TIMEOUT_S", "BaseRedisClient"]  # the timeout: re-exported

logger = logging.getLogger(__name__)

"""Bound of the one look (``XINFO GROUPS``) at whether anybody consumes a target stream."""


# DomainAction's check of callback_action_type, for a value set with model_copy.
_ACTION_TYPE: TypeAdapter[str] = TypeAdapter(ActionType)


class BaseRedisClient:
    """Sends :class:`DomainAction` envelopes to other services' action streams.

    Pseudo-synchronous replies for every call of this client arrive on one reply list,
    read by one listener task that resolves each call's future by action id.

    Single sends (``send_action_async``, ``send_action_pseudo_sync``) are coalesced: while one
    XADD of this client is in flight, the sends that arrive queue up and go out together in one
    pipeline as soon as it returns; each caller still gets its own entry id or its own error.

    Every send is bounded in time: a pseudo-sync call by its ``timeout`` (the send included),
    the other sends by ``settings.redis_send_timeout_s`` (default 10 s), so that a server that
    stops answering never hangs a caller. A send cut off that way raises
    :class:`SendTimeoutError`, which says whether the action had gone out to Redis (then the
    outcome is unknown: it may have been appended) or not (then resending is safe). Nothing is
    ever resent automatically. The same holds for a ``redis.exceptions.ConnectionError`` raised
    by a send: unless the connection failed while being opened, the action may have reached
    Redis.

    Sends to a stream that nobody consumes are told apart, without a round trip per call: a
    pseudo-sync call that times out looks once at the target stream and raises
    :class:`NoConsumerError` (an :class:`ActionTimeoutError`) if it has no consumer group or
    only groups without consumers; after the first fire-and-forget send to each stream, a
    background check logs one warning if that stream has no consumer group.

    With ``settings.stream_partitions`` P > 1, each target service has P action streams and
    a send goes to the partition of its *partition key*: ``partition_key`` if given (an entity
    id, a tenant id: all actions of one key then go to one partition, in the order sent),
    else the action id (spreads evenly, no order between actions). Every sender and worker of
    a deployment must use the same P (see the README's "Scaling out").
    """

    def __init__(
        self,
        service_name: str,
        redis: aioredis.Redis,
        settings: CommonAppSettings | None = None,
    ) -> None:
        self.settings = settings or CommonAppSettings(service_name=service_name)
        self.service_name = service_name
        self.redis = redis
        self.queues = QueueManager(self.settings.queue_prefix, self.settings.environment)
        self.client_id = QueueManager.new_client_id()
        self.reply_key = self.queues.reply_key(service_name, self.client_id)
        self.own_stream = self.queues.action_stream(service_name)
        self._partitions = self.settings.stream_partitions
        self._streams: dict[str, list[str]] = {}  # target service -> its partitions' streams
        self._replies = ReplyListener(redis, self.reply_key)
        self._send_timeout = self.settings.redis_send_timeout_s
        self._replication = Replication.of(self.settings)  # None: no WAIT after sends
        self._deadlines = Deadlines()  # one timer bounds every send of this client
        # XADD coalescing: is one in flight, who waits for the next pipeline, who sends it.
        self._sending = False
        self._queued: list[QueuedSend] = []
        self._flusher: asyncio.Task[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []  # close() waiting for the sends
        self._consumers = ConsumerCheck(redis)  # does anybody consume where we send?
        instrument_client(self)  # tracing (decided once, here): wraps the send methods

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their caller had timed out (and were discarded)."""
        return self._replies.late_replies

    def stream_for(self, action: DomainAction, partition_key: str | None = None) -> str:
        """The stream ``action`` is sent to: its target's partition for ``partition_key``
        (default: the action id; with one partition, the target's action stream)."""
        target = action.target_service or action.action_type.split(".", 1)[0]
        return self._partition_stream(target, action, partition_key)

    def _partition_stream(
        self, service: str, action: DomainAction, partition_key: str | None
    ) -> str:
        streams = self._streams.get(service)
        if streams is None:
            streams = self._streams[service] = list(
                self.queues.partition_streams(service, self._partitions)
            )
        if self._partitions == 1:
            return streams[0]
        key = str(action.action_id) if partition_key is None else partition_key
        return streams[QueueManager.partition_of(key, self._partitions)]

    def _stamp(self, action: DomainAction, **update: Any) -> DomainAction:
        if action.origin_service is None:
            update["origin_service"] = self.service_name
        return action.model_copy(update=update) if update else action

    async def send_action_async(
        self,
        action: DomainAction,
        *,
        delay: float | None = None,
        not_before: datetime | None = None,
        partition_key: str | None = None,
    ) -> str:
        """Append ``action`` to its target's stream; returns the stream entry id.

        ``partition_key`` picks the partition when the target has several (see the class
        docstring): actions sent with one key reach one partition in the order they were sent.

        With ``delay`` (seconds) or ``not_before`` (an aware time), the action stays invisible
        to workers until then (see :mod:`common.clients.scheduled`); there is no entry yet, so
        the action id is returned instead.

        Raises :class:`SendTimeoutError` if Redis has not answered within
        ``settings.redis_send_timeout_s`` (see the class docstring)."""
        action = self._stamp(action)
        if delay is None and not_before is None:
            return await self._send(action, partition_key)
        return await self._send_later(action, due_ms(delay, not_before), partition_key)

    async def _send_later(
        self, action: DomainAction, due_ms: int, partition_key: str | None = None
    ) -> str:
        fields = encode_action(action, self.settings.max_payload_bytes)
        stream = self.stream_for(action, partition_key)
        try:
            async with asyncio.timeout(self._send_timeout):
                await schedule(self.redis, stream, fields[ACTION_FIELD], due_ms, self._replication)
        except TimeoutError:
            raise SendTimeoutError(self._send_timeout, outcome_unknown=True) from None
        return str(action.action_id)

    async def _send(self, action: DomainAction, partition_key: str | None = None) -> str:
        fields = encode_action(action, self.settings.max_payload_bytes)
        deadline = asyncio.get_running_loop().time() + self._send_timeout
        stream = self.stream_for(action, partition_key)
        entry_id = await self._xadd(stream, fields, deadline, self._send_timeout)
        self._consumers.sent_to(stream)
        return entry_id

    async def _xadd(
        self, stream: str, fields: dict[str, bytes], deadline: float, timeout: float
    ) -> str:
        """XADD one entry, coalesced with the other single sends of this client.

        With nothing in flight the XADD goes out at once (sequential latency is that of a
        plain XADD); otherwise the call waits for the next pipeline, which the flusher task
        sends as soon as the XADD in flight returns. Either way the caller waits until the
        event-loop time ``deadline`` at most (``timeout``: for the error message), then gets
        :class:`SendTimeoutError`.
        """
        if not self._sending:
            self._sending = True
            bound = TaskBound(deadline)
            self._deadlines.track(bound)
            try:
                if self._replication is None:
                    return entry_id_text(await self.redis.xadd(stream, fields))  # type: ignore[arg-type]
                return await self._xadd_confirmed(stream, fields, self._replication)
            except asyncio.CancelledError:
                if bound.timed_out():  # cut off mid-command: redis-py closes that connection
                    raise SendTimeoutError(timeout, outcome_unknown=True) from None
                raise
            finally:
                self._deadlines.untrack(bound)
                self._after_send()
        queued = QueuedSend(stream, fields, deadline, timeout)
        self._queued.append(queued)
        self._deadlines.track(queued)  # past the deadline, the future fails (SendTimeoutError)
        try:
            # Cancelled while queued: the flusher skips it, nothing is sent.
            return await queued.future
        finally:
            self._deadlines.untrack(queued)

    async def _xadd_confirmed(
        self, stream: str, fields: dict[str, bytes], replication: Replication
    ) -> str:
        """XADD, then WAIT on the same connection (``redis_wait_replicas`` > 0)."""
        raw, error = await replication.write(
            self.redis, stream, lambda pipe: pipe.xadd(stream, fields)
        )
        if error is not None:
            raise not_confirmed(error, [entry_id_text(raw)])
        return entry_id_text(raw)

    def _after_send(self) -> None:
        """The XADD in flight returned: send what queued up meanwhile, or become idle."""
        if self._queued:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_queued(), name=f"xadd-coalescer:{self.client_id}"
            )
            return
        self._sending = False
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _flush_queued(self) -> None:
        """Send what queued up, one pipeline per round trip, until nothing is left."""
        try:
            while self._queued:
                batch = [q for q in self._queued if not q.future.done()]
                self._queued = []
                for queued in batch:
                    queued.taken = True
                if batch:
                    await self._send_batch(batch)
        finally:
            # Left over only if the flusher itself was cancelled: those callers are too.
            for queued in self._queued:
                queued.future.cancel()
            self._queued = []
            self._flusher = None
            self._after_send()

    async def _send_batch(self, batch: list[QueuedSend]) -> None:
        # Each caller stops waiting at its own deadline (its future fails then); the round trip
        # itself is given up when the last of them has.
        bound = TaskBound(max(q.deadline for q in batch))
        self._deadlines.track(bound)
        unconfirmed: dict[str, Exception] = {}
        try:
            if len(batch) == 1 and self._replication is None:
                one = batch[0]
                results: list[Any] = [await self.redis.xadd(one.stream, one.fields)]  # type: ignore[arg-type]
            else:
                commands = [xadd_command(q.stream, q.fields) for q in batch]
                results, unconfirmed = await send_xadds(self.redis, commands, self._replication)
        except Exception as exc:
            # The round trip failed: every caller in it gets the error.
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            return
        except asyncio.CancelledError:
            if bound.timed_out():  # every caller has had its SendTimeoutError already
                for queued in batch:
                    queued.expire()
                return
            for queued in batch:
                queued.future.cancel()  # no-op on the ones already done
            raise
        except BaseException:
            for queued in batch:
                queued.future.cancel()
            raise
        finally:
            self._deadlines.untrack(bound)
        for queued, result in zip(batch, results, strict=True):
            if queued.future.done():
                continue
            if isinstance(result, Exception):  # on a cluster, also a node's lost connection
                queued.future.set_exception(result)
            elif queued.stream in unconfirmed:
                queued.future.set_exception(
                    not_confirmed(unconfirmed[queued.stream], [entry_id_text(result)])
                )
            else:
                queued.future.set_result(entry_id_text(result))

    async def send_actions_async(
        self,
        actions: Iterable[DomainAction],
        *,
        partition_by: Callable[[DomainAction], str | None] | None = None,
    ) -> list[str]:
        """Send many actions in one pipelined round trip; returns their entry ids in order.

        ``partition_by`` gives each action's partition key (``None``: its action id), as
        ``partition_key`` does for one send; actions of one key keep their order.

        Every action is encoded (and size-checked) before anything is sent. If Redis refuses
        some of the appends, :class:`PartialSendError` says which ones went out; if it does not
        answer within ``settings.redis_send_timeout_s``, :class:`SendTimeoutError` says that
        the outcome is unknown (any of them may have been appended; none is resent)."""
        size_limit = self.settings.max_payload_bytes
        commands: list[Command] = []
        for action in actions:
            action = self._stamp(action)
            stream = self.stream_for(action, partition_by(action) if partition_by else None)
            commands.append(xadd_command(stream, encode_action(action, size_limit)))
        count = len(commands)
        if not count:
            return []
        bound = TaskBound(asyncio.get_running_loop().time() + self._send_timeout)
        self._deadlines.track(bound)
        sent_to: list[str] = [command[1] for command in commands]  # the stream of each XADD
        streams = set(sent_to)
        try:
            results, unconfirmed = await send_xadds(self.redis, commands, self._replication)
        except asyncio.CancelledError:
            if bound.timed_out():
                raise SendTimeoutError(
                    self._send_timeout, outcome_unknown=True, count=count
                ) from None
            raise
        finally:
            self._deadlines.untrack(bound)
        for stream in streams:
            self._consumers.sent_to(stream)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            ids = [None if isinstance(r, Exception) else entry_id_text(r) for r in results]
            raise PartialSendError(ids, errors)
        if unconfirmed:
            waiting = [
                entry_id_text(r)
                for r, st in zip(results, sent_to, strict=True)
                if st in unconfirmed
            ]
            raise not_confirmed(next(iter(unconfirmed.values())), waiting)
        return [entry_id_text(r) for r in results]

    async def send_action_async_with_callback(
        self,
        action: DomainAction,
        callback_action_type: str,
        callback_service: str | None = None,
        *,
        partition_key: str | None = None,
    ) -> str:
        """Send ``action``; its result comes back as a ``callback_action_type`` action.

        The callback goes to this client's own service stream unless ``callback_service``
        names another one; with several partitions, to the partition of ``partition_key``
        (default: the action id) there too, so one key's callbacks keep their order.
        """
        stream = self._partition_stream(
            callback_service or self.service_name, action, partition_key
        )
        callback_type = _ACTION_TYPE.validate_python(callback_action_type)
        return await self._send(
            self._stamp(action, callback_queue_name=stream, callback_action_type=callback_type),
            partition_key,
        )

    async def send_action_pseudo_sync(
        self, action: DomainAction, timeout: float = 30.0, *, partition_key: str | None = None
    ) -> DomainActionResponse:
        """Send ``action`` and wait for its :class:`DomainActionResponse`.

        ``partition_key`` picks the target's partition as for :meth:`send_action_async`.

        Raises :class:`ActionTimeoutError` if no reply arrives within ``timeout`` seconds,
        counted from the call: the send is bounded by the same timeout (if the send itself was
        cut off, the error's ``__cause__`` is the :class:`SendTimeoutError` saying whether the
        action went out). A reply that arrives later is discarded. Unless the action has a
        ``deadline``, it gets one at the timeout, so that workers skip work whose caller has
        given up.
        """
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        deadline = asyncio.get_running_loop().time() + timeout
        update: dict[str, Any] = {"callback_queue_name": self.reply_key}
        if action.deadline is None:
            update["deadline"] = datetime.now(UTC) + timedelta(seconds=timeout)
        action = self._stamp(action, **update)
        stream = self.stream_for(action, partition_key)
        future = self._replies.expect(action.action_id)
        try:
            fields = encode_action(action, self.settings.max_payload_bytes)
            try:
                await self._xadd(stream, fields, deadline, timeout)
            except SendTimeoutError as exc:
                raise ActionTimeoutError(action.action_id, timeout) from exc
            bound = TaskBound(deadline)
            self._deadlines.track(bound)
            try:
                return await future
            except asyncio.CancelledError:
                if not bound.timed_out():
                    raise
            finally:
                self._deadlines.untrack(bound)
            # Timed out: one look at the target says whether anybody could have answered.
            found = await self._consumers.nobody_consumes(stream)
            if found is not None:
                raise NoConsumerError(action.action_id, timeout, stream, found[1])
            raise ActionTimeoutError(action.action_id, timeout)
        finally:
            self._replies.forget(action.action_id)

    async def close(self) -> None:
        """Finish the queued sends, stop the reply listener and delete this client's reply list."""
        while self._sending:  # no flusher may outlive the client: let the sends finish
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter
        await self._consumers.close()
        await self._replies.close()
        with contextlib.suppress(Exception):  # best effort, and bounded: its key expires anyway
            async with asyncio.timeout(self._send_timeout):
                await self.redis.delete(self.reply_key)
        self._deadlines.close()

    async def __aenter__(self) -> BaseRedisClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

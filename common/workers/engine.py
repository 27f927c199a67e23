"""The consumer engine: read streams in a group, process, settle, stay alive.

One engine instance is one consumer. It reads batches with XREADGROUP (one read over all its
streams, see :mod:`common.workers.reading`), runs up to ``worker_concurrency`` deliveries at
once (inline, without tasks, when that is 1), settles their outcomes through the
:class:`Outbox` (written by a flusher as each delivery finishes: replies first, then the XACK),
schedules failed entries in the durable delay set, and survives a lost group or a lost server.
Subclasses decide what an entry means by implementing :meth:`_process_delivery`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

import redis.asyncio as aioredis

from common.clients.redis_manager import CONNECTION_ERRORS, is_embedded
from common.clients.replication import Replication
from common.config import CommonAppSettings
from common.errors import WorkerStateError
from common.models.actions import ErrorDetail
from common.workers.cancel import cancel_and_wait
from common.workers.leases import LeaseKeeper
from common.workers.logs import ContextLogger
from common.workers.outbox import Outbox
from common.workers.outcome import Delivery, Fail, HeldKey, Outcome, Write
from common.workers.reading import StreamReading
from common.workers.retry import RetryPolicy
from common.workers.settlement import Settlement
from common.workers.stats import WorkerStats
from common.workers.waiting import FIRST_BACKOFF_S, READ_ERRORS, RedisWaits

__all__ = ["StreamConsumer"]

logger = logging.getLogger(__name__)


_FINAL_FLUSH_S = 5.0  # how long a stopping worker keeps trying to write its outbox


class StreamConsumer(StreamReading, Settlement, RedisWaits, ABC):
    """A consumer of one or several streams in one consumer group (the engine under every
    worker). ``stream`` is its first stream; ``more_streams`` maps any others to their
    dead-letter streams."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: CommonAppSettings,
        *,
        stream: str,
        group: str,
        consumer: str,
        dead_letter_stream: str,
        retry_policy: RetryPolicy | None = None,
        more_streams: Mapping[str, str] | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.stream = stream
        self.streams = {stream: dead_letter_stream, **(more_streams or {})}
        self.group = group
        self.consumer = consumer
        self.retry_policy = retry_policy or RetryPolicy.from_settings(settings)
        self.log = ContextLogger(logger, settings.service_name, consumer)
        self.stats = WorkerStats()
        self.outbox = Outbox(
            stream,
            group,
            dead_letter_stream,
            settings.dead_letter_maxlen,
            consumer,
            more_streams=dict(more_streams or {}),
            replication=Replication.of(settings),
        )
        self.leases = LeaseKeeper(self)
        self.held: dict[HeldKey, Delivery] = {}  # every entry held, by (stream, id)
        self.intake: list[Delivery] = []  # claimed by a reclaimer, waiting to run
        self._retries: list[tuple[float, HeldKey]] = []  # heap of (due, (stream, entry id))
        self._waiting: dict[HeldKey, Delivery] = {}
        self._embedded = is_embedded(redis)
        self._stopping = asyncio.Event()
        self._initialized = False
        self._reading = False
        self._waiting_for_slot = False
        self._run_task: asyncio.Task[None] | None = None
        self._active: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._flush_wanted = asyncio.Event()
        self._flush_closing = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._outbox_progress = asyncio.Event()  # set after each flush attempt, and by stop()
        self._ack_timer: asyncio.TimerHandle | None = None  # a deferred XACK's flush
        # Settled entries the outbox may hold before reading pauses until they are written.
        self._outbox_limit = 2 * max(settings.worker_batch_size, settings.worker_concurrency)
        self._inline: Delivery | None = None  # the delivery a concurrency-1 loop is running
        self._grace_expired = False
        self._stop_cancels = 0  # cancellations stop() sent to the run task, not yet absorbed
        # A consumer run on its own recovers abandoned entries itself; a pool turns this off
        # and runs one reclaim loop for all its workers.
        self.standalone_recovery = True

    # -- lifecycle ---------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Create the consumer group (from id 0, with MKSTREAM) unless it exists."""
        await self._ensure_group()
        self._initialized = True

    def _add_streams(self, streams: Mapping[str, str]) -> None:
        """Read ``streams`` (stream -> dead-letter stream) too, from the next read on (before
        :meth:`run`: their reclaim loops start with the others)."""
        new = {s: d for s, d in streams.items() if s not in self.streams}
        if not new:
            return
        self.streams.update(new)
        self.outbox.more_streams.update(new)
        self._slot_groups = None  # regrouped by slot at the next read

    def stream_of(self, delivery: Delivery) -> str:
        """The stream ``delivery`` was read from."""
        return delivery.stream or self.stream

    @property
    def is_running(self) -> bool:
        return self._run_task is not None

    async def run(self) -> None:
        """Consume until :meth:`stop`; then drain in-flight work and return. A stop is final:
        once :meth:`stop` was called, ``run()`` returns at once without reading."""
        if self._run_task is not None:
            raise WorkerStateError(f"consumer {self.consumer} is already running")
        if self._stopping.is_set():
            self.log.info("stopped: not running again")
            return
        self._run_task = asyncio.current_task()
        self._grace_expired = False
        self._flush_closing.clear()
        try:
            if not self._initialized:
                await self._with_reconnect(self.initialize)
            reclaimers = []
            if self.standalone_recovery:
                from common.workers.recovery import Reclaimer

                reclaimers = [Reclaimer([self], stream=s) for s in self.streams]
                for reclaimer in reclaimers:
                    reclaimer.start()
            async with self.leases.running():
                flusher = asyncio.create_task(self._flush_loop(), name=f"flush:{self.consumer}")
                flusher.add_done_callback(self._flusher_ended)
                try:
                    await self._process_action_loop()
                finally:
                    try:
                        for reclaimer in reclaimers:
                            await reclaimer.stop()
                        await self._drain(flusher)
                    finally:
                        if not flusher.done():
                            await cancel_and_wait(flusher, 1.0)
        finally:
            self._run_task = None

    def _flusher_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._flush_closing.is_set():
            return
        # The flusher catches every error; ending otherwise is a bug. Stop rather than become
        # a zombie that reads and runs handlers but never ACKs or replies.
        self.stats.flush_error = f"flusher ended: {task.exception()!r}"
        self.log.error("the flusher ended unexpectedly (%r); stopping", task.exception())
        self._stopping.set()
        self._outbox_progress.set()

    async def stop(self) -> None:
        """Stop reading; in-flight work gets ``shutdown_grace_s`` to finish before run returns."""
        self._stopping.set()
        self._outbox_progress.set()
        task = self._run_task
        if task is None or task is asyncio.current_task():
            return
        if self._waiting_for_slot or (self._reading and not self._embedded):
            # Interrupt a blocked XREADGROUP, or a wait for a handler slot (all handlers busy:
            # the grace period starts now, not when one finishes); run() swallows it.
            # (Embedded reads block for a short time only, and fakeredis does not survive a
            # cancelled blocking call.)
            self._stop_cancels += 1
            task.cancel(msg="stop")
        elif self._inline is not None:
            # A handler runs inline in the loop: cut it off when the grace period is over.
            loop = asyncio.get_running_loop()
            loop.call_later(self.settings.shutdown_grace_s, self._cut_off_inline, task)

    def _absorb_own_cancel(self) -> bool:
        """On a CancelledError in the run task: withdraw it and return True only if it is one
        that stop() sent and nobody else asked to cancel the task too; else False (re-raise)."""
        task = asyncio.current_task()
        if task is None or self._stop_cancels == 0:
            return False
        self._stop_cancels -= 1
        return task.uncancel() == 0

    def _cut_off_inline(self, task: asyncio.Task[None]) -> None:
        if self._inline is not None and self._run_task is task:
            self._grace_expired = True
            self._stop_cancels += 1
            task.cancel(msg="shutdown grace expired")

    # -- the loop ----------------------------------------------------------------------------

    async def _process_action_loop(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stopping.is_set():
            try:
                batch = await self._next_batch()
                backoff = FIRST_BACKOFF_S
            except asyncio.CancelledError:
                if not self._absorb_own_cancel():
                    raise
                break
            except READ_ERRORS as exc:
                backoff = await self._read_failed(exc, backoff)
                continue
            if batch:
                await self._dispatch(batch)

    async def _next_batch(self) -> list[Delivery]:
        """Deliveries to run next: claimed ones, due retries, then new entries."""
        if self.stats.flush_error is not None or len(self.outbox.items) > self._outbox_limit:
            # Backpressure: what is settled cannot be written (or piles up): take no more work
            # until it is. (Returns at each flush attempt, and at stop.)
            self._outbox_progress.clear()
            self._flush_wanted.set()
            await self._outbox_progress.wait()
            return []
        if self.intake:
            batch, self.intake = self.intake, []
            return batch
        if self._retries and self._retries[0][0] <= time.monotonic():
            return await self._claim_due_retries()
        count = self.settings.worker_batch_size
        if self.settings.worker_concurrency > 1:
            if not await self._acquire_slot():  # wait for a free slot before reading more
                return []
            self._slots.release()
            count = min(count, self._free_slots())
        block = self.settings.worker_block_ms
        if self._retries:
            block = max(1, min(block, int((self._retries[0][0] - time.monotonic()) * 1000) + 1))
        return await self._read(count, block)

    def _free_slots(self) -> int:
        return max(1, self.settings.worker_concurrency - len(self._active))

    async def _dispatch(self, batch: list[Delivery]) -> None:
        started = time.monotonic()
        if self.settings.worker_concurrency == 1:
            for delivery in batch:
                if self._stopping.is_set():
                    break  # read but not started: released for another consumer at drain
                if self.held.get(delivery.key) is not delivery:
                    continue  # a lease renewal found it taken over
                if time.monotonic() - started >= self.leases.period_s and not (
                    await self._still_ours(delivery)
                ):
                    continue
                self._inline = delivery
                try:
                    outcome = await self._run_one(delivery)
                except asyncio.CancelledError:
                    if not self._grace_expired or not self._absorb_own_cancel():
                        raise
                    self.log.warning(
                        "handler of %s did not finish within shutdown_grace_s; it stays pending",
                        self._describe(delivery),
                    )
                    break
                finally:
                    self._inline = None
                self._settle(delivery, outcome)
            # The batch's last replies leave now, in this task, before reading on (the flusher
            # would send them a task switch later); their XACKs follow from the flusher.
            await self._write_replies_now()
            return
        for delivery in batch:
            if not await self._acquire_slot():  # stopping: the rest is released at drain
                break
            if self.held.get(delivery.key) is not delivery or (
                time.monotonic() - started >= self.leases.period_s
                and not await self._still_ours(delivery)
            ):
                self._slots.release()
                continue
            task = asyncio.create_task(self._run_slot(delivery))
            self._active.add(task)
            task.add_done_callback(self._active.discard)

    async def _acquire_slot(self) -> bool:
        """Take a handler slot; False (and no slot) once stop() has been called."""
        if self._stopping.is_set():
            return False
        self._waiting_for_slot = True
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            if not self._absorb_own_cancel():
                raise
            return False
        finally:
            self._waiting_for_slot = False
        if self._stopping.is_set():
            self._slots.release()
            return False
        return True

    async def _still_ours(self, delivery: Delivery) -> bool:
        """Whether ``delivery``, read a while ago (the process may have been frozen past its
        lease), is still this consumer's in Redis: checked before starting it."""
        try:
            return bool(await self.leases.confirm([delivery]))
        except CONNECTION_ERRORS as exc:
            # Unsure: do not run it, and stop renewing it, so that it is reclaimed.
            self.held.pop(delivery.key, None)
            self.log.warning(
                "could not confirm %s (%s); leaving it to be reclaimed",
                self._describe(delivery),
                exc,
            )
            return False

    async def _run_slot(self, delivery: Delivery) -> None:
        try:
            self._settle(delivery, await self._run_one(delivery))
            self._flush_wanted.set()
        finally:
            self._slots.release()

    async def _run_one(self, delivery: Delivery) -> Outcome:
        delivery.started = True
        if delivery.attempt > (delivery.policy or self.retry_policy).max_retries:
            # Delivered more often than the budget allows (its consumers kept dying): poison.
            return self._exhausted(
                delivery,
                ErrorDetail(
                    error_type="DeliveryLimitExceeded",
                    message=f"delivered {delivery.attempt} times without being settled",
                ),
            )
        try:
            return await self._process_delivery(delivery)
        except Exception as exc:
            self.log.exception("processing %s crashed", self._describe(delivery))
            return Fail(ErrorDetail.from_exception(exc))

    @abstractmethod
    async def _process_delivery(self, delivery: Delivery) -> Outcome:
        """Decide what to do with one delivery (runs the user's handler)."""

    def _describe(self, delivery: Delivery) -> str:
        """How log lines name a delivery (subclasses add the message's ids)."""
        return f"entry {delivery.entry_id.decode()}"

    def _failure_writes(self, delivery: Delivery, error: ErrorDetail) -> tuple[Write, ...]:
        """Writes that tell the sender its action failed for good (error reply, callback)."""
        return ()

    # -- shutdown ----------------------------------------------------------------------------

    async def _drain(self, flusher: asyncio.Task[None]) -> None:
        if self._active:
            _done, pending = await asyncio.wait(
                set(self._active), timeout=self.settings.shutdown_grace_s
            )
            if pending:
                self.log.warning(
                    "%d handlers did not finish within shutdown_grace_s=%.1f; "
                    "their entries stay pending",
                    len(pending),
                    self.settings.shutdown_grace_s,
                )
                for task in pending:
                    await cancel_and_wait(task, 1.0)
        # Let the flusher write what is left (never cancelled mid-pipeline, so nothing is
        # written twice), within a bound: what it cannot write stays pending, handed back.
        self._flush_closing.set()
        self._flush_wanted.set()
        await asyncio.wait({flusher}, timeout=_FINAL_FLUSH_S)
        if not flusher.done():
            await cancel_and_wait(flusher, 1.0)
        if self.outbox.items:
            self.log.error(
                "giving up writing %d settled entries (%s); they stay pending and will be "
                "delivered again",
                len(self.outbox),
                self.stats.flush_error,
            )
            self.outbox.items.clear()
        await self.leases.release_all()

"""Hand-written redis-py baselines: what a careful user writes without the toolkit.

Minimal but fair: the same entries and payloads as the toolkit runs, hiredis, a consumer group,
JSON decoded with orjson and passed to a no-op async handler, replies with RPUSH and XACK
after them, and a pseudo-sync caller with one multiplexed BLPOP listener. What they leave out is
what the toolkit adds: validation, retries, leases, dead letters, reply expiry, deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bench.workload import preload, raw_client

GROUP = "raw-group"
FIELD = b"action"
BATCH = 100
BLOCK_MS = 100  # short, so that loops notice they are done (see _Consumers.run)
_REPLY_DRAIN = 512


async def handle(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The raw no-op handler."""
    return None


async def create_group(redis: aioredis.Redis, stream: str) -> None:
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class _Consumers:
    """``loops`` consumer loops in one process, counting what they have settled."""

    def __init__(self, redis: aioredis.Redis, stream: str, n: int, per_message_ack: bool) -> None:
        self.redis = redis
        self.stream = stream
        self.n = n
        self.per_message_ack = per_message_ack
        self.done = 0
        self.finished = asyncio.Event()
        self.finished_at = 0.0  # perf_counter() when the last entry was settled

    async def loop(self, name: str) -> None:
        redis, stream = self.redis, self.stream
        while not self.finished.is_set():
            reply: Any = await redis.xreadgroup(
                GROUP, name, {stream: ">"}, count=BATCH, block=BLOCK_MS
            )
            if not reply:
                continue
            ids = []
            for entry_id, fields in reply[0][1]:
                await handle(orjson.loads(fields[FIELD]))
                if self.per_message_ack:
                    await redis.xack(stream, GROUP, entry_id)
                else:
                    ids.append(entry_id)
            if ids:
                await redis.xack(stream, GROUP, *ids)
            self.done += len(reply[0][1])
            if self.done >= self.n and not self.finished.is_set():
                self.finished_at = time.perf_counter()
                self.finished.set()

    async def run(self, loops: int, timeout: float, started: asyncio.Event | None = None) -> None:
        # The loops end by themselves once done: redis-py 8.1 can swallow a cancellation that
        # arrives while a command is starting, so cancelling a blocked read is not reliable.
        tasks = [asyncio.create_task(self.loop(f"raw-{i}")) for i in range(loops)]
        if started is not None:
            started.set()
        try:
            await asyncio.wait_for(self.finished.wait(), timeout)
        finally:
            self.finished.set()
            await asyncio.gather(*tasks)


async def drain(
    url: str, stream: str, entries: Sequence[bytes], loops: int = 1, per_message_ack: bool = False
) -> float:
    """Throughput (entries/s) of ``loops`` consumer loops draining pre-loaded entries."""
    redis = raw_client(url)
    n = len(entries)
    try:
        await preload(redis, stream, entries)
        start = time.perf_counter()
        await create_group(redis, stream)
        consumers = _Consumers(redis, stream, n, per_message_ack)
        await consumers.run(loops, timeout=300)
        return n / (consumers.finished_at - start)
    finally:
        await redis.aclose()


async def _xadd_pipelined(
    redis: aioredis.Redis, stream: str, docs: Sequence[dict[str, Any]], chunk: int
) -> None:
    """XADD ``docs`` in pipelines of ``chunk``."""
    for i in range(0, len(docs), chunk):
        pipe = redis.pipeline(transaction=False)
        for doc in docs[i : i + chunk]:
            pipe.xadd(stream, {FIELD: orjson.dumps(doc)})
        await pipe.execute()


async def end_to_end(url: str, stream: str, docs: Sequence[dict[str, Any]], chunk: int) -> float:
    """Throughput with a pipelined producer and a consumer loop running at once."""
    redis = raw_client(url)
    try:
        await create_group(redis, stream)
        consumers = _Consumers(redis, stream, len(docs), per_message_ack=False)
        started = asyncio.Event()
        run = asyncio.create_task(consumers.run(1, timeout=300, started=started))
        await started.wait()
        start = time.perf_counter()
        await _xadd_pipelined(redis, stream, docs, chunk)
        await run
        return len(docs) / (consumers.finished_at - start)
    finally:
        await redis.aclose()


async def send_awaited(url: str, stream: str, docs: Sequence[dict[str, Any]]) -> float:
    """Throughput of XADD awaited one at a time."""
    redis = raw_client(url)
    try:
        start = time.perf_counter()
        for doc in docs:
            await redis.xadd(stream, {FIELD: orjson.dumps(doc)})
        return len(docs) / (time.perf_counter() - start)
    finally:
        await redis.aclose()


async def send_pipelined(
    url: str, stream: str, docs: Sequence[dict[str, Any]], chunk: int
) -> float:
    """Throughput of XADD pipelined ``chunk`` at a time."""
    redis = raw_client(url)
    try:
        start = time.perf_counter()
        await _xadd_pipelined(redis, stream, docs, chunk)
        return len(docs) / (time.perf_counter() - start)
    finally:
        await redis.aclose()


# -- pseudo-synchronous calls ----------------------------------------------------------------


class Caller:
    """XADD a request carrying a reply key; one BLPOP listener resolves futures by action id."""

    def __init__(self, redis: aioredis.Redis, stream: str, reply_key: str) -> None:
        self.redis = redis
        self.stream = stream
        self.reply_key = reply_key
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, doc: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        action_id = doc["action_id"]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[action_id] = future
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        try:
            request = orjson.dumps({**doc, "callback_queue_name": self.reply_key})
            await self.redis.xadd(self.stream, {FIELD: request})
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(action_id, None)

    async def _listen(self) -> None:
        while not self._closed:
            items: Any = None
            if self._waiters:
                items = await self.redis.lpop(self.reply_key, _REPLY_DRAIN)
            if not items:
                popped: Any = await self.redis.blpop([self.reply_key], timeout=BLOCK_MS / 1000)
                if popped is None:
                    continue
                items = [popped[1]]
            for raw in items:
                answer = orjson.loads(raw)
                future = self._waiters.pop(answer["action_id"], None)
                if future is not None and not future.done():
                    future.set_result(answer)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            await self._task
        await self.redis.delete(self.reply_key)


@contextlib.asynccontextmanager
async def caller(url: str, stream: str) -> AsyncIterator[Caller]:
    redis = raw_client(url)
    try:
        the_caller = Caller(redis, stream, stream + ":reply:raw")
        try:
            yield the_caller
        finally:
            await the_caller.close()
    finally:
        await redis.aclose()


async def sequential_calls(the_caller: Caller, docs: Sequence[dict[str, Any]]) -> list[float]:
    """Latencies (s) of calls awaited one after another."""
    latencies = []
    for doc in docs:
        start = time.perf_counter()
        await the_caller.call(doc)
        latencies.append(time.perf_counter() - start)
    return latencies


async def pseudo_sync_in_flight(
    url: str, stream: str, docs: Sequence[dict[str, Any]], in_flight: int
) -> float:
    """Calls/s with ``in_flight`` callers, each awaiting its calls one after another."""
    redis = raw_client(url)
    caller = Caller(redis, stream, stream + ":reply:raw")
    pending = iter(docs)

    async def one_caller() -> None:
        for doc in pending:
            await caller.call(doc)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one_caller() for _ in range(in_flight)))
        return len(docs) / (time.perf_counter() - start)
    finally:
        await caller.close()
        await redis.aclose()


async def reply_worker(
    redis: aioredis.Redis, stream: str, consumer: str, stop: asyncio.Event
) -> None:
    """The raw worker: XREADGROUP a batch, handle, then RPUSH each reply and one XACK."""
    while not stop.is_set():
        reply: Any = await redis.xreadgroup(
            GROUP, consumer, {stream: ">"}, count=BATCH, block=BLOCK_MS
        )
        if not reply:
            continue
        pipe = redis.pipeline(transaction=False)
        ids: list[bytes] = []
        for entry_id, fields in reply[0][1]:
            doc = orjson.loads(fields[FIELD])
            result = await handle(doc)
            answer = {"action_id": doc["action_id"], "success": True, "data": result or {}}
            pipe.rpush(doc["callback_queue_name"], orjson.dumps(answer))
            ids.append(entry_id)
        pipe.xack(stream, GROUP, *ids)
        await pipe.execute()

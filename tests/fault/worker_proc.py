"""A worker process for fault-injection tests: ``python -m tests.fault.worker_proc ...``.

It runs a :class:`WorkerPool` of :class:`FaultWorker` on the ``fault`` service of a given
Redis URL and queue prefix until SIGTERM/SIGINT (a clean ``pool.stop()``) or SIGKILL. Every
handler writes what it did to a *record store* (``--record-url``, by default the broker itself)
under ``faultrec:{run}:...`` keys, outside the toolkit's naming, so that a test can count runs,
duplicates and timings across processes, and even across a restart of the broker:

    faultrec:{run}:handled      hash   action id -> times its handler completed
    faultrec:{run}:started      hash   action id -> times its handler started
    faultrec:{run}:runs         list   JSON {id, type, consumer, pid, start, end} of each run
    faultrec:{run}:attempts:{id} list  wall-clock start time of each run of a failing action
    faultrec:{run}:consumers    hash   consumer name -> pid
    faultrec:{run}:stats        hash   pid -> JSON {workers: [stats...], reclaimer: {...}}
    faultrec:{run}:ready        set    pids whose pool is running

Handlers by action type: ``fault.fast`` returns at once, ``fault.slow`` sleeps
``data["seconds"]`` (asyncio, so leases keep renewing), ``fault.fail`` always raises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from common import BaseWorker, CommonAppSettings, DomainAction, WorkerPool

SERVICE = "fault"


def record_key(run: str, name: str) -> str:
    return f"faultrec:{run}:{name}"


class FaultWorker(BaseWorker):
    """Records every run of every handler in the record store."""

    records: aioredis.Redis  # set by the process before the pool starts
    run_id: str

    async def _record_run(self, action: DomainAction, start: float, end: float) -> None:
        doc = {
            "id": str(action.action_id),
            "type": action.action_type,
            "consumer": self.consumer_name,
            "pid": os.getpid(),
            "start": start,
            "end": end,
        }
        await self.records.rpush(record_key(self.run_id, "runs"), json.dumps(doc))

    async def _handle_fault_fast(self, action: DomainAction) -> dict[str, Any]:
        start = time.time()
        aid = str(action.action_id)
        pipe = self.records.pipeline(transaction=False)
        pipe.hincrby(record_key(self.run_id, "started"), aid, 1)
        pipe.hincrby(record_key(self.run_id, "handled"), aid, 1)
        await pipe.execute()
        if action.data.get("log"):
            await self._record_run(action, start, time.time())
        return {"ok": True}

    async def _handle_fault_slow(self, action: DomainAction) -> dict[str, Any]:
        start = time.time()
        aid = str(action.action_id)
        await self.records.hincrby(record_key(self.run_id, "started"), aid, 1)
        await asyncio.sleep(float(action.data.get("seconds", 1.0)))
        await self.records.hincrby(record_key(self.run_id, "handled"), aid, 1)
        await self._record_run(action, start, time.time())
        return {"ok": True}

    async def _handle_fault_fail(self, action: DomainAction) -> dict[str, Any]:
        aid = str(action.action_id)
        pipe = self.records.pipeline(transaction=False)
        pipe.hincrby(record_key(self.run_id, "started"), aid, 1)
        pipe.rpush(record_key(self.run_id, f"attempts:{aid}"), repr(time.time()))
        await pipe.execute()
        raise RuntimeError(f"action {aid} always fails")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", required=True)
    p.add_argument("--record-url")
    p.add_argument("--prefix", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--visibility", type=float, default=1.0)
    p.add_argument("--claim-interval", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--block-ms", type=int, default=100)
    p.add_argument("--max-retries", type=int, default=10)
    p.add_argument("--backoff", default="exponential")
    p.add_argument("--initial-delay", type=float, default=0.05)
    p.add_argument("--max-delay", type=float, default=0.5)
    p.add_argument("--jitter", type=float, default=0.1)
    p.add_argument("--grace", type=float, default=5.0)
    p.add_argument("--stream-maxlen", type=int, default=0)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--consumer-idle-timeout", type=float, default=3600.0)
    p.add_argument("--stats-interval", type=float, default=0.2)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _stats(pool: WorkerPool[FaultWorker]) -> str:
    reclaimers = pool._reclaimers  # a test process may look inside
    return json.dumps(
        {
            "workers": [w.stats.as_dict() for w in pool.workers],
            "reclaimer": {
                "reclaimed": sum(r.reclaimed for r in reclaimers),
                "deleted_while_pending": sum(r.deleted_while_pending for r in reclaimers),
            },
            "restarts": pool.restarts,
            "time": time.time(),
        }
    )


async def _publish_stats(
    pool: WorkerPool[FaultWorker], records: aioredis.Redis, run: str, every: float
) -> None:
    while True:
        with contextlib.suppress(Exception):  # the record store may be the broker, restarting
            await records.hset(record_key(run, "stats"), str(os.getpid()), _stats(pool))
        await asyncio.sleep(every)


async def main(argv: list[str]) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    settings = CommonAppSettings(
        redis_url=args.redis_url,
        service_name=SERVICE,
        queue_prefix=args.prefix,
        visibility_timeout_s=args.visibility,
        claim_interval_s=args.claim_interval,
        worker_batch_size=args.batch,
        worker_concurrency=args.concurrency,
        worker_block_ms=args.block_ms,
        max_retries=args.max_retries,
        retry_backoff=args.backoff,
        retry_initial_delay_s=args.initial_delay,
        retry_max_delay_s=args.max_delay,
        retry_jitter=args.jitter,
        shutdown_grace_s=args.grace,
        stream_maxlen=args.stream_maxlen,
        stream_partitions=args.partitions,
        consumer_idle_timeout_s=args.consumer_idle_timeout,
    )
    records = aioredis.Redis.from_url(args.record_url or args.redis_url)
    FaultWorker.records = records
    FaultWorker.run_id = args.run
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = WorkerPool(FaultWorker, settings, num_workers=args.workers, restart_delay_s=0.2)
    pid = str(os.getpid())
    async with pool:
        await records.hset(
            record_key(args.run, "consumers"),
            mapping={w.consumer_name: pid for w in pool.workers},
        )
        stats = asyncio.create_task(_publish_stats(pool, records, args.run, args.stats_interval))
        await records.sadd(record_key(args.run, "ready"), pid)
        await stop.wait()
        logging.getLogger("fault").info("stopping on signal")
        stats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stats
    # Final stats after the drain, so that a test can read what the stop released.
    with contextlib.suppress(Exception):
        await records.hset(record_key(args.run, "stats"), pid, _stats(pool))
        await records.srem(record_key(args.run, "ready"), pid)
    await records.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""Cluster scenario: drain and end-to-end throughput on a local 3-master Redis Cluster with
``stream_partitions`` P = 1 and P = 6, beside standalone Redis in the same run (ratio).

The workers run as ``python -m common run ... --processes 2`` (one worker each), as a service
scales out on one machine (``--processes 0 --workers N``: N workers in the benchmark's own
process). On a small machine the client's Python is the limit, so the target is parity:
cluster P = 6 at least 0.85 of standalone. ``python -m bench.cluster [--n 100000] [--runs 5]
[--processes 2]`` runs it alone; the suite runs it as its ``cluster`` scenario
(``--only cluster``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence

from bench.processes import processes_drain, processes_end_to_end
from bench.report import Row
from bench.workload import (
    SERVICE,
    NoopWorker,
    encode_entries,
    make_actions,
    median,
    new_prefix,
    preload_partitions,
    settings_for,
    wait_until,
)
from common import BaseRedisClient, DomainAction, RedisManager, WorkerPool
from common.clients.queue_manager import QueueManager
from common.testing import RedisCluster

__all__ = ["measure", "rows"]

TARGET = 0.85  # cluster P = 6 over standalone


def _acked(pool: WorkerPool[NoopWorker]) -> int:
    return sum(w.stats.acked for w in pool.workers)


async def drain(url: str, entries: Sequence[bytes], workers: int, partitions: int) -> float:
    """Entries/s of one pool draining ``entries`` pre-loaded over ``partitions`` partitions."""
    prefix = new_prefix()
    settings = settings_for(url, prefix, stream_partitions=partitions)
    streams = list(QueueManager(prefix, "dev").partition_streams(SERVICE, partitions))
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await preload_partitions(redis, streams, entries)
        pool = WorkerPool(NoopWorker, settings, redis, num_workers=workers)
        begin = time.perf_counter()
        await pool.start()
        try:
            await wait_until(lambda: _acked(pool) >= len(entries), timeout=300)
            return len(entries) / (time.perf_counter() - begin)
        finally:
            await pool.stop()


async def end_to_end(
    url: str, actions: Sequence[DomainAction], workers: int, partitions: int
) -> float:
    """Actions/s through ``send_actions_async`` (chunks of 100) and a pool at once."""
    settings = settings_for(url, new_prefix(), stream_partitions=partitions)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        client = BaseRedisClient("caller", redis, settings)
        async with WorkerPool(NoopWorker, settings, redis, num_workers=workers) as pool:
            begin = time.perf_counter()
            for i in range(0, len(actions), 100):
                await client.send_actions_async(actions[i : i + 100])
            await wait_until(lambda: _acked(pool) >= len(actions), timeout=300)
            elapsed = time.perf_counter() - begin
        await client.close()
    return len(actions) / elapsed


async def measure(
    standalone_url: str,
    cluster_url: str,
    n: int,
    runs: int,
    workers: int,
    log: Callable[[str], None] = print,
    processes: int = 0,
) -> dict[str, float]:
    """Median msg/s of each (scenario, deployment); runs alternate between deployments.
    ``processes`` > 0: the workers run as ``run --processes`` (one worker each) instead of
    ``workers`` in this process."""
    targets = {
        "standalone": (standalone_url, 1),
        "cluster_p1": (cluster_url, 1),
        "cluster_p6": (cluster_url, 6),
    }
    entries = encode_entries(make_actions(n))
    results: dict[str, list[float]] = {}
    for run in range(runs):
        for name, (url, p) in targets.items():
            for kind in ("drain", "e2e"):
                actions = make_actions(n)
                if processes and kind == "drain":
                    value = await processes_drain(url, new_prefix(), entries, processes, p)
                elif processes:
                    value = await processes_end_to_end(url, new_prefix(), actions, processes, p)
                elif kind == "drain":
                    value = await drain(url, entries, workers, p)
                else:
                    value = await end_to_end(url, actions, workers, p)
                results.setdefault(f"{kind}_{name}", []).append(value)
                log(f"  run {run + 1}/{runs} {kind} {name}: {value:,.0f} msg/s")
    return {key: median(values) for key, values in results.items()}


async def rows(
    standalone_url: str,
    n: int,
    runs: int,
    workers: int,
    log: Callable[[str], None],
    processes: int = 2,
) -> list[Row]:
    """The suite's ``cluster`` scenario: starts its own local cluster for the measure."""
    with RedisCluster(masters=3) as cluster:
        m = await measure(standalone_url, cluster.url, n, runs, workers, log, processes)
    who = f"{processes} worker processes" if processes else f"{workers} workers"
    out = []
    for kind in ("drain", "e2e"):
        for p in (1, 6):
            out.append(
                Row(
                    f"cluster_{kind}_p{p}",
                    f"{kind}, 3-master cluster, P = {p}, {who} (vs standalone)",
                    "msg/s",
                    m[f"{kind}_cluster_p{p}"],
                    m[f"{kind}_standalone"],
                    target=TARGET if p == 6 else None,
                    ratio_of="cluster/standalone",
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="in this process")
    parser.add_argument(
        "--processes", type=int, default=2, help="run --processes N (0: --workers here)"
    )
    args = parser.parse_args()
    from common.testing import RedisServer

    async def go() -> None:
        with RedisServer() as server, RedisCluster(masters=3) as cluster:
            m = await measure(
                server.url, cluster.url, args.n, args.runs, args.workers, print, args.processes
            )
        for kind in ("drain", "e2e"):
            base = m[f"{kind}_standalone"]
            print(f"{kind}: standalone {base:,.0f} msg/s", end="")
            for p in (1, 6):
                value = m[f"{kind}_cluster_p{p}"]
                print(f" | cluster P={p} {value:,.0f} ({value / base:.2f})", end="")
            print()

    asyncio.run(go())


if __name__ == "__main__":
    main()

"""Sender only: ``send_actions_async`` in chunks of 100 to a local 3-master Redis Cluster with
P = 1 and P = 6, and to standalone Redis, runs alternating between the three (no workers).

``python -m bench.cluster_send [--n 20000] [--runs 5] [--chunk 100]`` prints each run and the
medians in actions/s, with the cluster's ratio to standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from bench.workload import make_actions, median, new_prefix, settings_for
from common import BaseRedisClient, DomainAction, RedisManager
from common.testing import RedisCluster, RedisServer

__all__ = ["send_rate"]


async def send_rate(
    url: str, actions: Sequence[DomainAction], partitions: int, chunk: int
) -> float:
    """Actions/s of one client sending ``actions`` in chunks of ``chunk`` (nothing reads)."""
    settings = settings_for(url, new_prefix(), stream_partitions=partitions)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient("caller", manager.get_client(), settings)
        await client.send_actions_async(actions[:chunk])  # connections opened before the clock
        begin = time.perf_counter()
        for i in range(0, len(actions), chunk):
            await client.send_actions_async(actions[i : i + chunk])
        elapsed = time.perf_counter() - begin
        await client.close()
    return len(actions) / elapsed


async def measure(standalone: str, cluster: str, n: int, runs: int, chunk: int) -> None:
    targets = {
        "standalone": (standalone, 1),
        "cluster_p1": (cluster, 1),
        "cluster_p6": (cluster, 6),
    }
    results: dict[str, list[float]] = {}
    for run in range(runs):
        for name, (url, p) in targets.items():
            value = await send_rate(url, make_actions(n), p, chunk)
            results.setdefault(name, []).append(value)
            print(f"  run {run + 1}/{runs} {name}: {value:,.0f} actions/s")
    base = median(results["standalone"])
    for name, values in results.items():
        m = median(values)
        print(f"{name:>11}: median {m:,.0f} actions/s  ({m / base:.2f} of standalone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    with RedisServer() as server, RedisCluster(masters=3) as cluster:
        asyncio.run(measure(server.url, cluster.url, args.n, args.runs, args.chunk))


if __name__ == "__main__":
    main()

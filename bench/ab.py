"""Interleaved A/B drain: this checkout against another one (e.g. a ``git worktree`` of an
older commit), in alternating subprocesses on one private server, medians and paired ratios.

On a shared VM the CPU speed drifts from minute to minute (up to 2x), so a figure from one run
compares badly with one from another; runs that alternate, pair by pair, do not.

``python -m bench.ab OTHER_TREE [--workers 4] [--pairs 8] [--n 30000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_ONE_DRAIN = """
import asyncio, sys, time
from bench.workload import (NoopWorker, action_stream, encode_entries, make_actions,
    new_prefix, preload, settings_for, wait_until)
from common import RedisManager, WorkerPool

async def main(url, n, workers):
    settings = settings_for(url, new_prefix())
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await preload(redis, action_stream(settings.queue_prefix), encode_entries(make_actions(n)))
        pool = WorkerPool(NoopWorker, settings, redis, num_workers=workers)
        start = time.perf_counter()
        await pool.start()
        await wait_until(lambda: sum(w.stats.acked for w in pool.workers) >= n, timeout=300)
        print(n / (time.perf_counter() - start))
        await pool.stop()
        await redis.delete(action_stream(settings.queue_prefix))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def _drain(tree: Path, url: str, n: int, workers: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _ONE_DRAIN, url, str(n), str(workers)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (its bench/ and common/)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--n", type=int, default=30_000)
    args = parser.parse_args()
    from common.testing import RedisServer

    with RedisServer() as server:
        other, this = [], []
        for i in range(args.pairs):
            other.append(_drain(args.other.resolve(), server.url, args.n, args.workers))
            this.append(_drain(ROOT, server.url, args.n, args.workers))
            print(f"pair {i + 1}: other {other[-1]:,.0f} msg/s, this {this[-1]:,.0f} msg/s")
    ratios = [b / a for a, b in zip(other, this, strict=True)]
    print(
        f"{args.workers} workers: other {statistics.median(other):,.0f} msg/s, "
        f"this {statistics.median(this):,.0f} msg/s (medians); this/other paired: "
        f"median {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


if __name__ == "__main__":
    main()

"""Worker processes for the benchmarks, so that what they cost is their own.

``python -m bench.serve ours|raw --url U --prefix P [--workers N] [--uvloop]`` runs a worker
pool (ours) or raw reply-worker loops until its stdin closes. ``... memory --count M`` runs a
pool until it has settled M actions, printing its RSS as JSON lines. Each mode prints a JSON
line ``{"event": "ready", ...}`` once it consumes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import raw
from bench.workload import (
    NoopWorker,
    raw_client,
    raw_stream,
    rss_mb,
    run_async,
    settings_for,
)
from common import RedisManager, WorkerPool

_ROOT = Path(__file__).resolve().parent.parent  # the checkout, so that the child imports bench


class Served:
    """Parent side: start ``python -m bench.serve MODE``, wait until it is ready, and stop it
    by closing its stdin (``async with Served(...) as child``)."""

    def __init__(self, mode: str, url: str, prefix: str, *, uvloop: bool, **options: int) -> None:
        self.args = [mode, "--url", url, "--prefix", prefix]
        for name, value in options.items():
            self.args += [f"--{name}", str(value)]
        if uvloop:
            self.args.append("--uvloop")
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    async def __aenter__(self) -> Served:
        root = _ROOT
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.serve",
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=root,
            env=env,
        )
        self.ready = await self.read_event(timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def read_event(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"bench.serve {self.args[0]} exited (code {await self.proc.wait()})")
        event: dict[str, Any] = orjson.loads(line)
        return event

    async def __aexit__(self, *exc_info: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
    sys.stdout.flush()


async def _stdin_closed() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_ours(url: str, prefix: str, workers: int) -> None:
    settings = settings_for(url, prefix)
    async with (
        RedisManager(settings) as manager,
        WorkerPool(NoopWorker, settings, manager.get_client(), num_workers=workers),
    ):
        emit("ready", rss_mb=rss_mb())
        await _stdin_closed()


async def serve_raw(url: str, prefix: str, workers: int) -> None:
    redis = raw_client(url)
    stream = raw_stream(prefix)
    await raw.create_group(redis, stream)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(raw.reply_worker(redis, stream, f"raw-{i}", stop))
        for i in range(workers)
    ]
    emit("ready", rss_mb=rss_mb())
    await _stdin_closed()
    stop.set()
    await asyncio.gather(*tasks)
    await redis.aclose()


async def serve_memory(url: str, prefix: str, workers: int, count: int, samples: int) -> None:
    """Settle ``count`` actions; sample RSS as the count grows; print the samples."""
    settings = settings_for(url, prefix)
    async with RedisManager(settings) as manager:
        pool = WorkerPool(NoopWorker, settings, manager.get_client(), num_workers=workers)
        await pool.start()
        idle = rss_mb()
        emit("ready", rss_mb=idle)
        start = time.perf_counter()
        points: list[tuple[int, float]] = []
        step = max(1, count // samples)
        next_at = step
        acked = 0
        while acked < count:
            await asyncio.sleep(0.05)
            acked = sum(w.stats.acked for w in pool.workers)
            if acked >= next_at or acked >= count:
                points.append((acked, rss_mb()))
                next_at = (acked // step + 1) * step
        elapsed = time.perf_counter() - start
        await pool.stop()
    emit("done", idle_mb=idle, samples=points, seconds=elapsed, count=acked)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("mode", choices=["ours", "raw", "memory"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "ours":
        run_async(serve_ours(args.url, args.prefix, args.workers), args.uvloop)
    elif args.mode == "raw":
        run_async(serve_raw(args.url, args.prefix, args.workers), args.uvloop)
    else:
        coro = serve_memory(args.url, args.prefix, args.workers, args.count, args.samples)
        run_async(coro, args.uvloop)


if __name__ == "__main__":
    main()

"""Duplicates after a SIGKILL with 20 ms handlers (issue 11, point 1).

A worker process (one worker, the toolkit's defaults: ``worker_batch_size=100``,
``worker_concurrency=1``) starts on a backlog of ``count`` actions whose handler takes 20 ms
and records each of its runs in Redis (``HINCRBY``, outside the toolkit's keys). Once
``kill_after`` actions are handled, mid-batch, the process is SIGKILLed; a second worker
process then finishes the backlog, taking the dead one's pending entries over once they are
idle for ``visibility_timeout_s``. Figures: handler runs beyond one per action (duplicates),
actions never handled (lost: must be 0), dead letters, and the time to finish.

A duplicate is a run that a crash cannot avoid (the handler that was running) or one whose
result had not left before the crash. With replies and ACKs held until the read batch ends,
every handler finished in the batch so far runs again.

``python -m bench.crash --url U --prefix P --run R`` is the worker process (stops when its
stdin closes). Needs a Redis server both processes can reach (not ``memory://``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.workload import (
    SERVICE,
    action_stream,
    encode_entries,
    make_data,
    preload,
    raw_client,
    run_async,
    settings_for,
)
from common import BaseWorker, DomainAction, QueueManager, RedisManager, WorkerPool

__all__ = ["RECORD_TYPE", "RecordingWorker", "sigkill_duplicates"]

RECORD_TYPE = "bench.record"
_ROOT = Path(__file__).resolve().parent.parent  # the checkout, so that the child imports bench


def record_key(run: str, name: str) -> str:
    return f"benchrec:{run}:{name}"


class RecordingWorker(BaseWorker):
    """Counts each handler run in Redis: ``started`` on entry, ``handled`` on return."""

    records: aioredis.Redis
    run_id: str
    handler_s: float = 0.02

    async def _handle_bench_record(self, action: DomainAction) -> None:
        aid = str(action.action_id)
        await self.records.hincrby(record_key(self.run_id, "started"), aid, 1)
        await asyncio.sleep(self.handler_s)
        await self.records.hincrby(record_key(self.run_id, "handled"), aid, 1)


# -- the worker process --------------------------------------------------------------------------


async def serve(url: str, prefix: str, run: str, handler_s: float, visibility: float) -> None:
    settings = settings_for(
        url,
        prefix,
        visibility_timeout_s=visibility,
        claim_interval_s=visibility / 4,
        worker_batch_size=100,
        worker_concurrency=1,
    )
    records = raw_client(url)
    RecordingWorker.records, RecordingWorker.run_id = records, run
    RecordingWorker.handler_s = handler_s
    async with (
        RedisManager(settings) as manager,
        WorkerPool(RecordingWorker, settings, manager.get_client(), num_workers=1),
    ):
        sys.stdout.write(orjson.dumps({"event": "ready", "pid": os.getpid()}).decode() + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await records.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crash")
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--handler-s", type=float, default=0.02)
    parser.add_argument("--visibility", type=float, default=1.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    coro = serve(args.url, args.prefix, args.run, args.handler_s, args.visibility)
    run_async(coro, args.uvloop)


# -- the parent side -----------------------------------------------------------------------------


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, argv: list[str], log: Path) -> _Child:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.crash",
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=_ROOT,
                env=env,
            )
        child = cls(proc, log)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError(f"bench.crash worker exited at start:\n{child.tail()}")
        return child

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()


async def _poll(condition: Any, timeout: float, interval: float = 0.002) -> bool:
    deadline = time.perf_counter() + timeout
    while not await condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def sigkill_duplicates(
    url: str,
    prefix: str,
    count: int = 150,
    kill_after: int = 40,
    handler_s: float = 0.02,
    visibility: float = 1.0,
    uvloop: bool = False,
    finish_timeout: float = 30.0,
) -> dict[str, Any]:
    """One run: SIGKILL the first worker after ``kill_after`` handled actions, let a second
    one finish; count duplicate and lost handler runs."""
    run = uuid.uuid4().hex[:10]
    redis = raw_client(url)
    qm = QueueManager(prefix, "dev")
    stream, group = action_stream(prefix), qm.consumer_group(SERVICE)
    actions = [DomainAction(action_type=RECORD_TYPE, data=make_data(i)) for i in range(count)]
    await preload(redis, stream, encode_entries(actions))
    started_key, handled_key = record_key(run, "started"), record_key(run, "handled")
    argv = ["--url", url, "--prefix", prefix, "--run", run, "--handler-s", str(handler_s)]
    argv += ["--visibility", str(visibility)] + (["--uvloop"] if uvloop else [])
    children: list[_Child] = []
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        log = Path(tmp) / "workers.log"
        try:
            start = time.perf_counter()
            first = await _Child.start(argv, log)
            children.append(first)

            async def handled_enough() -> bool:
                return int(await redis.hlen(handled_key)) >= kill_after

            if not await _poll(handled_enough, timeout=30):
                raise RuntimeError(f"the first worker handled too little:\n{first.tail()}")
            await first.kill()
            killed = time.perf_counter()
            handled_at_kill = int(await redis.hlen(handled_key))
            started_at_kill = int(await redis.hlen(started_key))
            second = await _Child.start(argv, log)
            children.append(second)

            async def finished() -> bool:
                if int(await redis.hlen(handled_key)) < count:
                    return False
                return int((await redis.xpending(stream, group))["pending"]) == 0

            done = await _poll(finished, timeout=finish_timeout, interval=0.01)
            finish = time.perf_counter()
            await second.stop()
        finally:
            for child in children:
                await child.kill()
        started = {k: int(v) for k, v in (await redis.hgetall(started_key)).items()}
        handled = {k: int(v) for k, v in (await redis.hgetall(handled_key)).items()}
        dead = int(await redis.xlen(qm.dead_letter_stream(SERVICE)))
    await redis.aclose()
    return {
        "count": count,
        "duplicates": sum(started.values()) - len(started),
        "handled_twice": sum(handled.values()) - len(handled),
        "lost": count - len(handled),
        "dead_letters": dead,
        "finished": done,
        "handled_at_kill": handled_at_kill,
        "started_at_kill": started_at_kill,
        "kill_ms": (killed - start) * 1000,
        "finish_ms": (finish - start) * 1000,
    }


if __name__ == "__main__":
    main()

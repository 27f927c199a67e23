"""Driving worker processes from a test: spawn, signal, and read what they recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction
from common.clients.queue_manager import QueueManager
from tests.fault.worker_proc import SERVICE, record_key
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    args: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class FaultRun:
    """One test's worker processes, their broker, and their record store."""

    broker_url: str
    broker: aioredis.Redis  # the toolkit's server (may be killed by the test)
    records: aioredis.Redis  # where handlers record runs (may be the broker)
    record_url: str
    logdir: Path
    prefix: str = field(default_factory=lambda: "f" + uuid.uuid4().hex[:12])
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    procs: list[Proc] = field(default_factory=list)
    entry_ids: dict[str, str] = field(default_factory=dict)  # action id -> stream entry id

    def __post_init__(self) -> None:
        qm = QueueManager(self.prefix, "dev")
        self.stream = qm.action_stream(SERVICE)
        self.dlq = qm.dead_letter_stream(SERVICE)
        self.group = qm.consumer_group(SERVICE)
        self.settings = CommonAppSettings(
            redis_url=self.broker_url, service_name="faultclient", queue_prefix=self.prefix
        )

    def key(self, name: str) -> str:
        return record_key(self.run, name)

    # -- processes ---------------------------------------------------------------------------

    def spawn(self, **options: Any) -> Proc:
        """Start a worker process; ``options`` are worker_proc flags (``workers=3``...)."""
        args = {"redis_url": self.broker_url, "record_url": self.record_url, **options}
        argv = [sys.executable, "-m", "tests.fault.worker_proc"]
        argv += ["--prefix", self.prefix, "--run", self.run]
        for name, value in args.items():
            argv += ["--" + name.replace("_", "-"), str(value)]
        log = self.logdir / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(popen, log, args)
        self.procs.append(proc)
        return proc

    async def ready(self, *procs: Proc, timeout: float = 20.0) -> None:
        """Wait until each process runs its pool (fail early if one died)."""

        async def check() -> bool:
            for p in procs:
                if not p.alive:
                    raise AssertionError(f"worker {p.pid} died at start:\n{p.tail()}")
            members = await self.records.smembers(self.key("ready"))
            return all(str(p.pid).encode() in members for p in procs)

        await wait_for(check, timeout=timeout, interval=0.05)

    async def start(self, n: int = 1, **options: Any) -> list[Proc]:
        procs = [self.spawn(**options) for _ in range(n)]
        await self.ready(*procs)
        return procs

    async def wait_exit(self, proc: Proc, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while proc.popen.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {proc.pid} did not exit in {timeout}s")
            await asyncio.sleep(0.02)
        return proc.popen.returncode

    async def kill(self, proc: Proc) -> float:
        """SIGKILL ``proc`` and reap it; returns the wall-clock time of the kill."""
        killed_at = time.time()
        proc.signal(signal.SIGKILL)
        await self.wait_exit(proc, timeout=10)
        return killed_at

    def cleanup(self) -> None:
        for p in self.procs:
            if p.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                p.signal(signal.SIGKILL)
            p.popen.wait(10)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, kind: str, n: int, **data: Any) -> list[str]:
        """Publish ``n`` actions of type ``fault.{kind}``; returns their action ids."""
        client = BaseRedisClient("faultclient", self.broker, self.settings)
        actions = [DomainAction(action_type=f"fault.{kind}", data=data) for _ in range(n)]
        ids: list[str] = []
        for start in range(0, n, 500):
            chunk = actions[start : start + 500]
            entry_ids = await client.send_actions_async(chunk)
            ids += [str(a.action_id) for a in chunk]
            self.entry_ids.update(zip(ids[start:], entry_ids, strict=True))
        await client.close()
        return ids

    # -- records -----------------------------------------------------------------------------

    async def counts(self, name: str = "handled") -> Counter[str]:
        raw = await self.records.hgetall(self.key(name))
        return Counter({k.decode(): int(v) for k, v in raw.items()})

    async def runs(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in await self.records.lrange(self.key("runs"), 0, -1)]

    async def attempts(self, action_id: str) -> list[float]:
        return [
            float(t) for t in await self.records.lrange(self.key(f"attempts:{action_id}"), 0, -1)
        ]

    async def consumers_of(self, proc: Proc) -> list[str]:
        raw = await self.records.hgetall(self.key("consumers"))
        return [k.decode() for k, v in raw.items() if int(v) == proc.pid]

    async def stats(self) -> dict[int, dict[str, Any]]:
        raw = await self.records.hgetall(self.key("stats"))
        return {int(k): json.loads(v) for k, v in raw.items()}

    async def total_stat(self, name: str) -> int:
        """Sum of one worker counter (or of the reclaimer's, ``reclaimer.<name>``) over pids."""
        total = 0
        for doc in (await self.stats()).values():
            if name.startswith("reclaimer."):
                total += int(doc["reclaimer"][name.split(".", 1)[1]])
            else:
                total += sum(int(w[name]) for w in doc["workers"])
        return total

    # -- the broker --------------------------------------------------------------------------

    async def pending(self) -> int:
        return int((await self.broker.xpending(self.stream, self.group))["pending"])

    async def pending_of(self, consumers: Iterable[str]) -> int:
        wanted = set(consumers)
        total = 0
        for c in await self.broker.xinfo_consumers(self.stream, self.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name in wanted:
                total += int(c["pending"])
        return total

    async def dead_letters(self) -> list[dict[str, str]]:
        return [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in await self.broker.xrange(self.dlq)
        ]


def report(title: str, **numbers: Any) -> None:
    """Print measured numbers (visible with ``pytest -s`` and in the -rA summary)."""
    body = ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()
    )
    print(f"\n[fault] {title}: {body}", flush=True)

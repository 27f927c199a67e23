"""A steady load through a failover: senders sending actions continuously, workers draining,
and the bookkeeping that says what a failover lost.

``Load`` runs ``senders`` tasks that each send ``calc.add`` actions one after the other with
one :class:`BaseRedisClient` (so sends coalesce as in a service), and records every send that
returned an entry id (*acknowledged*), when it started, and every send that raised (not
acknowledged: its outcome is unknown, it is never counted as lost). After a failure a sender
backs off 50 ms, so that the test's own loop does not spin while Redis is away.

What was lost is then ``acknowledged - handled``: sends whose caller had an entry id and that
no worker ever ran. Duplicates (an action run twice: a lost XACK or a lost read) are counted
apart; they are allowed (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import BaseRedisClient, DomainAction, WorkerPool

__all__ = ["Load", "LogCounter"]


@dataclass
class Load:
    client: BaseRedisClient
    senders: int = 8
    acked: dict[str, float] = field(default_factory=dict)  # action id -> send start (monotonic)
    entry_ids: dict[str, str] = field(default_factory=dict)  # action id -> its entry id
    errors: Counter[str] = field(default_factory=Counter)  # sends that raised, by error type
    error_texts: dict[str, str] = field(default_factory=dict)  # error type -> its first message
    slowest_error_s: float = 0.0  # the longest a send took to raise
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _n: int = 0

    def start(self) -> None:
        for i in range(self.senders):
            self._tasks.append(asyncio.create_task(self._sender(), name=f"sender-{i}"))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _sender(self) -> None:
        while not self._stop.is_set():
            self._n += 1
            action = DomainAction(action_type="calc.add", data={"a": self._n, "b": 0})
            started = time.monotonic()
            try:
                entry_id = await self.client.send_action_async(action)
            except Exception as exc:  # connection lost, READONLY, timeouts, replication
                self.errors[type(exc).__name__] += 1
                self.error_texts.setdefault(type(exc).__name__, str(exc))
                self.slowest_error_s = max(self.slowest_error_s, time.monotonic() - started)
                await asyncio.sleep(0.05)
            else:
                self.acked[str(action.action_id)] = started
                self.entry_ids[str(action.action_id)] = entry_id

    def acked_since(self, moment: float) -> set[str]:
        """Acknowledged sends that started at or after ``moment`` (monotonic)."""
        return {a for a, started in self.acked.items() if started >= moment}


def handled(pool: WorkerPool[Any]) -> Counter[str]:
    """How many times each action id was run, over every worker of ``pool``."""
    return Counter(a for worker in pool.workers for a in worker.seen)


class LogCounter(logging.Handler):
    """Counts the toolkit's warnings and errors during a failover (a busy loop shows here)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("common"):
            self.records.append(record)

    def __enter__(self) -> LogCounter:
        logging.getLogger("common").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("common").removeHandler(self)

    def summary(self) -> Counter[str]:
        return Counter(f"{r.name}: {r.msg}" for r in self.records)

"""Where the pseudo-sync scenario's processes run.

A sequential pseudo-sync call crosses three processes: the caller, the worker and
redis-server. On a 2-core machine a call takes about 25% longer when the scheduler puts the
caller and the worker on the same core, for the toolkit and the raw baseline alike (raw,
measured here: 0.52 ms on one core against 0.40 ms on two). The scheduler decides that anew
for each process, so unpinned runs end up comparing placements rather than code. The
sequential calls therefore run pinned: the workers (ours and raw) on one core, the caller and
redis-server on another (a third core for redis-server when there is one). Throughput
scenarios run unpinned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Placement", "pinned", "plan"]


@dataclass(frozen=True)
class Placement:
    workers: int
    caller: int
    redis: int

    def describe(self) -> str:
        return f"workers on cpu {self.workers}, caller on {self.caller}, redis on {self.redis}"


def plan() -> Placement | None:
    """The cores to use, or None where affinity cannot be set (not Linux, or one core)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return Placement(workers=cpus[0], caller=cpus[1], redis=cpus[2] if len(cpus) > 2 else cpus[1])


@contextlib.contextmanager
def pinned(
    placement: Placement | None, redis_pid: int | None, worker_pids: Iterable[int]
) -> Iterator[None]:
    """Pin this process (the caller), redis-server and the worker processes for the duration;
    restore them after."""
    if placement is None:
        yield
        return
    targets = {0: placement.caller}
    if redis_pid is not None:
        targets[redis_pid] = placement.redis
    for pid in worker_pids:
        targets[pid] = placement.workers
    before = {pid: os.sched_getaffinity(pid) for pid in targets}
    try:
        for pid, cpu in targets.items():
            os.sched_setaffinity(pid, {cpu})
        yield
    finally:
        for pid, cpus in before.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cpus)

"""Profiling targets and a summary of collapsed stacks.

Run one hot path long enough for a sampling profiler, e.g.::

    py-spy record --format raw -o drain.txt -- python -m bench.profile drain --count 200000
    py-spy record --format raw --subprocesses -o ps.txt -- python -m bench.profile pseudo_sync
    python -m bench.profile top drain.txt       # top functions, self and inclusive

``drain`` drains pre-loaded actions with one worker; ``pseudo_sync`` makes sequential
pseudo-sync calls to a worker pool in a child process (profile it with ``--subprocesses``).
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from bench import ours
from bench.serve import Served
from bench.workload import encode_entries, make_actions, new_prefix, run_async
from common.testing import RedisServer


async def drain(count: int, workers: int) -> None:
    with RedisServer() as server:
        entries = encode_entries(make_actions(count))
        rate = await ours.drain(server.url, new_prefix(), entries, workers)
        print(f"drain: {rate:,.0f} msg/s")


async def pseudo_sync(count: int, workers: int, in_flight: int, uvloop: bool) -> None:
    with RedisServer() as server:
        url, prefix = server.url, new_prefix()
        async with Served("ours", url, prefix, uvloop=uvloop, workers=workers) as child:
            print(f"worker pid {child.pid}")
            actions = make_actions(count)
            start = time.perf_counter()
            if in_flight > 1:
                await ours.pseudo_sync_in_flight(url, prefix, actions, in_flight)
            else:
                await ours.pseudo_sync_sequential(url, prefix, actions, 0)
            rate = count / (time.perf_counter() - start)
            print(f"pseudo-sync ({in_flight} in flight): {rate:,.0f} calls/s")


def top(path: Path, limit: int, pid: str | None, within: str | None) -> None:
    """Self and inclusive sample shares per function, from py-spy's ``--format raw`` file;
    ``within`` keeps only the stacks through a function of that name (e.g. ``_supervise``)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or (pid and pid not in stack.split(";", 1)[0]):
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or (within and not any(within in f for f in frames)):
            continue
        total += count
        own[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\ntop {limit} by {title} time:")
        for name, count in counter.most_common(limit):
            print(f"  {100 * count / total:5.1f}%  {name}")


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 2)[-2:]
    return f"{name} ({'/'.join(file)})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("target", choices=["drain", "pseudo_sync", "top"])
    parser.add_argument("file", nargs="?", type=Path, help="for top: py-spy raw output")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=1, help="pseudo-sync callers")
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--pid", help="for top: only the stacks of this process id")
    parser.add_argument("--within", help="for top: only the stacks through this function")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.target == "drain":
        run_async(drain(args.count, args.workers), args.uvloop)
    elif args.target == "pseudo_sync":
        coro = pseudo_sync(args.count, args.workers, args.in_flight, args.uvloop)
        run_async(coro, args.uvloop)
    else:
        if args.file is None:
            parser.error("top needs the py-spy raw file")
        top(args.file, args.limit, args.pid, args.within)


if __name__ == "__main__":
    main()

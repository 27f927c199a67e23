"""Shutdown drain in worker processes: on SIGTERM a worker finishes what it runs, releases
what it read but had not started, and another process picks that up promptly."""

from __future__ import annotations

import signal
import time

from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for

CLAIM = 0.25


async def _started_any(fault: FaultRun) -> bool:
    return bool(await fault.counts("started"))


async def _all_done(fault: FaultRun, ids: list[str]) -> bool:
    return set(await fault.counts("handled")) >= set(ids) and await fault.pending() == 0


async def test_sigterm_releases_read_but_unstarted_entries(fault: FaultRun) -> None:
    """Process A reads a batch of 10 slow actions (0.5 s each, one at a time) and gets SIGTERM
    during one of them: it finishes that one, releases the rest (XCLAIM with IDLE, so they
    are claimable at once) and exits; process B claims them within a claim interval of the
    release, even though the visibility timeout (5 s) is far from over."""
    options = {
        "workers": 1,
        "visibility": 5.0,
        "claim_interval": CLAIM,
        "batch": 10,
        "concurrency": 1,
        "grace": 5.0,
    }
    ids = await fault.publish("slow", 10, seconds=0.5)
    (a,) = await fault.start(1, **options)
    await wait_for(lambda: _started_any(fault), timeout=10)
    (b,) = await fault.start(1, **options)
    a_names = set(await fault.consumers_of(a))
    b_names = set(await fault.consumers_of(b))
    a.signal(signal.SIGTERM)
    term_at = time.time()
    assert await fault.wait_exit(a, timeout=15) == 0
    exited_at = time.time()
    await wait_for(lambda: _all_done(fault, ids), timeout=30)
    runs = await fault.runs()
    by_a = [r for r in runs if r["consumer"] in a_names]
    by_b = sorted((r for r in runs if r["consumer"] in b_names), key=lambda r: r["start"])
    released = (await fault.stats())[a.pid]["workers"][0]["released"]
    # From the end of A's last handler (it releases right after) to B's first start.
    first_pickup = by_b[0]["start"] - by_a[-1]["end"] if by_b and by_a else float("nan")
    report(
        "shutdown drain",
        a_runs=len(by_a),
        b_runs=len(by_b),
        released=released,
        a_exit_after_sigterm_s=exited_at - term_at,
        b_first_start_after_release_s=first_pickup,
    )
    assert not [r for r in by_a if r["start"] > term_at], "A started entries after SIGTERM"
    assert by_a[-1]["end"] >= term_at  # it was finishing the one it had started
    assert sorted(r["id"] for r in runs) == sorted(ids), "each action runs exactly once"
    assert released == len(ids) - len(by_a) > 0
    assert exited_at - term_at <= 0.5 + 1.5
    assert first_pickup <= CLAIM + 0.75


async def test_sigterm_releases_unstarted_reclaimed_entries_with_concurrency(
    fault: FaultRun,
) -> None:
    """Process A (concurrency 2) has reclaimed 10 slow entries of a SIGKILLed process and runs
    two at a time when it gets SIGTERM: it must finish those two and release the other 8 for
    process B, not go on starting them during its grace period."""
    base = {"workers": 1, "visibility": 1.0, "claim_interval": CLAIM, "batch": 10, "grace": 10}
    ids = await fault.publish("slow", 10, seconds=0.6)
    (c,) = await fault.start(1, concurrency=1, **base)
    await wait_for(lambda: _started_any(fault), timeout=10)
    await fault.kill(c)
    (a,) = await fault.start(1, concurrency=2, **base)
    await wait_for(lambda: _started_at_least(fault, 3), timeout=10)  # A runs two of them
    await fault.start(1, concurrency=2, **base)  # B, to take what A releases
    a.signal(signal.SIGTERM)
    term_at = time.time()
    assert await fault.wait_exit(a, timeout=20) == 0
    exit_s = time.time() - term_at
    await wait_for(lambda: _all_done(fault, ids), timeout=30)
    a_names = set(await fault.consumers_of(a))
    by_a = [r for r in await fault.runs() if r["consumer"] in a_names]
    started_after = [r for r in by_a if r["start"] > term_at]
    report(
        "shutdown drain, concurrency 2",
        a_runs=len(by_a),
        a_started_after_sigterm=len(started_after),
        a_exit_after_sigterm_s=exit_s,
    )
    assert not started_after, "A started entries after SIGTERM"
    assert exit_s <= 0.6 + 1.5


async def _started_at_least(fault: FaultRun, n: int) -> bool:
    return sum((await fault.counts("started")).values()) >= n

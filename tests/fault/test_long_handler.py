"""Handlers that run several visibility timeouts: the lease keeps them from running twice,
while another worker process idles next to them and reclaims every claim interval."""

from __future__ import annotations

import time

import pytest

from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for


async def _done(fault: FaultRun, ids: set[str]) -> bool:
    handled = await fault.counts("handled")
    return set(handled) >= ids and await fault.pending() == 0


async def _long_handlers(
    fault: FaultRun, *, visibility: float, factor: float, actions: int, fast: int = 0
) -> None:
    options = {
        "workers": 1,
        "visibility": visibility,
        "claim_interval": 0.25,
        "batch": actions,
        "concurrency": actions,
    }
    seconds = factor * visibility
    ids = await fault.publish("slow", actions, seconds=seconds)
    (a,) = await fault.start(1, **options)  # takes them all, runs them at once
    await wait_for(lambda: _started(fault, actions), timeout=10)
    (b,) = await fault.start(1, **options)  # idle, reclaiming
    started = time.monotonic()
    fast_ids = await fault.publish("fast", fast) if fast else []
    await wait_for(lambda: _done(fault, set(ids) | set(fast_ids)), timeout=seconds + 20)
    runs = [r for r in await fault.runs() if r["type"] == "fault.slow"]
    started_counts = await fault.counts("started")
    stats = await fault.stats()
    report(
        "long handlers",
        visibility_s=visibility,
        handler_s=seconds,
        actions=actions,
        runs=len(runs),
        double_starts=sum(n - 1 for aid, n in started_counts.items() if aid in ids),
        lease_renewals_a=sum(w["lease_renewals"] for w in stats[a.pid]["workers"]),
        reclaimed_b=sum(w["reclaimed"] for w in stats[b.pid]["workers"]),
        elapsed_s=time.monotonic() - started,
    )
    assert sorted(r["id"] for r in runs) == sorted(ids), "a long handler ran twice"
    assert all(started_counts[aid] == 1 for aid in ids)
    b_consumers = set(await fault.consumers_of(b))
    assert not [r for r in runs if r["consumer"] in b_consumers]
    assert sum(w["reclaimed"] for w in stats[b.pid]["workers"]) == 0


async def _started(fault: FaultRun, n: int) -> bool:
    return len(await fault.counts("started")) >= n


async def test_handler_running_three_visibility_timeouts_runs_once(fault: FaultRun) -> None:
    """Four handlers of 3 s (3x the 1 s visibility timeout) run concurrently in process A
    while process B idles and reclaims every 0.25 s: each runs exactly once, B takes none."""
    await _long_handlers(fault, visibility=1.0, factor=3, actions=4)


@pytest.mark.slow
async def test_handler_running_ten_visibility_timeouts_under_traffic(fault: FaultRun) -> None:
    """Eight handlers of 10x the (0.5 s) visibility timeout, while 2,000 fast actions flow
    through the other process: still each long one runs once."""
    await _long_handlers(fault, visibility=0.5, factor=10, actions=8, fast=2000)

"""SIGKILL and SIGSTOP of worker processes under load: nothing is lost, recovery is timely."""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from typing import Any

import pytest

from tests.fault.harness import FaultRun, Proc, report
from tests.helpers import wait_for

VISIBILITY = 1.0
CLAIM = 0.25
BATCH = 20
# Killing a process (0.05 s poll) and a reclaim pass on a loaded two-core box take a little time.
RECOVERY_SLACK = 0.75


async def _recovery_time(fault: FaultRun, consumers: list[str], killed_at: float) -> float:
    """Seconds from the kill until no entry is pending for the killed consumers."""
    await wait_for(
        lambda: _none_pending(fault, consumers), timeout=VISIBILITY + CLAIM + 15, interval=0.05
    )
    return time.time() - killed_at


async def _none_pending(fault: FaultRun, consumers: list[str]) -> bool:
    return await fault.pending_of(consumers) == 0


async def _chaos(
    fault: FaultRun,
    *,
    processes: int,
    workers: int,
    actions: int,
    kills: int,
    kill_every: float,
    seed: int,
    concurrency: int = 1,
) -> None:
    rng = random.Random(seed)
    options: dict[str, Any] = {
        "workers": workers,
        "visibility": VISIBILITY,
        "claim_interval": CLAIM,
        "batch": BATCH,
        "concurrency": concurrency,
        "max_retries": 20,  # a delivery count never reached by kills alone
        "log_level": "WARNING",
    }
    alive: list[Proc] = await fault.start(processes, **options)
    started = time.monotonic()
    duration = kills * kill_every + kill_every / 2
    ids: list[str] = []

    # Handlers sized so that the workers stay busy for the whole run: every kill catches
    # handlers mid-run and batches read but not finished.
    slow_s = round(0.7 * processes * workers * concurrency * duration / actions, 4)

    async def produce() -> None:
        chunks = max(1, int(duration / 0.1))
        per_chunk = -(-actions // chunks)
        while len(ids) < actions:
            n = min(per_chunk, actions - len(ids))
            fast = n // 5
            ids.extend(await fault.publish("fast", fast))
            ids.extend(await fault.publish("slow", n - fast, seconds=slow_s))
            await asyncio.sleep(0.1)

    recoveries: list[asyncio.Task[float]] = []
    stranded: list[int] = []  # entries pending for the killed consumers, per kill
    killed_consumers = 0

    async def chaos() -> None:
        nonlocal killed_consumers
        for _ in range(kills):
            await asyncio.sleep(kill_every)
            victim = rng.choice(alive)
            consumers = await fault.consumers_of(victim)
            killed_at = await fault.kill(victim)
            stranded.append(await fault.pending_of(consumers))
            killed_consumers += len(consumers)
            alive.remove(victim)
            recoveries.append(asyncio.create_task(_recovery_time(fault, consumers, killed_at)))
            alive.append(fault.spawn(**options))

    try:
        await asyncio.gather(produce(), chaos())
        times = await asyncio.gather(*recoveries)
    finally:
        for task in recoveries:
            task.cancel()
    wanted = set(ids)
    await wait_for(lambda: _all_handled(fault, wanted), timeout=60, interval=0.2)
    await wait_for(lambda: _pending_is_zero(fault), timeout=VISIBILITY + CLAIM + 10)
    handled = await fault.counts("handled")
    elapsed = time.monotonic() - started
    duplicates = {aid: n - 1 for aid, n in handled.items() if n > 1}
    dead = await fault.dead_letters()
    reclaimed = await fault.total_stat("reclaimed")
    report(
        "sigkill chaos",
        seed=seed,
        processes=processes,
        workers_per_process=workers,
        actions=len(ids),
        kills=kills,
        handler_s=slow_s,
        stranded_per_kill=stranded,
        duplicates=sum(duplicates.values()),
        duplicated_actions=len(duplicates),
        duplicate_sample=sorted(duplicates.items())[:5],
        reclaimed_by_live_processes=reclaimed,
        dead_letters=len(dead),
        recovery_max_s=max(times),
        recovery_mean_s=statistics.mean(times),
        recovery_bound_s=VISIBILITY + CLAIM,
        elapsed_s=elapsed,
    )
    assert len(wanted) == actions
    assert not wanted - set(handled), "actions lost"
    assert set(handled) <= wanted
    assert not dead, f"unexpected dead letters: {dead[:3]}"
    assert await fault.pending() == 0
    # A kill repeats at most what its workers had handled but not yet ACKed: one batch each
    # (the engine ACKs a batch after running it) plus what ran concurrently.
    bound = killed_consumers * (BATCH + concurrency)
    assert sum(duplicates.values()) <= bound, duplicates
    assert max(times) <= VISIBILITY + CLAIM + RECOVERY_SLACK, times
    assert sum(stranded) > 0, "no kill caught any work: the test proved nothing"


async def _all_handled(fault: FaultRun, wanted: set[str]) -> bool:
    return not wanted - set(await fault.counts("handled"))


async def _pending_is_zero(fault: FaultRun) -> bool:
    return await fault.pending() == 0


async def test_sigkill_random_workers_loses_nothing(fault: FaultRun) -> None:
    """3 processes x 2 workers, 2,000 actions, a random process SIGKILLed every 2 s (3 times)
    and replaced: every action is handled, duplicates stay within what the killed workers
    had run but not ACKed, the pending list ends empty, and each kill's entries are claimed
    by survivors within visibility timeout + claim interval."""
    await _chaos(
        fault, processes=3, workers=2, actions=2000, kills=3, kill_every=2.0, seed=20240601
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_chaos_long(fault: FaultRun) -> None:
    """The long version: 4 processes x 2 workers (concurrency 4), 10,000 actions, 15 kills."""
    await _chaos(
        fault,
        processes=4,
        workers=2,
        actions=10_000,
        kills=15,
        kill_every=1.5,
        seed=int(time.time()),
        concurrency=4,
    )


# -- SIGSTOP -------------------------------------------------------------------------------


async def _sigstop_scenario(
    fault: FaultRun, *, actions: int, seconds: float, stop_for: float
) -> dict[str, Any]:
    """Worker A takes a batch of slow actions and is frozen for ``stop_for`` seconds (longer
    than the visibility timeout) while worker B idles; then A is resumed."""
    options = {
        "workers": 1,
        "visibility": VISIBILITY,
        "claim_interval": CLAIM,
        "batch": actions,
        "concurrency": 1,
    }
    # Published first, so that A's first read takes them all as one batch.
    ids = await fault.publish("slow", actions, seconds=seconds)
    (a,) = await fault.start(1, **options)
    await wait_for(lambda: _started_any(fault), timeout=10)
    a.signal(signal.SIGSTOP)
    stopped_at = time.time()
    (b,) = await fault.start(1, **options)
    a_consumers = await fault.consumers_of(a)
    await wait_for(lambda: _none_pending(fault, a_consumers), timeout=stop_for + 10)
    taken_over_s = time.time() - stopped_at
    remaining = stop_for - (time.time() - stopped_at)
    if remaining > 0:
        await asyncio.sleep(remaining)  # the freeze itself, not a wait for work
    a.signal(signal.SIGCONT)
    await wait_for(lambda: _all_handled(fault, set(ids)), timeout=actions * seconds + 20)
    await wait_for(lambda: _pending_is_zero(fault), timeout=VISIBILITY + CLAIM + 10)
    # Let A finish whatever it resumed, so that its runs are all recorded.
    await _quiet(fault, seconds * actions + 5)
    runs = await fault.runs()
    by_id: dict[str, list[str]] = {}
    for r in runs:
        by_id.setdefault(r["id"], []).append(r["consumer"])
    a_names, b_names = set(a_consumers), set(await fault.consumers_of(b))
    doubles = [aid for aid, who in by_id.items() if len(who) > 1]
    a_after_resume = [r for r in runs if r["consumer"] in a_names and r["end"] > stopped_at]
    result = {
        "actions": actions,
        "runs": len(runs),
        "double_runs": len(doubles),
        "run_by_b": sum(1 for who in by_id.values() if set(who) & b_names),
        "a_runs_ending_after_resume": len(a_after_resume),
        "taken_over_after_s": taken_over_s,
    }
    report("sigstop", **result)
    assert set(by_id) == set(ids)
    return result


async def _started_any(fault: FaultRun) -> bool:
    return bool(await fault.counts("started"))


async def _quiet(fault: FaultRun, timeout: float) -> None:
    """Wait until no handler has started or finished for a while (by the record counts)."""
    last: tuple[int, int] | None = None
    stable_since = time.monotonic()

    async def settled() -> bool:
        nonlocal last, stable_since
        now = (
            sum((await fault.counts("started")).values()),
            await fault.records.llen(fault.key("runs")),
        )
        if now != last:
            last, stable_since = now, time.monotonic()
            return False
        return now[0] == now[1] and time.monotonic() - stable_since > 0.3

    await wait_for(settled, timeout=timeout, interval=0.05)


async def test_sigstop_worker_work_is_taken_over(fault: FaultRun) -> None:
    """A worker frozen (SIGSTOP) longer than the visibility timeout has its whole batch taken
    over by another process; after SIGCONT every action has run, the pending list is empty,
    and the double runs are counted and printed."""
    result = await _sigstop_scenario(fault, actions=6, seconds=0.4, stop_for=3 * VISIBILITY)
    assert result["run_by_b"] >= result["actions"] - 1
    assert result["taken_over_after_s"] <= VISIBILITY + CLAIM + RECOVERY_SLACK + 0.5


async def test_sigstop_resumed_worker_runs_only_its_in_flight_action(fault: FaultRun) -> None:
    """After SIGCONT the frozen worker may finish the one handler it was in (at-least-once),
    but must not start the entries another consumer took over meanwhile."""
    result = await _sigstop_scenario(fault, actions=6, seconds=0.4, stop_for=3 * VISIBILITY)
    assert result["double_runs"] <= 1

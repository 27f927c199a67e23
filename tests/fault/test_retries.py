"""Always-failing actions in worker processes: dead-lettered after exactly ``max_retries``
deliveries, with the delays between attempts following the retry policy's backoff, even when
the worker holding them is SIGKILLed between attempts."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import pytest

from common.workers.retry import RetryPolicy
from tests.fault.harness import FaultRun, report
from tests.helpers import wait_for

# Each attempt starts at most this late (past the jittered delay): waking up from the blocked
# read, the retry's XCLAIM, and the handler's first write, on a loaded two-core machine.
LATE_TOLERANCE_S = 0.15
EARLY_TOLERANCE_S = 0.01


async def _dead_lettered(fault: FaultRun, n: int) -> bool:
    return len(await fault.dead_letters()) >= n


def _check_dead_letters(dead: list[dict[str, str]], ids: list[str], max_retries: int) -> None:
    by_id = {}
    for record in dead:
        original = record["original"]
        by_id[next(i for i in ids if i in original)] = record
    assert set(by_id) == set(ids), "each action dead-lettered once"
    for record in by_id.values():
        assert record["reason"] == "max_retries"
        assert record["retries"] == str(max_retries)
        assert "always fails" in record["error"]


@pytest.mark.parametrize(
    ("backoff", "initial", "maximum"),
    [("exponential", 0.2, 0.6), ("linear", 0.25, 1.0)],
)
async def test_always_failing_actions_follow_the_backoff_then_dead_letter(
    fault: FaultRun, backoff: str, initial: float, maximum: float
) -> None:
    """Five actions that always fail, in two worker processes: each runs exactly
    ``max_retries`` (5) times, then lands in the dead-letter stream with ``retries=5`` and
    ``reason=max_retries``, and nothing stays pending. Measured delays between attempts are
    within the policy's jitter (10%) of its schedule, minus 10 ms or plus 150 ms."""
    max_retries, jitter = 5, 0.1
    policy = RetryPolicy(max_retries, backoff, initial, maximum, jitter)  # type: ignore[arg-type]
    options: dict[str, Any] = {
        "workers": 1,
        "max_retries": max_retries,
        "backoff": backoff,
        "initial_delay": initial,
        "max_delay": maximum,
        "jitter": jitter,
        "block_ms": 1000,  # a retry must wake the blocked read, not wait for it to time out
    }
    await fault.start(2, **options)
    ids = await fault.publish("fail", 5)
    expected_total = sum(policy.base_delay(k) for k in range(1, max_retries))
    await wait_for(lambda: _dead_lettered(fault, len(ids)), timeout=expected_total * 1.2 + 10)
    _check_dead_letters(await fault.dead_letters(), ids, max_retries)
    assert await fault.pending() == 0
    errors: list[float] = []  # measured delay - scheduled delay (before jitter)
    beyond: list[float] = []  # how far outside the jitter band
    for aid in ids:
        attempts = await fault.attempts(aid)
        assert len(attempts) == max_retries, (aid, attempts)
        for k, (t0, t1) in enumerate(itertools.pairwise(attempts), start=1):
            base = policy.base_delay(k)
            delay = t1 - t0
            assert base * (1 - jitter) - EARLY_TOLERANCE_S <= delay, (k, delay, base)
            assert delay <= base * (1 + jitter) + LATE_TOLERANCE_S, (k, delay, base)
            errors.append(delay - base)
            beyond.append(max(delay - base * (1 + jitter), base * (1 - jitter) - delay, 0.0))
    report(
        f"backoff {backoff}",
        actions=len(ids),
        max_retries=max_retries,
        schedule_s=[round(policy.base_delay(k), 3) for k in range(1, max_retries)],
        mean_error_s=statistics.mean(errors),
        max_abs_error_s=max(abs(e) for e in errors),
        jitter_bound_s=max(policy.base_delay(k) for k in range(1, max_retries)) * jitter,
        max_outside_jitter_band_s=max(beyond),
    )


async def test_attempt_count_survives_a_sigkill_between_attempts(fault: FaultRun) -> None:
    """The attempt count is Redis's delivery counter: a worker SIGKILLed while its failed
    actions wait for their retry does not reset it. The survivor reclaims them and they are
    still dead-lettered after exactly ``max_retries`` runs in total."""
    max_retries = 4
    options: dict[str, Any] = {
        "workers": 1,
        "max_retries": max_retries,
        "backoff": "fixed",
        "initial_delay": 0.6,
        "max_delay": 0.6,
        "jitter": 0.0,
        "visibility": 1.0,
        "claim_interval": 0.25,
    }
    ids = await fault.publish("fail", 5)
    (a,) = await fault.start(1, **options)
    await wait_for(lambda: _runs_at_least(fault, ids, 2), timeout=10)
    await fault.kill(a)
    await fault.start(1, **options)
    await wait_for(lambda: _dead_lettered(fault, len(ids)), timeout=20)
    _check_dead_letters(await fault.dead_letters(), ids, max_retries)
    runs = {aid: len(await fault.attempts(aid)) for aid in ids}
    report("attempts across a sigkill", actions=len(ids), runs_per_action=sorted(runs.values()))
    assert set(runs.values()) == {max_retries}
    assert await fault.pending() == 0


async def _runs_at_least(fault: FaultRun, ids: list[str], n: int) -> bool:
    for aid in ids:
        if len(await fault.attempts(aid)) < n:
            return False
    return True

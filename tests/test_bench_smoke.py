"""The benchmark suite runs end to end at smoke size and reports every scenario (no timings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = {
    "drain_1",
    "drain_4",
    "drain_ref_ack_each",
    "end_to_end",
    "send_awaited",
    "send_batch",
    "pseudo_sync_p50",
    "pseudo_sync_p99",
    "pseudo_sync_in_flight",
    "memory",
    "embedded_pseudo_sync_p50",
    "embedded_pseudo_sync_p99",
    "embedded_drain",
    "embedded_idle_cpu",
    "declarative_drain",
    "declarative_depends_drain",
    "declarative_send",
    "slow_calls_answered",
    "slow_calls_first_reply",
    "sigkill_duplicates",
    "sigkill_lost",
    "metrics_drain",
    "processes_drain",
}
NO_RAW_SIDE = ("embedded_", "slow_calls_", "sigkill_")  # measured against budgets


@pytest.mark.timeout(180)
def test_bench_smoke_reports_every_scenario_as_json() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/bootstrap --with-redis-server)")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)

    machine = result["machine"]
    assert machine["cpus"] >= 1 and machine["python"] and machine["redis_server"]
    scenarios = result["scenarios"]
    assert set(scenarios) == SCENARIOS
    for name, row in scenarios.items():
        if name == "sigkill_lost":  # a SIGKILLed worker's actions are all handled in the end
            assert row["ours"] == 0 and row["met"] is True, row["detail"]
            continue
        if name == "sigkill_duplicates":  # zero when the kill falls between two actions
            assert row["ours"] >= 0 and row["ratio"] >= 0, name
            assert all(run["finished"] for run in row["detail"]["runs"]), row["detail"]
            continue
        assert row["ours"] > 0, name
        if name == "memory":
            detail = row["detail"]
            assert detail["start_mb"] > 0 and detail["end_mb"] > 0
            assert detail["count"] >= result["sizes"]["memory"]
        elif name.startswith(NO_RAW_SIDE):
            assert row["raw"] is None, name
        else:
            assert row["raw"] > 0, name
        assert row["ratio"] > 0, name
        if row["target"] is not None:
            assert row["target_op"] in ("<=", ">=") and isinstance(row["met"], bool), name


def test_sequential_calls_pin_the_processes_then_restore_them() -> None:
    from bench import placement
    from common.testing import RedisServer

    where = placement.plan()
    own_before = os.sched_getaffinity(0)
    with RedisServer() as server:
        pid = server.pid
        assert pid is not None
        redis_before = os.sched_getaffinity(pid)
        with placement.pinned(where, pid, [pid]):  # redis as a "worker" too: workers win
            if where is not None:
                assert os.sched_getaffinity(0) == {where.caller}
                assert os.sched_getaffinity(pid) == {where.workers}
        assert os.sched_getaffinity(pid) == redis_before
    assert os.sched_getaffinity(0) == own_before
    assert server.pid is None


@pytest.mark.timeout(120)
def test_a_processes_drain_backlog_above_the_stream_cap_is_read_not_trimmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hidden backlog looks consumed to the workers' trim until shown: the drain must
    still read every entry (it once measured a near-empty stream past ``stream_maxlen``)."""
    import asyncio

    import redis

    from bench.processes import processes_drain
    from bench.workload import SERVICE, encode_entries, make_actions, new_prefix
    from common.clients.queue_manager import QueueManager
    from common.testing import RedisServer

    monkeypatch.setenv("STREAM_MAXLEN", "500")
    prefix, n = new_prefix(), 3000
    queues = QueueManager(prefix, "dev")
    with RedisServer() as server:
        asyncio.run(processes_drain(server.url, prefix, encode_entries(make_actions(n)), 1))
        (group,) = redis.Redis(port=server.port).xinfo_groups(queues.action_stream(SERVICE))
    assert group["entries-read"] == n + 1  # the backlog and the wake-up entry

"""The process supervisor on trivial child commands (no Redis)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from common.supervisor import EXIT_CONFIG, Supervisor
from tests.helpers import wait_for

_SLEEPER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "time.sleep(60)\n"
)


async def test_a_configuration_error_in_a_child_stops_all_with_status_2() -> None:
    supervisor = Supervisor(
        [sys.executable, "-c", f"import sys; sys.exit({EXIT_CONFIG})"], 2, grace_s=5
    )
    assert await asyncio.wait_for(supervisor.run(), 20) == EXIT_CONFIG
    assert supervisor.restarts == 0 and supervisor.pids == []


async def test_a_crashing_child_is_restarted_with_a_growing_backoff() -> None:
    supervisor = Supervisor(
        [sys.executable, "-c", "import sys; sys.exit(3)"],
        1,
        grace_s=5,
        first_backoff_s=0.05,
        max_backoff_s=0.2,
    )
    running = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: supervisor.restarts >= 4, 20)
    finally:
        supervisor.stop()
        code = await asyncio.wait_for(running, 10)
    assert code == 0  # nothing was running at the stop: nothing failed to drain


async def test_stop_terminates_every_child_and_returns_0_when_they_exit_cleanly() -> None:
    supervisor = Supervisor([sys.executable, "-c", _SLEEPER], 2, grace_s=10)
    running = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: len(supervisor.pids) == 2, 20)
    finally:
        supervisor.stop()
        code = await asyncio.wait_for(running, 20)
    assert code == 0 and supervisor.pids == [] and supervisor.restarts == 0


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_and_counts_as_failed(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    stubborn = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor([sys.executable, "-c", stubborn, str(ready)], 1, grace_s=0.5)
    running = asyncio.create_task(supervisor.run())
    try:
        await wait_for(ready.exists, 20)  # SIGTERM is ignored from now on
    finally:
        supervisor.stop()
        code = await asyncio.wait_for(running, 20)
    assert code == 1 and supervisor.pids == []

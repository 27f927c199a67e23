"""Several worker processes under one supervisor: ``python -m common run TARGET --processes P``.

One Python process drains on one core; like Celery's prefork pool and uvicorn's ``--workers``,
the supervisor starts ``P`` copies of a command (each one an ordinary ``run`` of the target, with
its own connections and consumers in the same groups), and:

- restarts a process that exits while nobody asked it to (a crash, an OOM kill, a SIGKILL),
  after a backoff that doubles with each quick failure (``first_backoff_s`` up to
  ``max_backoff_s``) and starts again from the first step once a process has run for
  ``stable_after_s``; a process exiting with status 2 (a configuration error: a restart would
  only repeat it) stops them all instead;
- on SIGTERM or SIGINT sends SIGTERM to every process, lets them drain within ``grace_s``, kills
  what is still running then, and returns 0 when every process stopped cleanly.

The supervisor holds no Redis connection (``run --metrics-port`` keeps one beside it for the
gauges: :mod:`common.ops.multiprocess`); the processes share its process group (a terminal's
Ctrl-C reaches them too, which is harmless: they stop once either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "EXIT_CONFIG",
    "METRICS_MIRROR_ENV",
    "PROCESS_SLOT_ENV",
    "SUPERVISOR_PID_ENV",
    "Supervisor",
    "follow_supervisor",
]

logger = logging.getLogger("common.supervisor")

EXIT_CONFIG = 2
"""A child's exit status meaning "bad configuration": not restarted."""
PROCESS_SLOT_ENV = "COMMON_PROCESS_SLOT"
"""Set in each child's environment to its slot number (0 .. P-1)."""
SUPERVISOR_PID_ENV = "COMMON_SUPERVISOR_PID"
"""Set in each child's environment to the supervisor's pid."""
METRICS_MIRROR_ENV = "COMMON_METRICS_MIRROR_S"
"""Set in each child's environment when the supervisor serves metrics (``--metrics-port``):
every that many seconds the child mirrors its counters into ``PROMETHEUS_MULTIPROC_DIR``
(:mod:`common.ops.multiprocess`)."""

_CLEAN = (0, -signal.SIGTERM, -signal.SIGINT)  # a process stopped before its handlers existed


class Supervisor:
    """``processes`` copies of ``command`` kept running until a signal (see the module doc)."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        grace_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 30.0,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.command = list(command)
        self.processes = processes
        self.grace_s = grace_s
        self.env = dict(os.environ if env is None else env)
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.on_exit = on_exit  # called with the pid of each process that has exited
        self.restarts = 0
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stop = asyncio.Event()
        self._fatal = False

    @property
    def pids(self) -> list[int]:
        """The pids of the processes running now."""
        return [p.pid for p in self._procs.values() if p.returncode is None]

    def stop(self) -> None:
        """Ask every process to drain and stop (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until :meth:`stop` (SIGTERM, SIGINT) or a configuration error; the exit status:
        0 when every process stopped cleanly, 2 after a configuration error, else 1."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        slots = [
            asyncio.create_task(self._keep(slot), name=f"process-slot:{slot}")
            for slot in range(self.processes)
        ]
        try:
            logger.info("supervising %d worker processes; SIGTERM or SIGINT to stop", len(slots))
            await self._stop.wait()
            running = [p for p in self._procs.values() if p.returncode is None]
            logger.info("stopping: draining %d worker processes", len(running))
            for proc in running:
                _terminate(proc)
            _done, pending = await asyncio.wait(slots, timeout=self.grace_s)
            if pending:
                for proc in self._procs.values():
                    if proc.returncode is None:
                        logger.error(
                            "process %d did not stop in %.1fs: killed", proc.pid, self.grace_s
                        )
                        proc.kill()
                await asyncio.wait(pending)
            clean = all(p.returncode in _CLEAN for p in running)
        finally:
            for task in slots:
                task.cancel()
            for proc in self._procs.values():
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for sig in installed:
                loop.remove_signal_handler(sig)
        if self._fatal:
            return EXIT_CONFIG
        logger.info("stopped %d worker processes", self.processes)
        return 0 if clean else 1

    async def _keep(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.first_backoff_s
        env = {**self.env, PROCESS_SLOT_ENV: str(slot), SUPERVISOR_PID_ENV: str(os.getpid())}
        while not self._stop.is_set():
            proc = await asyncio.create_subprocess_exec(*self.command, env=env)
            self._procs[slot] = proc
            started = loop.time()
            logger.info("started worker process %d (pid %d)", slot, proc.pid)
            if self._stop.is_set():  # stopped while it was being started
                _terminate(proc)
            code = await proc.wait()
            if self.on_exit is not None:
                self.on_exit(proc.pid)
            if self._stop.is_set():
                logger.info("worker process %d (pid %d) exited with %d", slot, proc.pid, code)
                return
            if code == EXIT_CONFIG:
                logger.error(
                    "worker process %d (pid %d) exited with status %d (a configuration "
                    "error): stopping all",
                    slot,
                    proc.pid,
                    code,
                )
                self._fatal = True
                self._stop.set()
                return
            if loop.time() - started >= self.stable_after_s:
                backoff = self.first_backoff_s
            self.restarts += 1
            logger.warning(
                "worker process %d (pid %d) exited with %d after %.1fs; restarting in %.1fs",
                slot,
                proc.pid,
                code,
                loop.time() - started,
                backoff,
            )
            try:
                async with asyncio.timeout(backoff):
                    await self._stop.wait()
            except TimeoutError:
                pass
            backoff = min(backoff * 2, self.max_backoff_s)


def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it has just exited
            proc.send_signal(signal.SIGTERM)


def follow_supervisor() -> None:
    """In a supervised process: get SIGTERM (so drain and stop) when the supervisor dies, even
    by SIGKILL, instead of running on as an orphan (Linux; elsewhere a no-op). Exits at once
    if the supervisor is already gone."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: nothing to follow with
        return
    if os.getppid() != int(supervisor):  # it died before prctl took effect
        raise SystemExit(0)


_PR_SET_PDEATHSIG = 1

"""Many deadlines, one timer: bounding every send of a client costs no timer per send.

``asyncio.timeout`` costs several microseconds per use (a context object, a timer handle pushed
on the loop's heap and cancelled), a measurable share of a ~50 us XADD on the hot send path.
Here each bounded wait is only registered in a set; a single timer, armed for the earliest
deadline, expires what is overdue when it fires and re-arms itself for the next one. Sends all
get the same time limit, so a later send never needs the timer moved: in steady traffic it
fires about once per time limit and finds nothing to do.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

__all__ = ["Bounded", "Deadlines", "TaskBound"]

# A timer may fire up to the loop's clock resolution early.
_EARLY = 0.001


class Bounded(Protocol):
    """Something to stop at ``deadline`` (event-loop time)."""

    deadline: float

    def expire(self) -> None:
        """The deadline passed: stop the wait (fail its future, cancel its task...)."""


class TaskBound:
    """Cancels the current task at ``deadline``, the way ``asyncio.timeout`` does.

    Use as::

        bound = TaskBound(deadline)
        deadlines.track(bound)
        try:
            await something()
        except asyncio.CancelledError:
            if bound.timed_out():
                raise MyTimeoutError(...) from None
            raise
        finally:
            deadlines.untrack(bound)
    """

    __slots__ = ("_cancelling", "_expired", "_task", "deadline")

    def __init__(self, deadline: float) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always awaited inside a task
            raise RuntimeError("TaskBound needs a running task")
        self.deadline = deadline
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def timed_out(self) -> bool:
        """In ``except CancelledError``: True if this bound's cancellation is the one caught
        (it is then absorbed); False if the task was cancelled by someone else, which must
        propagate."""
        return self._expired and self._task.uncancel() <= self._cancelling


class Deadlines:
    """The bounded waits of one owner (a client), expired by a single timer."""

    def __init__(self) -> None:
        self._tracked: set[Bounded] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def track(self, bounded: Bounded) -> None:
        self._tracked.add(bounded)
        if bounded.deadline < self._timer_at:
            self._arm(bounded.deadline)

    def untrack(self, bounded: Bounded) -> None:
        self._tracked.discard(bounded)

    def close(self) -> None:
        """Forget every wait and stop the timer (nothing is expired)."""
        self._tracked.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = asyncio.get_running_loop().time() + _EARLY
        overdue = [b for b in self._tracked if b.deadline <= now]
        for bounded in overdue:
            self._tracked.discard(bounded)
        if self._tracked:
            self._arm(min(b.deadline for b in self._tracked))
        for bounded in overdue:
            bounded.expire()

"""Worker classes shared by the integration tests."""

from __future__ import annotations

import asyncio
from typing import Any

from common import BaseWorker, DomainAction, NonRetryableError, RetryLaterError


class CalcWorker(BaseWorker):
    """Handlers for every behaviour the tests need, selected by action type."""

    async def _initialize_components(self) -> None:
        self.handled: list[str] = []
        self.attempts: dict[str, int] = {}
        self.release = asyncio.Event()

    def _count(self, action: DomainAction) -> int:
        key = str(action.action_id)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        return self.attempts[key]

    async def _handle_calc_add(self, action: DomainAction) -> dict[str, Any]:
        self.handled.append(str(action.action_id))
        return {"sum": action.data["a"] + action.data["b"]}

    async def _handle_calc_fail(self, action: DomainAction) -> None:
        self._count(action)
        raise RuntimeError("always fails")

    async def _handle_calc_flaky(self, action: DomainAction) -> dict[str, Any]:
        if self._count(action) < action.data.get("succeed_on", 2):
            raise ConnectionError("transient")
        self.handled.append(str(action.action_id))
        return {"attempts": self.attempts[str(action.action_id)]}

    async def _handle_calc_reject(self, action: DomainAction) -> None:
        self._count(action)
        message = action.data.get("message", "bad input, never retry")
        raise NonRetryableError(message * action.data.get("repeat", 1))

    async def _handle_calc_big(self, action: DomainAction) -> dict[str, Any]:
        self._count(action)
        return {"blob": "x" * action.data["size"]}

    async def _handle_calc_later(self, action: DomainAction) -> dict[str, Any]:
        if self._count(action) == 1:
            raise RetryLaterError(action.data["delay"])
        return {"attempts": self.attempts[str(action.action_id)]}

    async def _handle_calc_slow(self, action: DomainAction) -> dict[str, Any]:
        await asyncio.sleep(action.data.get("seconds", 0.5))
        self.handled.append(str(action.action_id))
        return {"slept": action.data.get("seconds", 0.5)}

    async def _handle_calc_wait(self, action: DomainAction) -> dict[str, Any]:
        await self.release.wait()
        self.handled.append(str(action.action_id))
        return {}

    async def _handle_calc_bad_return(self, action: DomainAction) -> Any:
        self._count(action)
        return "not a dict"

    async def _handle_calc_not_json(self, action: DomainAction) -> Any:
        self._count(action)
        return {"value": object()}


class ExtendingWorker(CalcWorker):
    """Extends its lease explicitly during a long wait, and reports the idle times it saw."""

    async def _idle_ms(self) -> int:
        [entry] = await self.redis.xpending_range(
            self.action_stream_name,
            self.consumer_group_name,
            "-",
            "+",
            10,
            consumername=self.consumer_name,
        )
        return int(entry["time_since_delivered"])

    async def _handle_calc_extend(self, action: DomainAction) -> dict[str, Any]:
        await asyncio.sleep(action.data["seconds"])
        before = await self._idle_ms()
        extended = await self.extend_visibility(action)
        after = await self._idle_ms()
        unknown = await self.extend_visibility(DomainAction(action_type="calc.other"))
        return {"before": before, "after": after, "extended": extended, "unknown": unknown}

    async def _handle_calc_extend_deleted(self, action: DomainAction) -> dict[str, Any]:
        """Deletes its own entry (as XDEL or a trim would), then asks for more time."""
        [entry_id] = [d.entry_id for d in self.held.values() if d.payload is action]
        await self.redis.xdel(self.action_stream_name, entry_id)
        extended = await self.extend_visibility(action)
        pending = await self.redis.xpending_range(
            self.action_stream_name, self.consumer_group_name, entry_id, entry_id, 1
        )
        return {"extended": extended, "still_pending": len(pending) == 1}

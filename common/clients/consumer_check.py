"""Does anybody consume a stream? A cheap look, so that sends to nowhere do not go unnoticed.

An action sent to a stream that no service consumes (a service that is not running, a typo in
``target_service`` or ``action_type``) would otherwise wait there silently. The client looks
once per stream, in the background after the first send there (no round trip per send), and
logs one warning if the stream has no consumer group at all; a pseudo-sync call that times out
looks again to tell :class:`~common.errors.NoConsumerError` from a plain timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

__all__ = ["CONSUMER_CHECK_TIMEOUT_S", "ConsumerCheck"]

logger = logging.getLogger(__name__)

CONSUMER_CHECK_TIMEOUT_S = 1.0


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class ConsumerCheck:
    """Looks at the consumers of the streams one client sends to (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.looked_at: set[str] = set()  # streams looked at (once each)
        self.looks: set[asyncio.Task[None]] = set()  # the looks under way

    def sent_to(self, stream: str) -> None:
        """Note a send to ``stream``: the first one starts a look in the background."""
        if stream in self.looked_at:
            return
        self.looked_at.add(stream)
        task = asyncio.get_running_loop().create_task(
            self._warn_if_unconsumed(stream), name=f"consumer-check:{stream}"
        )
        self.looks.add(task)
        task.add_done_callback(self.looks.discard)

    async def _warn_if_unconsumed(self, stream: str) -> None:
        found = await self.nobody_consumes(stream)
        # Only a stream without any group: one whose group has no consumer right now may have
        # a service restarting, and what is sent there waits for it as it should.
        if found is not None and not found[0]:
            logger.warning(
                "nobody consumes %s: %s; what is sent there waits for a service that is not"
                " running, or is misaddressed (check target_service / action_type)",
                stream,
                found[1],
            )

    async def nobody_consumes(self, stream: str) -> tuple[bool, str] | None:
        """``(has_group, why)`` if nobody consumes ``stream`` (no consumer group, or groups
        without consumers); None if something does, or if that was not found out in time."""
        try:
            async with asyncio.timeout(CONSUMER_CHECK_TIMEOUT_S):
                groups = await self.redis.xinfo_groups(stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return False, "the stream does not exist, so it has no consumer group"
            return None
        except Exception as exc:  # a look only: never an error of its own
            logger.debug("could not look at the consumers of %s: %s", stream, exc)
            return None
        if not groups:
            return False, "it has no consumer group"
        if all(int(group["consumers"]) == 0 for group in groups):
            names = ", ".join(_text(group["name"]) for group in groups)
            return True, f"no consumer in its consumer group(s) {names}"
        return None

    async def close(self) -> None:
        for look in list(self.looks):
            look.cancel()
        if self.looks:
            await asyncio.wait(self.looks)

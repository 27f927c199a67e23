"""The connection of a command-line operation: one attempt, bounded, one clear error.

Unlike a service's start-up (which waits for Redis), an operator's command tries once within
``timeout_s`` and fails with :class:`~common.errors.RedisUnavailableError`, whose message
names the redacted URL (never a password) and the cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.clients.redis_manager import RedisManager, is_memory_url
from common.config import CommonAppSettings
from common.errors import RedisUnavailableError
from common.ops.errors import OpsError
from common.secrets import redact_url

__all__ = ["DEFAULT_OPS_TIMEOUT_S", "ops_connection"]

DEFAULT_OPS_TIMEOUT_S = 5.0


@asynccontextmanager
async def ops_connection(
    settings: CommonAppSettings, timeout_s: float = DEFAULT_OPS_TIMEOUT_S
) -> AsyncIterator[aioredis.Redis]:
    """A client on ``settings.redis_url``, checked with a PING within ``timeout_s``."""
    if is_memory_url(settings.redis_url):
        raise OpsError(
            "REDIS_URL is memory:// (an in-process server): there is nothing to operate on "
            "from here; set REDIS_URL to the services' Redis"
        )
    manager = RedisManager(settings)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            await manager.initialize()
    except (RedisError, OSError, TimeoutError) as exc:
        await manager.close()
        cause: BaseException = exc
        if isinstance(exc, TimeoutError) and not str(exc):
            cause = TimeoutError(f"no answer within {timeout_s:g}s")
        url = redact_url(settings.redis_url)
        raise RedisUnavailableError(url, cause, 1, time.monotonic() - started) from None
    try:
        yield manager.get_client()
    finally:
        await manager.close()

"""Connecting at start-up: wait for Redis with a backoff, within a bound, then fail clearly.

A service often starts before its Redis does (a compose file, a restarting node): a start-up
that fails at the first refused connection would make every such start a crash. So the first
connection is retried, one log line per attempt, until ``timeout_s`` has passed (0: forever);
then :class:`~common.errors.RedisUnavailableError` names the (redacted) URL and the last cause,
instead of a driver traceback. A refusal (bad credentials, a database out of range) is not
retried: it fails at once.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError

from common.clients.redis_manager import CONNECTION_ERRORS, RedisManager
from common.config import CommonAppSettings
from common.errors import RedisUnavailableError
from common.secrets import redact_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "FIRST_RETRY_DELAY_S",
    "MAX_RETRY_DELAY_S",
    "connect_redis",
]

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 30.0
"""How long a start-up waits for Redis by default (``0``: forever)."""
FIRST_RETRY_DELAY_S = 0.25
MAX_RETRY_DELAY_S = 5.0

# Refusals that a retry would only repeat: bad credentials, a database out of range...
_NOT_RETRIED = (AuthenticationError, AuthorizationError, ResponseError)
_FAILURES: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, TimeoutError, ResponseError)


async def connect_redis(
    settings: CommonAppSettings,
    *,
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    stop: asyncio.Event | None = None,
) -> RedisManager | None:
    """An initialised :class:`RedisManager` for ``settings.redis_url``, retried until it answers.

    Each failed attempt logs one warning and waits (0.25 s, doubling up to 5 s). Past
    ``timeout_s`` seconds (``0``: no limit) raises :class:`RedisUnavailableError`; so does a
    refusal (bad credentials, a database out of range), at once. Returns None if ``stop`` is
    set while waiting.
    """
    if timeout_s < 0:
        raise ValueError("timeout_s must be >= 0 (0: wait forever)")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_s if timeout_s else None
    url = redact_url(settings.redis_url)
    delay = FIRST_RETRY_DELAY_S
    attempts = 0
    cause: BaseException | None = None
    while True:
        attempts += 1
        manager = RedisManager(settings)
        try:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.01)
            async with asyncio.timeout(remaining):
                return await manager.initialize()
        except _FAILURES as exc:
            await manager.close()
            if isinstance(exc, TimeoutError) and not str(exc):
                # The bound cut this attempt short: what failed before says more, if anything.
                if cause is None or deadline is None or loop.time() < deadline:
                    cause = TimeoutError("no answer before the connect timeout")
            else:
                cause = exc
            if isinstance(exc, _NOT_RETRIED):
                raise RedisUnavailableError(url, cause, attempts, loop.time() - started) from None
        except BaseException:
            await manager.close()
            raise
        if deadline is not None and loop.time() + delay > deadline:
            delay = deadline - loop.time()
            if delay <= 0:
                assert cause is not None
                raise RedisUnavailableError(url, cause, attempts, loop.time() - started)
        logger.warning(
            "Redis unavailable at %s (attempt %d: %s); retrying in %.3gs%s",
            url,
            attempts,
            cause,
            delay,
            "" if deadline is None else f"; giving up after {timeout_s:g}s",
        )
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
            except TimeoutError:
                pass
            else:
                return None
        delay = min(delay * 2, MAX_RETRY_DELAY_S)

"""``common send`` and ``common call``: an action from the command line.

The JSON given is the action's ``data`` (an object). The target stream must exist (a service
that never ran has none): a typo in the action type is an error, not an action that waits
forever in a stream nobody reads.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError

from common.clients.base_redis_client import BaseRedisClient
from common.config import CommonAppSettings
from common.errors import InvalidKeyError
from common.models.actions import DomainAction, DomainActionResponse
from common.ops.errors import OpsError, UnknownStreamError

__all__ = ["CLI_SERVICE", "build_action", "call_action", "parse_data", "send_action"]

CLI_SERVICE = "cli"
"""The ``origin_service`` of actions sent from the command line (its reply keys live there)."""


def parse_data(text: str) -> dict[str, Any]:
    """The action's data from ``text``: a JSON object, or :class:`OpsError` saying what is wrong."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OpsError(f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OpsError(f"the data must be a JSON object, not {type(value).__name__}")
    return value


def build_action(action_type: str, data: dict[str, Any], target: str | None = None) -> DomainAction:
    try:
        return DomainAction(action_type=action_type, data=data, target_service=target)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise OpsError(f"invalid action: {problems}") from None


async def _target_stream(client: BaseRedisClient, action: DomainAction) -> str:
    try:
        stream = client.stream_for(action)
    except InvalidKeyError as exc:
        raise OpsError(str(exc)) from None
    if not await client.redis.exists(stream):
        service = action.target_service or action.action_type.split(".", 1)[0]
        raise UnknownStreamError(f"unknown service {service!r}: no stream {stream} in Redis")
    return stream


async def send_action(
    redis: aioredis.Redis, settings: CommonAppSettings, action: DomainAction
) -> dict[str, str]:
    """Fire ``action``; returns its stream, entry id and action id."""
    async with BaseRedisClient(CLI_SERVICE, redis, settings) as client:
        stream = await _target_stream(client, action)
        entry_id = await client.send_action_async(action)
    return {"stream": stream, "entry_id": entry_id, "action_id": str(action.action_id)}


async def call_action(
    redis: aioredis.Redis, settings: CommonAppSettings, action: DomainAction, timeout: float
) -> DomainActionResponse:
    """Call ``action`` pseudo-synchronously; returns its response (raises on timeout)."""
    async with BaseRedisClient(CLI_SERVICE, redis, settings) as client:
        await _target_stream(client, action)
        return await client.send_action_pseudo_sync(action, timeout=timeout)

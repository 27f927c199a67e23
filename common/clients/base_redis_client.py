"""Sending actions: fire-and-forget, pseudo-synchronous, and asynchronous with callback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.clients.reply_listener import ReplyListener
from common.config import CommonAppSettings
from common.errors import ActionTimeoutError
from common.models.actions import DomainAction, DomainActionResponse
from common.models.codec import encode_action

__all__ = ["BaseRedisClient"]


class BaseRedisClient:
    """Sends :class:`DomainAction` envelopes to other services' action streams.

    Pseudo-synchronous replies for every call of this client arrive on one reply list,
    read by one listener task that resolves each call's future by action id.
    """

    def __init__(
        self,
        service_name: str,
        redis: aioredis.Redis,
        settings: CommonAppSettings | None = None,
    ) -> None:
        self.settings = settings or CommonAppSettings(service_name=service_name)
        self.service_name = service_name
        self.redis = redis
        self.queues = QueueManager(self.settings.queue_prefix, self.settings.environment)
        self.client_id = QueueManager.new_client_id()
        self.reply_key = self.queues.reply_key(service_name, self.client_id)
        self.own_stream = self.queues.action_stream(service_name)
        self._streams: dict[str, str] = {}
        self._replies = ReplyListener(redis, self.reply_key)

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their caller had timed out (and were discarded)."""
        return self._replies.late_replies

    def stream_for(self, action: DomainAction) -> str:
        target = action.target_service or action.action_type.split(".", 1)[0]
        stream = self._streams.get(target)
        if stream is None:
            stream = self._streams[target] = self.queues.action_stream(target)
        return stream

    def _stamp(self, action: DomainAction, **update: Any) -> DomainAction:
        if action.origin_service is None:
            update["origin_service"] = self.service_name
        return action.model_copy(update=update) if update else action

    async def send_action_async(self, action: DomainAction) -> str:
        """Append ``action`` to its target's stream; returns the stream entry id."""
        action = self._stamp(action)
        fields = encode_action(action, self.settings.max_payload_bytes)
        entry_id = await self.redis.xadd(self.stream_for(action), fields)  # type: ignore[arg-type]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def send_actions_async(self, actions: Iterable[DomainAction]) -> list[str]:
        """Send many actions in one pipelined round trip; returns their entry ids in order."""
        limit = self.settings.max_payload_bytes
        pipe = self.redis.pipeline(transaction=False)
        for action in actions:
            action = self._stamp(action)
            pipe.xadd(self.stream_for(action), encode_action(action, limit))  # type: ignore[arg-type]
        ids = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def send_action_async_with_callback(
        self, action: DomainAction, callback_action_type: str, callback_service: str | None = None
    ) -> str:
        """Send ``action``; its result comes back as a ``callback_action_type`` action.

        The callback goes to this client's own service stream unless ``callback_service``
        names another one.
        """
        stream = (
            self.queues.action_stream(callback_service) if callback_service else self.own_stream
        )
        action = DomainAction.model_validate(
            {
                **action.model_dump(),
                "callback_queue_name": stream,
                "callback_action_type": callback_action_type,
            }
        )
        return await self.send_action_async(action)

    async def send_action_pseudo_sync(
        self, action: DomainAction, timeout: float = 30.0
    ) -> DomainActionResponse:
        """Send ``action`` and wait for its :class:`DomainActionResponse`.

        Raises :class:`ActionTimeoutError` if no reply arrives within ``timeout`` seconds;
        a reply that arrives later is discarded. Unless the action has a ``deadline``, it gets
        one at the timeout, so that workers skip work whose caller has given up.
        """
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        update: dict[str, Any] = {"callback_queue_name": self.reply_key}
        if action.deadline is None:
            update["deadline"] = datetime.now(UTC) + timedelta(seconds=timeout)
        action = self._stamp(action, **update)
        future = self._replies.expect(action.action_id)
        try:
            fields = encode_action(action, self.settings.max_payload_bytes)
            await self.redis.xadd(self.stream_for(action), fields)  # type: ignore[arg-type]
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ActionTimeoutError(action.action_id, timeout) from None
        finally:
            self._replies.forget(action.action_id)

    async def close(self) -> None:
        """Stop the reply listener and delete this client's reply list."""
        await self._replies.close()
        with contextlib.suppress(Exception):
            await self.redis.delete(self.reply_key)

    async def __aenter__(self) -> BaseRedisClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

"""Connections, key naming and the action-sending client."""

from common.clients.base_redis_client import BaseRedisClient
from common.clients.queue_manager import KeyKind, ParsedKey, QueueManager
from common.clients.redis_manager import RedisManager

__all__ = ["BaseRedisClient", "KeyKind", "ParsedKey", "QueueManager", "RedisManager"]

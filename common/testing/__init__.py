"""Helpers for test suites, ours and users': see the README section "Testing your workers".

- :class:`RedisServer`, :func:`free_port`, :func:`unique_settings`: a private ``redis-server``
  on an ephemeral loopback port, and settings with a key prefix of their own;
  :class:`RedisCluster` (3 masters) and :class:`RedisSentinel` (master, replica, sentinels)
  for tests of those deployments.
- :class:`MessagingTestClient`: declarative workers (or a whole pipeline) run in-process on the
  embedded ``memory://`` server, with what they handled, published and dead-lettered.
- :class:`WorkerTestClient`: a ``BaseWorker`` service's pool on ``memory://`` plus a client.
"""

from __future__ import annotations

from common.testing.messaging import DeadLetterRecord, MessagingTestClient, memory_settings
from common.testing.redis_sentinel import RedisSentinel
from common.testing.redis_server import RedisCluster, RedisServer, free_port, unique_settings
from common.testing.service import WorkerTestClient

__all__ = [
    "DeadLetterRecord",
    "MessagingTestClient",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "WorkerTestClient",
    "free_port",
    "memory_settings",
    "unique_settings",
]

"""Connection lifecycle: one pool per service process, for every supported URL form."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.clients.cluster_client import WaitingRedisCluster
from common.clients.pool import LeanConnectionPool, pack_cluster_commands_in_c
from common.config import CommonAppSettings
from common.errors import ConfigurationError, WorkerStateError

__all__ = [
    "CONNECTION_ERRORS",
    "RedisManager",
    "is_cluster",
    "is_cluster_url",
    "is_embedded",
    "is_memory_url",
    "redact_url",
]

logger = logging.getLogger(__name__)

_memory_lock = threading.Lock()
_memory_servers: dict[str, Any] = {}


# What a lost, refused or timed-out connection raises: the errors that mean "retry later".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)


def is_embedded(redis: Any) -> bool:
    """True for a client of the embedded ``memory://`` server (fakeredis), which differs in
    blocking reads, cancellation and scripting."""
    return type(redis).__module__.startswith("fakeredis")


def is_memory_url(url: str) -> bool:
    return url.startswith("memory://")


def is_cluster(redis: Any) -> bool:
    """True for a Redis Cluster client (``redis+cluster://``): the keys of one command, one
    MULTI/EXEC or one script must share a hash slot there."""
    return isinstance(redis, RedisCluster)


def is_cluster_url(url: str) -> bool:
    return url.startswith(("redis+cluster://", "rediss+cluster://"))


def _memory_server(name: str) -> Any:
    """The in-process fakeredis server for ``memory://name``, shared by the whole process."""
    try:
        import fakeredis
    except ImportError as exc:  # pragma: no cover - fakeredis is a dependency
        raise ConfigurationError("memory:// needs the 'fakeredis' package") from exc
    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = _memory_servers[name] = fakeredis.FakeServer(version=(7, 0))
        return server


# How long a caller waits for a free pooled connection before ConnectionError.
_POOL_WAIT_S = 30.0


class _LeanSentinelPool(SentinelConnectionPool, LeanConnectionPool):
    """Sentinel's master pool with :class:`LeanConnectionPool`'s bound and waiting callers."""


class RedisManager:
    """Owns the Redis connection pool of a service.

    ``redis://`` and ``rediss://`` (TLS) URLs may carry ``user:password@`` credentials and a
    database number; so may ``unix://[user:password@]/path/to/redis.sock[?db=N]`` (a Unix
    socket: no TCP keepalive there); ``memory://[name]`` selects an embedded in-process server
    (fakeredis) shared by every client in the process; ``redis+sentinel://h1:p1,h2:p2/master``
    asks Sentinel for the master, whose pool is bounded by ``redis_max_connections``;
    ``redis+cluster://[user:password@]h1:p1,h2:p2[/?options]`` (``rediss+cluster://``: TLS)
    connects to a Redis Cluster through any of the listed nodes (redis-py's ``RedisCluster``,
    typed as a ``Redis`` here: the commands this toolkit uses are the same). On a cluster,
    at most ``redis_max_connections`` commands are in flight at once (so at most that many
    connections to each node); callers past the bound wait, as on one server
    (:class:`~common.clients.cluster_client.WaitingRedisCluster`).
    """

    def __init__(self, settings: CommonAppSettings | None = None, **overrides: Any) -> None:
        self.settings = settings or CommonAppSettings(**overrides)
        self._client: aioredis.Redis | None = None
        self._sentinels: list[aioredis.Redis] = []  # Sentinel's own clients, closed with ours

    @property
    def url(self) -> str:
        return self.settings.redis_url

    async def initialize(self) -> RedisManager:
        """Create the pool and check the server answers (idempotent)."""
        if self._client is not None:
            return self
        client = self._build()
        try:
            await client.ping()
        except Exception:
            await client.aclose()
            for sentinel in self._sentinels:
                await sentinel.aclose()
            self._sentinels = []
            raise
        self._client = client
        logger.info("redis connected: %s", redact_url(self.url))
        return self

    def get_client(self) -> aioredis.Redis:
        if self._client is None:
            raise WorkerStateError("RedisManager.initialize() has not been awaited")
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        sentinels, self._sentinels = self._sentinels, []
        for sentinel in sentinels:
            await sentinel.aclose()

    async def __aenter__(self) -> RedisManager:
        return await self.initialize()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _common_kwargs(self, *, tcp: bool = True) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "socket_timeout": s.redis_socket_timeout_s,
            "socket_connect_timeout": 5.0,
            "max_connections": s.redis_max_connections,
        }
        if tcp:  # a Unix socket connection takes no keepalive option
            kwargs["socket_keepalive"] = s.redis_socket_keepalive
        return kwargs

    def _build(self) -> aioredis.Redis:
        url = self.url
        if is_memory_url(url):
            import fakeredis

            from common.clients.embedded_connection import CancelSafeFakeConnection

            name = url[len("memory://") :].strip("/") or "default"
            return fakeredis.FakeAsyncRedis(
                server=_memory_server(name),
                connection_class=CancelSafeFakeConnection,
                socket_timeout=None,  # in-process: no socket to time out (see embedded_connection)
                connection_pool_class=BlockingConnectionPool,
                max_connections=self.settings.redis_max_connections,
            )
        if is_cluster_url(url):
            return self._cluster(url)
        if url.startswith("redis+sentinel://"):
            return self._sentinel_master(url)
        try:
            # Blocking: past redis_max_connections, callers wait for a connection instead of
            # failing with "Too many connections"; lean: no per-command bookkeeping.
            kwargs = self._common_kwargs(tcp=not url.startswith("unix://"))
            pool = LeanConnectionPool.from_url(url, timeout=_POOL_WAIT_S, **kwargs)
            return aioredis.Redis.from_pool(pool)
        except ValueError as exc:
            raise ConfigurationError(f"redis_url: {exc}") from exc

    def _cluster(self, url: str) -> aioredis.Redis:
        parts = urlsplit(url)
        userinfo, _, nodes = parts.netloc.rpartition("@")
        scheme = "rediss" if parts.scheme == "rediss+cluster" else "redis"
        addresses = []
        for hostport in nodes.split(","):
            host, colon, port = hostport.rpartition(":")
            if not colon or "]" in port:
                host, port = hostport, ""
            addresses.append((host.strip("[]"), int(port or 6379)))
        # The first node, credentials and options as a redis[s]:// URL that redis-py parses
        # the same way as for a standalone server; the other nodes as more startup nodes.
        first_host, first_port = addresses[0]
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"[{first_host}]" if ":" in first_host else first_host
        first = urlunsplit((scheme, f"{netloc}:{first_port}", "", parts.query, ""))
        kwargs = self._common_kwargs()
        try:
            cluster = WaitingRedisCluster.from_url(
                first,
                startup_nodes=[ClusterNode(host, port) for host, port in addresses[1:]],
                # A MOVED answer patches that slot only: by default every 5th MOVED makes
                # redis-py close every connection of the process (reads, sends in flight).
                reinitialize_steps=0,
                **kwargs,
            )
        except ValueError as exc:
            raise ConfigurationError(f"redis_url: {exc}") from exc
        pack_cluster_commands_in_c(cluster)
        return cast(aioredis.Redis, cluster)

    def _sentinel_master(self, url: str) -> aioredis.Redis:
        parts = urlsplit(url)
        master = parts.path.strip("/")
        if not master:
            raise ConfigurationError("redis_url: redis+sentinel:// needs /master_name")
        hosts = []
        for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = hostport.partition(":")
            hosts.append((host, int(port or 26379)))
        kwargs = self._common_kwargs()
        max_connections = kwargs.pop("max_connections")  # the master's pool's, not Sentinel's
        if parts.username or parts.password:
            kwargs["username"] = unquote(parts.username) if parts.username else None
            kwargs["password"] = unquote(parts.password) if parts.password else None
        sentinel = Sentinel(hosts, **kwargs)  # type: ignore[no-untyped-call]
        self._sentinels = list(sentinel.sentinels)
        # The same pool as for redis://: at most redis_max_connections to the master, callers
        # past it wait for a free one.
        client: aioredis.Redis = sentinel.master_for(
            master,
            connection_pool_class=_LeanSentinelPool,
            max_connections=max_connections,
            timeout=_POOL_WAIT_S,
        )
        return client


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for logs and reports."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url

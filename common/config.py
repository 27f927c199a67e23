"""Settings shared by every service: one object, read from the environment, validated.

Invalid settings raise :class:`ConfigurationError` naming each setting, whichever way the
settings are built (``CommonAppSettings(...)`` or :func:`load_settings`). The password of
``redis_url`` never shows in a repr, a JSON dump or an error message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, ValidationError, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

from common.blocking import REPLY_LISTENER_BLOCK_S, SOCKET_TIMEOUT_MARGIN_S
from common.errors import ConfigurationError
from common.naming import is_key_segment, is_service_name, is_topic_name
from common.secrets import redact_url

__all__ = ["CommonAppSettings", "RetryBackoff", "load_settings"]

RetryBackoff = Literal["exponential", "linear", "fixed"]

_URL_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "memory://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
)
# Query options of a redis://, rediss:// or unix:// URL that redis-py takes from a string.
_URL_OPTIONS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | {
    "client_name",
    "lib_name",
    "lib_version",
    "username",
    "password",
    "encoding",
    "encoding_errors",
}
_TLS_OPTIONS = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_ciphers",
        "ssl_password",
    }
) | {name for name in URL_QUERY_ARGUMENT_PARSERS if name.startswith("ssl_")}
_EXAMPLE = "as in redis://[user:password@]host:6379/0"


class CommonAppSettings(BaseSettings):
    """Settings of a service and its workers.

    Every field is read from the environment variable of the same name in upper case
    (``REDIS_URL``, ``WORKER_BATCH_SIZE``...); arguments given in code win over the environment.
    """

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,  # an input may hold a password
    )

    service_name: str = Field("service", description="Name of this service; names its keys.")
    environment: str = Field("dev", description="Deployment environment; part of every key.")
    redis_url: str = Field(
        "memory://",
        description="redis://, rediss://, unix://, memory:// (embedded), redis+sentinel://, "
        "redis+cluster:// or rediss+cluster:// (TLS). "
        "Read it as settings.redis_url; reprs and JSON dumps show it with the password as ***.",
    )
    redis_socket_keepalive: bool = Field(True, description="TCP keepalive on Redis sockets.")
    redis_max_connections: int = Field(64, ge=1, le=100_000, description="Pool size.")
    redis_socket_timeout_s: float | None = Field(
        None, gt=0, description="Socket timeout for commands (None: no timeout)."
    )
    redis_send_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for a send (XADD) before SendTimeoutError."
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        le=100,
        description="Replicas that must confirm each write (WAIT) before a send returns or a "
        "worker's write counts as done (0: asynchronous replication, no WAIT).",
    )
    redis_wait_timeout_ms: int = Field(
        1000,
        ge=1,
        le=600_000,
        description="Longest wait for redis_wait_replicas confirmations; past it a send raises "
        "ReplicationError and a worker retries the write.",
    )
    queue_prefix: str = Field("app", description="First segment of every key.")

    num_internal_workers: int = Field(4, ge=1, le=1024, description="Workers per process.")
    worker_batch_size: int = Field(100, ge=1, le=10_000, description="XREADGROUP COUNT.")
    worker_block_ms: int = Field(1000, ge=1, le=60_000, description="XREADGROUP BLOCK.")
    worker_concurrency: int = Field(1, ge=1, le=10_000, description="Actions at once per worker.")
    visibility_timeout_s: float = Field(
        30.0, gt=0, description="Idle time after which another consumer may claim an entry."
    )
    claim_interval_s: float = Field(5.0, gt=0, description="Period of the reclaim loop.")
    max_retries: int = Field(
        5, ge=1, le=1000, description="Deliveries of an action before it is dead-lettered."
    )
    retry_backoff: RetryBackoff = Field("exponential", description="exponential|linear|fixed.")
    retry_initial_delay_s: float = Field(1.0, ge=0, description="First retry delay.")
    retry_max_delay_s: float = Field(60.0, ge=0, description="Cap on any retry delay.")
    retry_jitter: float = Field(0.1, ge=0, le=1, description="Relative jitter on delays.")
    stream_maxlen: int = Field(
        100_000, ge=0, description="Approximate cap on each stream's length (0: no trim)."
    )
    dead_letter_maxlen: int = Field(100_000, ge=0, description="Cap on dead-letter streams.")
    stream_partitions: int = Field(
        1,
        ge=1,
        le=128,  # queue_manager.MAX_PARTITIONS
        description="Action streams per service (partitions, each its own hash tag); every "
        "sender and worker of a deployment must use the same value.",
    )
    topic_partitions: dict[str, int] = Field(
        default_factory=dict,
        description="Partitions of named topics (JSON in the environment, e.g. "
        '{"orders.created": 4}); others get topic_partitions_default. Every publisher and '
        "subscriber of a deployment must use the same values.",
    )
    topic_partitions_default: int = Field(
        1, ge=1, le=128, description="Partitions of a topic not named in topic_partitions."
    )
    max_payload_bytes: int = Field(
        1_048_576, ge=256, le=512 * 1024 * 1024, description="Largest accepted entry."
    )
    shutdown_grace_s: float = Field(10.0, ge=0, description="Time in-flight work gets on stop.")
    reply_ttl_s: int = Field(
        60, ge=1, description="Expiry of reply keys, so that uncollected replies leak nothing."
    )
    consumer_idle_timeout_s: float = Field(
        3600.0, gt=0, description="Idle consumers with nothing pending are removed after this."
    )

    @field_validator("service_name")
    @classmethod
    def _check_service_name(cls, value: str) -> str:
        if not is_service_name(value):
            raise ValueError(
                "must be lowercase letters, digits, '_' or '-', starting with a letter"
            )
        return value

    @field_validator("environment", "queue_prefix")
    @classmethod
    def _check_segment(cls, value: str) -> str:
        if not is_key_segment(value):
            raise ValueError("must be 1-32 characters of letters, digits, '_' or '-'")
        return value

    @field_validator("topic_partitions")
    @classmethod
    def _check_topic_partitions(cls, value: dict[str, int]) -> dict[str, int]:
        for topic, count in value.items():
            if not is_topic_name(topic):
                raise ValueError(
                    f"{topic!r} is not a topic name (lowercase letters, digits, '.', '_', '-')"
                )
            if not 1 <= count <= 128:  # queue_manager.MAX_PARTITIONS
                raise ValueError(f"{topic!r}: partitions must be 1 to 128, not {count}")
        return value

    def partitions_of_topic(self, topic: str) -> int:
        """How many partitions ``topic`` has: ``topic_partitions[topic]``, else
        ``topic_partitions_default``."""
        return self.topic_partitions.get(topic, self.topic_partitions_default)

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        _check_redis_url(value)
        return value

    @model_validator(mode="after")
    def _check_delays(self) -> CommonAppSettings:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError("retry_max_delay_s must be >= retry_initial_delay_s")
        return self

    @model_validator(mode="after")
    def _check_wait(self) -> CommonAppSettings:
        if (
            self.redis_wait_replicas
            and self.redis_wait_timeout_ms >= self.redis_send_timeout_s * 1000
        ):
            raise ValueError(
                f"redis_wait_timeout_ms={self.redis_wait_timeout_ms} must be shorter than "
                f"redis_send_timeout_s={self.redis_send_timeout_s:g}, so that a send not "
                "confirmed in time raises ReplicationError rather than SendTimeoutError"
            )
        return self

    @model_validator(mode="after")
    def _check_socket_timeout(self) -> CommonAppSettings:
        timeout = self.redis_socket_timeout_s
        if timeout is None:
            return self
        block_s = self.worker_block_ms / 1000
        wait_s = self.redis_wait_timeout_ms / 1000 if self.redis_wait_replicas else 0.0
        needed = max(block_s, REPLY_LISTENER_BLOCK_S, wait_s) + SOCKET_TIMEOUT_MARGIN_S
        if timeout < needed:
            raise ValueError(
                f"redis_socket_timeout_s={timeout:g} would cut blocking reads: it must be at "
                f"least {needed:g} (the longer of worker_block_ms={self.worker_block_ms} "
                f"({block_s:g}s), the reply listener's {REPLY_LISTENER_BLOCK_S:g}s block and "
                "a WAIT's redis_wait_timeout_ms when redis_wait_replicas > 0, "
                f"plus {SOCKET_TIMEOUT_MARGIN_S:g}s); raise it, lower worker_block_ms, or leave "
                "redis_socket_timeout_s unset"
            )
        return self

    @field_serializer("redis_url", when_used="json")
    def _redact_url_in_json(self, value: str) -> str:
        return redact_url(value)

    def __hash__(self) -> int:  # frozen, so hashable, also with a dict field
        return hash(
            tuple(
                (name, tuple(sorted(value.items())) if isinstance(value, dict) else value)
                for name, value in self.__dict__.items()
            )
        )

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

    if not TYPE_CHECKING:  # keep the typed __init__ that pydantic's mypy plugin generates

        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
                return
            except ValidationError as exc:
                error = _configuration_error(exc)
            except SettingsError as exc:
                error = ConfigurationError(f"invalid settings: {exc}")
            # Raised outside the except clause: no chained ValidationError (it holds inputs,
            # a password among them) in the traceback.
            raise error


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        setting = ".".join(str(p) for p in err["loc"]) or "settings"
        message = err["msg"].removeprefix("Value error, ")
        if err["loc"] and setting != "redis_url" and err["type"] != "missing":
            message += f" (got {err['input']!r:.80})"
        problems.append((setting, message))
    text = "; ".join(
        message if setting == "settings" else f"{setting}: {message}"  # names its settings
        for setting, message in problems
    )
    return ConfigurationError(f"invalid settings: {text}", problems=problems)


def _check_redis_url(url: str) -> None:
    """Raise ValueError for a URL that redis-py would misread or refuse at connect.

    Messages never quote the URL or a part of it: a misplaced character can put part of a
    password anywhere."""
    if not url.startswith(_URL_SCHEMES):
        raise ValueError(f"scheme must be one of {', '.join(_URL_SCHEMES)}")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError(
            "must not contain spaces, line breaks or control characters "
            "(percent-encode them, as %20 for a space in a socket path)"
        )
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"cannot be parsed as a URL ({_EXAMPLE})") from None
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        raise ValueError(
            "a '/', '?' or '#' in the user name or password must be percent-encoded (%2F, %3F, %23)"
        )
    if parts.fragment or url.endswith("#"):
        raise ValueError("must not have a '#' fragment")
    if scheme == "redis+sentinel":
        _check_sentinel_hosts(parts.netloc.rpartition("@")[2])
        return
    if scheme.endswith("+cluster"):
        _check_cluster_nodes(parts.netloc.rpartition("@")[2])
        if parts.path not in ("", "/", "/0"):
            raise ValueError("a cluster has only database 0: write redis+cluster://h1:p1,h2:p2")
        if dict(parse_qsl(parts.query)).get("db", "0") != "0":
            raise ValueError("a cluster has only database 0: remove the db option")
        _check_query(parts.query, tls=scheme == "rediss+cluster")
        return
    if scheme == "unix":
        if parts.hostname:
            raise ValueError("unix:// takes no host: write unix:///path/to/redis.sock")
        if parts.path in ("", "/"):
            raise ValueError("unix:// needs the socket's path, as in unix:///run/redis.sock")
    else:
        if not parts.hostname:
            raise ValueError(f"needs a host, {_EXAMPLE}")
        _check_port(parts.netloc.rpartition("@")[2], parts)
        database = parts.path[1:]
        if database and not database.isdigit():
            raise ValueError(f"the database after the host must be a number, {_EXAMPLE}")
    _check_query(parts.query, tls=scheme == "rediss")


def _check_port(hostport: str, parts: Any) -> None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and hostport.endswith(":")):
        raise ValueError(f"the port must be a number from 1 to 65535, {_EXAMPLE}")


def _check_sentinel_hosts(hosts: str) -> None:
    for hostport in hosts.split(","):
        host, colon, port = hostport.partition(":")
        if not host:
            raise ValueError("each Sentinel needs a host, as in redis+sentinel://h1:26379,h2/name")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("each Sentinel's port must be a number from 1 to 65535")


def _check_cluster_nodes(nodes: str) -> None:
    for hostport in nodes.split(","):
        host, colon, port = hostport.rpartition(":")
        if not colon or "]" in port:  # no port (the default 6379), or a bare [IPv6] address
            host, colon, port = hostport, "", ""
        if not host.strip("[]"):
            raise ValueError(
                "each cluster node needs a host, as in redis+cluster://h1:7000,h2:7001"
            )
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("each cluster node's port must be a number from 1 to 65535")


def _check_query(query: str, *, tls: bool) -> None:
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _URL_OPTIONS and not (tls and name in _TLS_OPTIONS):
            where = "a rediss:// (TLS) option" if name in _TLS_OPTIONS else "an unknown option"
            raise ValueError(f"query option {name[:40]!r} is {where}")
        parser = URL_QUERY_ARGUMENT_PARSERS.get(name)
        valid = True
        if name == "db":
            valid = value.isdigit()
        elif parser is not None:
            try:
                parser(value)
            except (TypeError, ValueError):
                valid = False
        if not valid:
            raise ValueError(f"query option {name!r} has an invalid value")


def load_settings(**overrides: Any) -> CommonAppSettings:
    """Build settings from the environment and ``overrides``: the same as
    ``CommonAppSettings(**overrides)``.

    Raises :class:`ConfigurationError` naming each invalid setting.
    """
    return CommonAppSettings(**overrides)

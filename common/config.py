"""Settings shared by every service: one object, read from the environment, validated."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigurationError
from common.naming import KEY_SEGMENT, SERVICE_NAME

__all__ = ["CommonAppSettings", "RetryBackoff", "load_settings"]

RetryBackoff = Literal["exponential", "linear", "fixed"]

_NAME_RE = re.compile(rf"^{SERVICE_NAME}$")
_PREFIX_RE = re.compile(rf"^{KEY_SEGMENT}$")
_URL_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "memory://",
    "redis+cluster://",
    "redis+sentinel://",
)


class CommonAppSettings(BaseSettings):
    """Settings of a service and its workers.

    Every field is read from the environment variable of the same name in upper case
    (``REDIS_URL``, ``WORKER_BATCH_SIZE``...); arguments given in code win over the environment.
    """

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True, validate_default=True
    )

    service_name: str = Field("service", description="Name of this service; names its keys.")
    environment: str = Field("dev", description="Deployment environment; part of every key.")
    redis_url: str = Field("memory://", description="redis://, rediss://, memory:// (embedded).")
    redis_socket_keepalive: bool = Field(True, description="TCP keepalive on Redis sockets.")
    redis_max_connections: int = Field(64, ge=1, le=100_000, description="Pool size.")
    redis_socket_timeout_s: float | None = Field(
        None, gt=0, description="Socket timeout for commands (None: no timeout)."
    )
    redis_send_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for a send (XADD) before SendTimeoutError."
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
        if not _NAME_RE.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '_' or '-', starting with a letter"
            )
        return value

    @field_validator("environment", "queue_prefix")
    @classmethod
    def _check_segment(cls, value: str) -> str:
        if not _PREFIX_RE.match(value):
            raise ValueError("must be 1-32 characters of letters, digits, '_' or '-'")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(_URL_SCHEMES):
            raise ValueError(f"scheme must be one of {', '.join(_URL_SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _check_delays(self) -> CommonAppSettings:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError("retry_max_delay_s must be >= retry_initial_delay_s")
        return self


def load_settings(**overrides: Any) -> CommonAppSettings:
    """Build settings from the environment and ``overrides``.

    Raises :class:`ConfigurationError` naming each invalid setting, instead of pydantic's
    ``ValidationError``, so that start-up failures read well in logs.
    """
    try:
        return CommonAppSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc

"""Settings: exact names, environment, precedence, validation naming the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.config import CommonAppSettings, load_settings
from common.errors import ConfigurationError

DESIGN_NAMES = [
    "service_name",
    "environment",
    "redis_url",
    "redis_socket_keepalive",
    "redis_max_connections",
    "queue_prefix",
    "num_internal_workers",
    "worker_batch_size",
    "worker_block_ms",
    "worker_concurrency",
    "visibility_timeout_s",
    "claim_interval_s",
    "max_retries",
    "retry_backoff",
    "retry_initial_delay_s",
    "retry_max_delay_s",
    "stream_maxlen",
    "max_payload_bytes",
    "shutdown_grace_s",
]


def test_every_design_setting_exists() -> None:
    assert set(DESIGN_NAMES) <= set(CommonAppSettings.model_fields)


def test_defaults() -> None:
    s = CommonAppSettings()
    assert s.environment == "dev"
    assert s.redis_url == "memory://"
    assert s.retry_backoff == "exponential"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("NUM_INTERNAL_WORKERS", "7")
    monkeypatch.setenv("RETRY_BACKOFF", "linear")
    s = CommonAppSettings()
    assert (s.redis_url, s.num_internal_workers, s.retry_backoff) == (
        "redis://127.0.0.1:1/0",
        7,
        "linear",
    )


def test_code_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_BATCH_SIZE", "7")
    assert CommonAppSettings(worker_batch_size=33).worker_batch_size == 33


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_batch_size", 0),
        ("retry_backoff", "quadratic"),
        ("redis_url", "http://example"),
        ("service_name", "Bad Name"),
        ("max_retries", 0),
        ("visibility_timeout_s", -1),
    ],
)
def test_invalid_values_fail_naming_the_setting(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        CommonAppSettings(**{name: value})
    with pytest.raises(ConfigurationError, match=name):
        load_settings(**{name: value})


def test_invalid_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        load_settings()


def test_retry_delays_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="retry_max_delay_s"):
        CommonAppSettings(retry_initial_delay_s=5, retry_max_delay_s=1)


@pytest.mark.parametrize("name", ["service_name", "environment", "queue_prefix"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t", "\x00"])
def test_names_are_matched_whole(name: str, suffix: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(**{name: "svc" + suffix})
    with pytest.raises(ConfigurationError, match=name):
        load_settings(**{name: suffix + "svc"})

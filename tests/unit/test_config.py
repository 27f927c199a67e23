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
    # The documented way (CommonAppSettings) and load_settings give the same clean error.
    for build in (CommonAppSettings, load_settings):
        with pytest.raises(ConfigurationError, match=f"^invalid settings: {name}: ") as info:
            build(**{name: value})
        assert [setting for setting, _ in info.value.problems] == [name]
        assert isinstance(info.value, ValueError)  # as pydantic's ValidationError was
        assert info.value.__cause__ is None and info.value.__context__ is None


def test_invalid_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match=r"worker_concurrency: .*got 'lots'"):
        load_settings()
    with pytest.raises(ConfigurationError, match=r"worker_concurrency: .*got 'lots'"):
        CommonAppSettings()


def test_every_invalid_setting_is_named_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        CommonAppSettings(worker_batch_size=0, max_retries=0, service_name="Bad")
    assert sorted(setting for setting, _ in info.value.problems) == [
        "max_retries",
        "service_name",
        "worker_batch_size",
    ]


def test_validating_a_dict_names_the_settings_without_the_password() -> None:
    # model_validate goes through the same checks; pydantic wraps the error it raises.
    with pytest.raises(ValidationError, match="worker_batch_size") as info:
        CommonAppSettings.model_validate(
            {"worker_batch_size": "x", "redis_url": "redis://u:s3cret@h:1/abc"}
        )
    assert "redis_url: the database" in str(info.value)
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value)


def test_retry_delays_must_be_ordered() -> None:
    with pytest.raises(ConfigurationError, match="retry_max_delay_s must be >= retry_initial"):
        CommonAppSettings(retry_initial_delay_s=5, retry_max_delay_s=1)


@pytest.mark.parametrize("name", ["service_name", "environment", "queue_prefix"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t", "\x00"])
def test_names_are_matched_whole(name: str, suffix: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(**{name: "svc" + suffix})
    with pytest.raises(ConfigurationError, match=name):
        load_settings(**{name: suffix + "svc"})


# -- redis_url: mistakes refused at start-up --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://localhost/15",
        "redis://user:p%40ss@host:6380/2",
        "redis://:only-password@host:6379/0",
        "redis://[::1]:6379/0",
        "rediss://host:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
        "redis://host:6379?db=3&socket_connect_timeout=2.5&client_name=api",
        "unix:///run/redis.sock",
        "unix://user:pw@/run/redis.sock?db=2",
        "memory://",
        "memory://shared-name",
        "redis+sentinel://h1:26379,h2:26380/mymaster",
        "redis+sentinel://127.0.0.1:26379",
        "redis+cluster://127.0.0.1:7000",
        "redis+cluster://u:pw@h1:7000,h2:7001,h3/?socket_timeout=5",
        "rediss+cluster://h1:7000,[::1]:7001/0?ssl_cert_reqs=none",
    ],
)
def test_valid_urls_are_accepted(url: str) -> None:
    assert CommonAppSettings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:6379/abc", "database .* must be a number"),
        ("redis+cluster://h1:7000,:7001", "each cluster node needs a host"),
        ("redis+cluster://h1:70000", "port must be a number"),
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://h1:7000?db=2", "only database 0"),
        ("redis+cluster://h1:7000?ssl_cert_reqs=none", "rediss:// \\(TLS\\) option"),
        ("redis://127.0.0.1:6379/-1", "database .* must be a number"),
        ("redis://127.0.0.1:6379/0/1", "database .* must be a number"),
        ("redis://127.0.0.1:6379/ 1", "spaces"),
        ("redis://127.0.0.1:abc/0", "port must be a number"),
        ("redis://127.0.0.1:99999/0", "port must be a number"),
        ("redis://127.0.0.1:0/0", "port must be a number"),
        ("redis://127.0.0.1:/0", "port must be a number"),
        ("redis://:6379/0", "needs a host"),
        ("redis:///0", "needs a host"),
        ("redis://", "needs a host"),
        ("rediss://user:pw@/0", "needs a host"),
        ("redis://[::1/0", "cannot be parsed"),
        ("redis://host:6379/0?dbx=1", "option 'dbx' is an unknown option"),
        ("redis://host:6379/0?db=one", "'db' has an invalid value"),
        ("redis://host:6379/0?socket_timeout=soon", "'socket_timeout' has an invalid value"),
        ("redis://host:6379/0?ssl_cert_reqs=none", "rediss:// \\(TLS\\) option"),
        ("redis://host:6379/0#frag", "fragment"),
        ("redis://host:6379/0\n", "line breaks"),
        ("redis://host:6379/0\r", "line breaks"),
        (" redis://host:6379/0", "scheme"),
        ("redis://user:pa/ss@host:6379/0", "percent-encoded"),
        ("redis://user:pa#ss@host:6379/0", "percent-encoded"),
        ("redis://user:pa?ss@host:6379/0", "percent-encoded"),
        ("unix://", "socket's path"),
        ("unix://host/run/redis.sock", "takes no host"),
        ("unix:///run/redis.sock?db=x", "'db' has an invalid value"),
        ("redis+sentinel://:26379/m", "Sentinel needs a host"),
        ("redis+sentinel://h1:26379,h2:x/m", "port must be a number"),
        ("http://host:6379/0", "scheme must be one of"),
        ("", "scheme must be one of"),
    ],
)
def test_url_mistakes_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=f"redis_url: .*{reason}"):
        CommonAppSettings(redis_url=url)


# -- the password of redis_url never shows as text ----------------------------------------------

SECRET = "s3cr3t-Pw"
SECRET_URL = f"redis://user:{SECRET}@redis.example:6379/0"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _texts(exc: BaseException) -> str:
    import traceback

    return "\n".join([str(e) + repr(e) for e in _chain(exc)] + traceback.format_exception(exc))


def test_the_url_stays_readable_by_code() -> None:
    s = CommonAppSettings(redis_url=SECRET_URL)
    assert s.redis_url == SECRET_URL
    assert s.model_dump()["redis_url"] == SECRET_URL  # data for code: round-trips
    assert CommonAppSettings(**s.model_dump()) == s
    assert s.model_copy(update={"worker_batch_size": 7}).redis_url == SECRET_URL


def test_repr_str_and_json_hide_the_password() -> None:
    s = CommonAppSettings(redis_url=SECRET_URL)
    for text in (repr(s), str(s), f"{s}", s.model_dump_json(), str(s.model_dump(mode="json"))):
        assert SECRET not in text
        assert "redis://user:***@redis.example:6379/0" in text


def test_a_password_in_the_query_is_hidden_too() -> None:
    s = CommonAppSettings(redis_url=f"redis://redis.example:6379/0?password={SECRET}&db=1")
    assert SECRET not in repr(s) and SECRET not in s.model_dump_json()
    assert "password=***" in repr(s)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@redis.example:6379/abc",  # invalid database
        f"redis://user:{SECRET}@redis.example:99999/0",  # invalid port
        f"redis://user:{SECRET}@:6379/0",  # no host
        f"redis://user:{SECRET}@redis.example:6379/0?bogus=1",
        f"redis://user:{SECRET}@redis.example:6379/0\n",
        f"redis://user:{SECRET[:3]}/{SECRET[3:]}@redis.example:6379/0",  # '/' in the password
        f"redis://user:{SECRET[:3]}#{SECRET[3:]}@redis.example:6379/0",
        f"http://user:{SECRET}@redis.example:6379/0",  # wrong scheme
    ],
)
def test_errors_about_the_url_hide_the_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_parts = (SECRET, SECRET[:3] + "/", SECRET[3:])
    for build in (lambda: CommonAppSettings(redis_url=url), lambda: load_settings(redis_url=url)):
        with pytest.raises(ConfigurationError, match="redis_url") as info:
            build()
        text = _texts(info.value)
        assert not any(part in text for part in secret_parts), text
        assert info.value.__cause__ is None and info.value.__context__ is None
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigurationError, match="redis_url") as info:
        CommonAppSettings()
    assert not any(part in _texts(info.value) for part in secret_parts)


def test_an_error_in_another_setting_does_not_show_the_url() -> None:
    with pytest.raises(ConfigurationError, match="retry_max_delay_s") as info:
        CommonAppSettings(redis_url=SECRET_URL, retry_initial_delay_s=5, retry_max_delay_s=1)
    assert SECRET not in _texts(info.value)
    with pytest.raises(ConfigurationError, match="worker_batch_size") as info:
        CommonAppSettings(redis_url=SECRET_URL, worker_batch_size=0)
    assert SECRET not in _texts(info.value)


# -- settings that contradict each other ---------------------------------------------------------


def test_the_reply_listener_block_checked_is_the_one_used() -> None:
    import inspect

    from common.blocking import REPLY_LISTENER_BLOCK_S
    from common.clients.reply_listener import ReplyListener

    block = inspect.signature(ReplyListener.__init__).parameters["block_s"].default
    assert block == REPLY_LISTENER_BLOCK_S


@pytest.mark.parametrize(
    ("timeout", "block_ms"),
    [
        (0.5, 1000),  # shorter than the worker's block
        (1.0, 1000),  # as long as the block: no time left for the answer
        (5.0, 1000),  # shorter than the reply listener's block plus the margin
        (10.0, 10_000),  # as long as a long worker block
        (30.0, 60_000),
    ],
)
def test_a_socket_timeout_shorter_than_a_blocking_read_is_refused(
    timeout: float, block_ms: int
) -> None:
    for build in (CommonAppSettings, load_settings):
        with pytest.raises(ConfigurationError) as info:
            build(redis_socket_timeout_s=timeout, worker_block_ms=block_ms)
        message = str(info.value)
        assert "redis_socket_timeout_s" in message and "worker_block_ms" in message
        assert "reply listener" in message


@pytest.mark.parametrize(
    ("timeout", "block_ms"), [(None, 60_000), (6.0, 1000), (6.0, 5000), (11.0, 10_000)]
)
def test_a_socket_timeout_longer_than_every_blocking_read_is_accepted(
    timeout: float | None, block_ms: int
) -> None:
    s = CommonAppSettings(redis_socket_timeout_s=timeout, worker_block_ms=block_ms)
    assert s.redis_socket_timeout_s == timeout


def test_a_percent_encoded_space_in_a_socket_path_is_accepted() -> None:
    url = "unix:///tmp/my%20dir/redis.sock"
    assert CommonAppSettings(redis_url=url).redis_url == url
    with pytest.raises(ConfigurationError, match="%20"):
        CommonAppSettings(redis_url="unix:///tmp/my dir/redis.sock")

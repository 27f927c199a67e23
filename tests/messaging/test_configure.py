"""configure_messaging: code wins over the environment, only Redis, no unknown setting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.errors import ConfigurationError
from common.messaging import Event, configure_messaging, get_producer, publish_event
from common.messaging.settings import messaging_settings, reset_messaging


@pytest.fixture(autouse=True)
def _fresh_defaults() -> Iterator[None]:
    reset_messaging()
    yield
    reset_messaging()


async def test_code_wins_over_the_environment_which_fills_in_the_rest(
    settings: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://env-only-host.invalid:1/0")
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    monkeypatch.setenv("QUEUE_PREFIX", settings.queue_prefix)  # only in the environment
    configured = configure_messaging(
        broker="redis", redis_url=settings.redis_url, service_name="from-code"
    )
    assert messaging_settings() is configured
    assert configured.redis_url == settings.redis_url and configured.service_name == "from-code"
    assert configured.queue_prefix == settings.queue_prefix
    producer = get_producer()
    try:  # the process's producer really uses them: the code's Redis, the environment's prefix
        await publish_event("user.updated", {"id": 1}, topic="user-events")
    finally:
        await producer.close()
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream("user-events")
    [(_, fields)] = await redis.xrange(stream)
    published = Event.model_validate_json(fields[b"event"])
    assert (published.name, published.data, published.source) == (
        "user.updated",
        {"id": 1},
        "from-code",
    )


def test_without_configuration_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    assert messaging_settings().service_name == "from-env"


def test_calls_add_up_and_a_given_settings_object_wins(settings: CommonAppSettings) -> None:
    configure_messaging(service_name="first")
    configured = configure_messaging(queue_prefix="second")
    assert (configured.service_name, configured.queue_prefix) == ("first", "second")
    assert messaging_settings(settings) is settings


@pytest.mark.parametrize("broker", ["kafka", "rabbitmq"])
def test_another_broker_is_refused_with_a_clear_error(broker: str) -> None:
    with pytest.raises(ConfigurationError, match=r"not supported.*Redis Streams only") as raised:
        configure_messaging(broker=broker, bootstrap_servers="localhost:9092")
    assert repr(broker) in str(raised.value)


def test_an_unknown_setting_or_a_bad_value_is_refused_and_changes_nothing() -> None:
    before = configure_messaging(service_name="kept")
    with pytest.raises(ConfigurationError, match="unknown messaging settings: bootstrap_servers"):
        configure_messaging(bootstrap_servers="localhost:9092")
    with pytest.raises(ConfigurationError, match="service_name"):
        configure_messaging(service_name="Not A Name!")
    assert messaging_settings() is before and messaging_settings().service_name == "kept"


def test_a_password_never_shows_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        configure_messaging(redis_url="redis://:s3cret@localhost:6379/0", service_name="Bad Name")
    assert "s3cret" not in str(raised.value)

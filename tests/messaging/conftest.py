"""Fixtures for the declarative layer: a producer on the test's settings, a clean registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from common.config import CommonAppSettings
from common.messaging import registry
from common.messaging.producer import Producer


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """What a test registers (decorators inside test functions) is forgotten after it."""
    before = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(before)


@pytest.fixture
async def producer(settings: CommonAppSettings) -> AsyncIterator[Producer]:
    producer = Producer(settings)
    yield producer
    await producer.close()

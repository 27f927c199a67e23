"""Small helpers shared by the tests: waiting for a condition with a deadline; the samples of
a Prometheus text exposition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Awaitable[T] | T], timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


Labels = tuple[tuple[str, str], ...]


def metric_labels(**labels: str) -> Labels:
    """The key of a sample's labels in :func:`metric_samples`."""
    return tuple(sorted(labels.items()))


def metric_samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a Prometheus text exposition, by (name, :func:`metric_labels`)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

"""Tracing fixtures: an SDK tracer provider exporting to memory, switched on for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.messaging import registry
from common.observability import logs, tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on (for the objects the test constructs), spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


@pytest.fixture(autouse=True)
def _restore_log_context() -> Iterator[None]:
    """A JsonFormatter made by a test switches the delivery log context on: off after it."""
    before = logs._wanted
    yield
    logs._wanted = before


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """What a test registers (decorators inside test functions) is forgotten after it."""
    before = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(before)

"""Fixtures of the operations tests: the command line run against the session's Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from common.cli import app
from common.config import CommonAppSettings

Invoke = Callable[..., Awaitable[Result]]


@pytest.fixture
def cli(settings: CommonAppSettings) -> Invoke:
    """Run ``common ...`` with the test's settings in the environment.

    The command runs its own event loop (``asyncio.run``), so it runs in a thread: the test's
    loop goes on serving the workers the command talks to."""
    runner = CliRunner()

    async def invoke(*args: str, input: str | None = None, **env: str) -> Result:
        environ = {
            "REDIS_URL": settings.redis_url,
            "QUEUE_PREFIX": settings.queue_prefix,
            "ENVIRONMENT": settings.environment,
            **env,
        }
        return await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=environ, catch_exceptions=False
        )

    return invoke

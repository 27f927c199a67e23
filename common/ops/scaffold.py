"""``common generate worker NAME``: a declarative worker module and its test, passing as made.

The test runs the worker on the embedded ``memory://`` server with
:class:`~common.testing.MessagingTestClient`: no Redis to start, a few milliseconds a test.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from common.naming import is_topic_name
from common.ops.errors import OpsError

__all__ = ["WorkerScaffold", "scaffold_worker", "write_scaffold"]

_NAME = re.compile(r"[a-z_][a-z0-9_]*")

_MODULE = '''"""The {name} worker: handles the events of topic {topic!r}."""

from __future__ import annotations

from typing import Any

from common.messaging import worker


@worker({topic!r}, concurrency={concurrency}{retry_args})
async def {name}(payload: dict[str, Any]) -> dict[str, Any]:
    """Handle one event's data; raising fails the attempt{retry_doc}."""
    if payload.get("fail"):
        raise ValueError("asked to fail")
    return {{"handled": payload}}
'''

_TEST = '''"""Tests of the {name} worker, on the embedded memory:// server."""

from __future__ import annotations

import pytest

from common.testing import MessagingTestClient
from {module} import {name}


@pytest.mark.asyncio
async def test_{name}_handles_an_event() -> None:
    async with MessagingTestClient({name}) as broker:
        await broker.publish({topic!r}, {{"id": 1}})
        assert await broker.wait_handled({name}, 1) == [{{"id": 1}}]
        assert broker.dead_letters({name}) == []


@pytest.mark.asyncio
async def test_{name}_dead_letters_what_keeps_failing() -> None:
    async with MessagingTestClient({name}) as broker:
        await broker.publish({topic!r}, {{"id": 2, "fail": True}})
        [dead] = await broker.wait_dead_letters({name})
        assert dead.data == {{"id": 2, "fail": True}}
        assert (dead.reason, dead.attempts) == ("max_retries", {attempts})
'''


@dataclass(frozen=True, slots=True)
class WorkerScaffold:
    module_name: str
    module: str  # source text
    test_name: str
    test: str


def scaffold_worker(
    name: str, topic: str | None = None, workers: int = 1, retry: bool = False
) -> WorkerScaffold:
    """The source of worker ``name`` (a Python identifier) on ``topic`` (default: ``name`` with
    dots for underscores), ``workers`` handlers at once, 3 attempts with ``retry`` (else 1)."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise OpsError(f"invalid worker name {name!r}: a lowercase Python identifier (snake_case)")
    topic = topic or name.replace("_", ".").strip(".")
    if not is_topic_name(topic):
        raise OpsError(f"invalid topic name {topic!r}: lowercase letters, digits, '.', '_' or '-'")
    if workers < 1:
        raise OpsError("--workers must be at least 1")
    attempts = 3 if retry else 1
    retry_args = ', max_retries=3, retry_backoff="exponential"' if retry else ", max_retries=1"
    retry_doc = " (3 attempts, then dead-lettered)" if retry else " (dead-lettered at once)"
    module = _MODULE.format(
        name=name, topic=topic, concurrency=workers, retry_args=retry_args, retry_doc=retry_doc
    )
    test = _TEST.format(name=name, module=name, topic=topic, attempts=attempts)
    return WorkerScaffold(f"{name}.py", module, f"test_{name}.py", test)


def write_scaffold(scaffold: WorkerScaffold, directory: Path, force: bool = False) -> list[Path]:
    """Write the module and its test into ``directory``; never overwrites unless ``force``."""
    paths = [directory / scaffold.module_name, directory / scaffold.test_name]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise OpsError(f"{', '.join(existing)} exists already (pass --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, (scaffold.module, scaffold.test), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths

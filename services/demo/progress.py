"""A rich progress display that follows a running :class:`Scenario`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from services.demo.scenario import Scenario

__all__ = ["follow"]


@contextlib.asynccontextmanager
async def follow(
    scenario: Scenario, console: Console, interval_s: float = 0.05
) -> AsyncIterator[None]:
    """Show one bar per kind of work while the body runs."""
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def refresh() -> None:
        for label, done, total in scenario.progress():
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done, total=total)

    async def poll() -> None:
        while True:
            refresh()
            await asyncio.sleep(interval_s)

    with progress:
        poller = asyncio.create_task(poll(), name="demo-progress")
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            refresh()

"""``common status``: streams and topics at a glance."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from common.ops.cli_support import (
    OPS_TIMEOUT_S,
    EnvOption,
    JsonOption,
    PrefixOption,
    RedisUrlOption,
    TimeoutOption,
    dumps,
    run_op,
)

__all__ = ["register", "status"]


def status(
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="only this service")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until Ctrl-C")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="seconds between refreshes")
    ] = 2.0,
    count: Annotated[
        int, typer.Option("--count", min=0, help="with --watch: stop after N refreshes (0: never)")
    ] = 0,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Streams at a glance: length, lag, pending, consumers, delayed retries, dead letters."""
    from rich.console import Console
    from rich.live import Live

    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.errors import UnknownStreamError
    from common.ops.render import status_view
    from common.ops.status import collect_status
    from common.ops.streams import find_streams, streams_to_report

    async def op(settings: Any) -> int:
        console = Console()
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:

            async def sample() -> Any:
                if service is not None:
                    refs = await find_streams(redis, queues, service)
                else:
                    refs = await streams_to_report(redis, queues)
                return await collect_status(redis, queues, refs=refs)

            if not watch:
                statuses = await sample()
                if as_json:
                    typer.echo(dumps([s.as_dict() for s in statuses]))
                else:
                    console.print(status_view(statuses))
                return 0
            refreshes = 0
            try:
                with Live(console=console, auto_refresh=False) as live:
                    while True:
                        try:
                            statuses = await sample()
                        except UnknownStreamError:
                            statuses = []
                        if as_json:
                            import orjson

                            line = orjson.dumps([s.as_dict() for s in statuses], default=str)
                            live.console.print(line.decode(), soft_wrap=True, markup=False)
                        else:
                            live.update(status_view(statuses), refresh=True)
                        refreshes += 1
                        if count and refreshes >= count:
                            return 0
                        await asyncio.sleep(interval)
            except (KeyboardInterrupt, asyncio.CancelledError):
                return 0

    run_op(op, redis_url, prefix, env)


def register(app: typer.Typer) -> None:
    app.command()(status)

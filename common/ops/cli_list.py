"""``common list [PACKAGE] [--json]``: the declarative workers, consumers and listeners."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from common.ops.cli_support import EnvOption, JsonOption, PrefixOption, dumps, run_op

__all__ = ["list_targets", "register"]


def list_targets(
    package: Annotated[
        str | None,
        typer.Argument(help="a module or package to import (default: what is registered)"),
    ] = None,
    as_json: JsonOption = False,
    prefix: PrefixOption = None,
    env: EnvOption = None,
) -> None:
    """List declarative workers, consumers and listeners: topics, group, concurrency, retries."""
    from common.ops.catalog import describe, find_targets

    async def op(settings: Any) -> int:
        infos = [describe(sub, settings) for sub in find_targets(package)]
        if as_json:
            typer.echo(dumps([info.as_dict() for info in infos]))
            return 0
        if not infos:
            where = f"in {package!r}" if package else "(name a package to import)"
            typer.echo(f"no declarative workers registered {where}")
            return 0
        for info in infos:
            typer.echo(f"{info.name}  ({info.kind}, {info.module})")
            typer.echo(f"  Input:  {', '.join(info.topics)}")
            if info.output_topics:
                typer.echo(f"  Output: {', '.join(info.output_topics)}")
            typer.echo(f"  Group: {info.group}")
            typer.echo(f"  Concurrency: {info.concurrency} x {info.consumers} consumer(s)")
            typer.echo(f"  Retries: {info.max_retries}")
            for handler in info.handlers:
                if handler.event is not None:
                    typer.echo(f"  On {handler.event}: {handler.name}")
            typer.echo("")
        return 0

    run_op(op, None, prefix, env)


def register(app: typer.Typer) -> None:
    app.command("list")(list_targets)

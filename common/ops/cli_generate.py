"""``common generate worker NAME [--topic T] [--workers N] [--retry]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from common.ops.cli_support import run_op

__all__ = ["generate_app", "generate_worker", "register"]

generate_app = typer.Typer(
    help="Scaffold code that passes its tests as made.", no_args_is_help=True
)


@generate_app.command("worker")
def generate_worker(
    name: Annotated[str, typer.Argument(help="the worker's name: a snake_case identifier")],
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="topic (default: NAME, '_' -> '.')")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="handlers at once (concurrency)")
    ] = 1,
    retry: Annotated[
        bool, typer.Option("--retry", help="3 attempts with backoff (default: dead-letter at once)")
    ] = False,
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="where to write NAME.py and test_NAME.py")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Write a declarative worker module NAME.py and its test test_NAME.py (pytest)."""
    from common.ops.scaffold import scaffold_worker, write_scaffold

    async def op(settings: Any) -> int:
        paths = write_scaffold(scaffold_worker(name, topic, workers, retry), directory, force)
        for path in paths:
            typer.echo(f"created {path}")
        return 0

    run_op(op, None, None, None)


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")

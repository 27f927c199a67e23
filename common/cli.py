"""Command line: ``python -m common run package.module:WorkerClass``.

More subcommands (list, status, dlq, send, call, generate) belong to the operations tooling.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from common.config import load_settings
from common.errors import ConfigurationError
from common.runner import serve

__all__ = ["app", "main"]

app = typer.Typer(help="Redis Streams workers: run and operate services.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Redis Streams workers: run and operate services."""


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="module:WorkerClass to run")],
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="workers (default: NUM_INTERNAL_WORKERS)"),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="service name (default: SERVICE_NAME)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "INFO",
) -> None:
    """Run a pool of workers until SIGTERM or SIGINT, then drain it gracefully."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        overrides = {"service_name": service} if service else {}
        settings = load_settings(**overrides)
        serve(target, settings, num_workers=workers)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()

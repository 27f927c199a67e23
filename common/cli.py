"""Command line: ``python -m common run package.module:WorkerClass``, and the operations
commands ``status``, ``dlq list|show|replay|purge``, ``send``, ``call``, ``publish``, ``list``,
``generate worker`` and ``docs``, each in its module ``common.ops.cli_*``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S
from common.config import load_settings
from common.errors import ConfigurationError, RedisUnavailableError
from common.ops.cli_dlq import dlq_app
from common.ops.cli_docs import register as register_docs
from common.ops.cli_generate import register as register_generate
from common.ops.cli_list import register as register_list
from common.ops.cli_sending import register as register_sending
from common.ops.cli_status import register as register_status
from common.runner import serve

__all__ = ["app", "dlq_app", "main"]

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
    connect_timeout: Annotated[
        float,
        typer.Option(min=0, help="seconds to wait for Redis at start-up, retrying (0: forever)"),
    ] = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Run a pool of workers until SIGTERM or SIGINT, then drain it gracefully.

    Redis is waited for at start-up (one log line per attempt) for ``--connect-timeout``
    seconds; then the command exits with status 1 and one line naming the URL and the cause."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        overrides = {"service_name": service} if service else {}
        settings = load_settings(**overrides)
        serve(target, settings, num_workers=workers, connect_timeout_s=connect_timeout)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except RedisUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


# -- operations (common.ops.cli_*) ----------------------------------------------------------

register_status(app)
app.add_typer(dlq_app, name="dlq")
register_sending(app)
register_list(app)
register_generate(app)
register_docs(app)


def main() -> None:
    app()

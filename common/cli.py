"""Command line: ``python -m common run TARGET`` (a ``module:WorkerClass``, a module or package of
declarative workers, a worker name, or ``all``; ``--processes P``), and the operations commands
``status``, ``dlq list|show|replay|purge``, ``send``, ``call``, ``publish``, ``list``,
``generate worker`` and ``docs``, each in its module ``common.ops.cli_*``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
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
from common.runner import check_redis, event_loop_runner, resolve_target, serve, target_settings
from common.supervisor import PROCESS_SLOT_ENV, Supervisor, follow_supervisor

__all__ = ["app", "dlq_app", "main"]

app = typer.Typer(help="Redis Streams workers: run and operate services.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Redis Streams workers: run and operate services."""


@app.command()
def run(
    target: Annotated[
        str,
        typer.Argument(
            help="module:WorkerClass, a module or package of declarative workers, "
            "a worker name, or 'all'"
        ),
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="workers (default: NUM_INTERNAL_WORKERS; declarative: each one's consumers)",
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option("--processes", "-p", min=1, help="worker processes under one supervisor"),
    ] = 1,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="import this module or package first, registering its declarative workers "
            "(repeatable; e.g. run all --from app.workers)",
        ),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="service name (default: SERVICE_NAME)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "INFO",
    connect_timeout: Annotated[
        float,
        typer.Option(min=0, help="seconds to wait for Redis at start-up, retrying (0: forever)"),
    ] = DEFAULT_CONNECT_TIMEOUT_S,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="serve GET /metrics (Prometheus) on this port; with --processes, the sum "
            "over the processes, served by the supervisor",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="address the metrics port listens on")
    ] = "127.0.0.1",
) -> None:
    """Run workers until SIGTERM or SIGINT, then drain them gracefully.

    Redis is waited for at start-up (one log line per attempt) for ``--connect-timeout``
    seconds; then the command exits with status 1 and one line naming the URL and the cause.
    A target that does not import or names nothing exits with status 2."""
    supervised = os.environ.get(PROCESS_SLOT_ENV)
    where = f"[{os.getpid()}] " if processes > 1 or supervised is not None else ""
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s {where}%(levelname)s %(name)s %(message)s",
    )
    if supervised is not None:
        follow_supervisor()
    try:
        resolved = resolve_target(target, imports or ())
        overrides = {"service_name": service} if service else {}
        settings = (
            target_settings(resolved, **overrides)
            if resolved.declarative
            else load_settings(**overrides)
        )
        address = None if metrics_port is None else (metrics_host, metrics_port)
        if address is not None:
            _check_metrics_installed()
        if processes == 1:
            serve(
                resolved,
                settings,
                num_workers=workers,
                connect_timeout_s=connect_timeout,
                metrics_address=address,
            )
            return
        if settings.redis_url.startswith("memory://"):
            raise ConfigurationError("--processes needs a Redis server: memory:// is in-process")
        runner = event_loop_runner()
        if not runner(check_redis(settings, connect_timeout)):
            return  # a signal while waiting for Redis
        command = _child_command(
            target, workers, imports or (), service, log_level, connect_timeout
        )
        grace = settings.shutdown_grace_s + _PROCESS_STOP_ALLOWANCE_S
        if address is None:
            code = runner(Supervisor(command, processes, grace_s=grace).run())
        else:
            from common.ops.metrics import metric_refs
            from common.ops.multiprocess import supervise_with_metrics

            refs = metric_refs(
                settings, None if not resolved.declarative else resolved.subscriptions
            )
            code = runner(
                supervise_with_metrics(
                    command,
                    processes,
                    settings,
                    refs,
                    address,
                    grace_s=grace,
                    connect_timeout_s=connect_timeout,
                )
            )
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except RedisUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


_PROCESS_STOP_ALLOWANCE_S = 10.0  # beyond the grace period: the final flush, closing


def _check_metrics_installed() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "--metrics-port needs prometheus-client: pip install 'redis-streams-common[metrics]'"
        ) from None


def _child_command(
    target: str,
    workers: int | None,
    imports: Sequence[str],
    service: str | None,
    log_level: str,
    connect_timeout: float,
) -> list[str]:
    """The ``run`` command of one supervised process: the same target, one process."""
    command = [sys.executable, "-m", "common", "run", target]
    command += ["--log-level", log_level, "--connect-timeout", repr(connect_timeout)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if service:
        command += ["--service", service]
    for module in imports:
        command += ["--from", module]
    return command


# -- operations (common.ops.cli_*) ----------------------------------------------------------

register_status(app)
app.add_typer(dlq_app, name="dlq")
register_sending(app)
register_list(app)
register_generate(app)
register_docs(app)


def main() -> None:
    app()

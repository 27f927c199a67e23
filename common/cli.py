"""Command line: ``python -m common run package.module:WorkerClass``, and the operations
commands ``status``, ``dlq list|show|replay|purge``, ``send`` and ``call`` (see
:mod:`common.ops`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any, NoReturn

import typer

from common.clients.connect import DEFAULT_CONNECT_TIMEOUT_S
from common.config import load_settings
from common.errors import ConfigurationError, RedisUnavailableError
from common.runner import check_redis, event_loop_runner, resolve_target, serve, target_settings
from common.secrets import redact_url
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
        if processes == 1:
            serve(resolved, settings, num_workers=workers, connect_timeout_s=connect_timeout)
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
        code = runner(Supervisor(command, processes, grace_s=grace).run())
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except RedisUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


_PROCESS_STOP_ALLOWANCE_S = 10.0  # beyond the grace period: the final flush, closing


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


# -- operations: status, dead letters, send and call ----------------------------------------

RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: REDIS_URL)", show_default=False),
]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="key prefix (default: QUEUE_PREFIX)")
]
EnvOption = Annotated[str | None, typer.Option("--env", help="environment (default: ENVIRONMENT)")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON output, for scripts")]
TimeoutOption = Annotated[
    float, typer.Option("--connect-timeout", min=0.1, help="seconds to wait for Redis")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="only this reason (e.g. max_retries)")
]
TypeOption = Annotated[str | None, typer.Option("--type", help="only this action type")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="dead-lettered since: ISO time, or an age (1h)")
]
IdsArgument = Annotated[
    list[str] | None, typer.Argument(help="dead-letter ids (default: all that match)")
]

_OPS_TIMEOUT_S = 5.0
_PROGRESS_FROM = 200  # records: a progress bar for runs at least this long (on a terminal)


def _ops_settings(redis_url: str | None, prefix: str | None, env: str | None) -> Any:
    overrides = {
        name: value
        for name, value in (
            ("redis_url", redis_url),
            ("queue_prefix", prefix),
            ("environment", env),
        )
        if value
    }
    return load_settings(**overrides)


def _scrub(message: str, redis_url: str | None) -> str:
    """Defence in depth: whatever a message holds, the URL's password is never printed."""
    from urllib.parse import unquote, urlsplit

    if redis_url:
        try:
            password = urlsplit(redis_url).password
        except ValueError:
            password = None
        for secret in {password, unquote(password or "")} - {None, ""}:
            message = message.replace(str(secret), "***")
    return " ".join(message.split())  # one line


def _fail(message: str, code: int, redis_url: str | None) -> NoReturn:
    typer.echo(f"error: {_scrub(message, redis_url)}", err=True)
    raise typer.Exit(code)


def _run_op(
    op: Callable[[Any], Coroutine[Any, Any, int]],
    redis_url: str | None,
    prefix: str | None,
    env: str | None,
) -> None:
    """Run one operation with its settings; every failure is one line and a non-zero exit."""
    from redis.exceptions import RedisError

    from common.errors import ActionTimeoutError, CommonError
    from common.ops.errors import OpsError

    url = redis_url or os.environ.get("REDIS_URL")
    try:
        settings = _ops_settings(redis_url, prefix, env)
    except ConfigurationError as exc:
        _fail(str(exc), 2, url)
    url = settings.redis_url
    quiet = logging.getLogger("common")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the connection's warnings would add lines to the one error
    try:
        code = asyncio.run(op(settings))
    except (OpsError, RedisUnavailableError, ActionTimeoutError) as exc:
        _fail(str(exc), 1, url)
    except RedisError as exc:
        _fail(f"Redis at {redact_url(url)}: {type(exc).__name__}: {exc}", 1, url)
    except CommonError as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1, url)
    except KeyboardInterrupt:
        _fail("interrupted", 130, url)
    finally:
        quiet.setLevel(level)
    if code:
        raise typer.Exit(code)


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


@app.command()
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
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Streams at a glance: length, lag, pending, consumers, delayed retries, dead letters."""
    from rich.console import Console
    from rich.live import Live

    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.errors import UnknownStreamError
    from common.ops.render import status_view
    from common.ops.status import collect_status
    from common.ops.streams import find_stream, streams_to_report

    async def op(settings: Any) -> int:
        console = Console()
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:

            async def sample() -> Any:
                if service is not None:
                    refs = [await find_stream(redis, queues, service)]
                else:
                    refs = await streams_to_report(redis, queues)
                return await collect_status(redis, queues, refs=refs)

            if not watch:
                statuses = await sample()
                if as_json:
                    typer.echo(_dumps([s.as_dict() for s in statuses]))
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

    _run_op(op, redis_url, prefix, env)


dlq_app = typer.Typer(
    help="Dead letters of a service: list, show, replay, purge.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")


def _filter(
    reason: str | None, action_type: str | None, since: str | None, limit: int | None
) -> Any:
    from common.ops.deadletters import DeadLetterFilter
    from common.ops.since import parse_since

    since_ms = parse_since(since) if since is not None else None
    return DeadLetterFilter(reason, action_type, since_ms, limit)


async def _select(
    redis: Any, ref: Any, ids: list[str] | None, where: Any
) -> tuple[list[Any], list[str]]:
    """The records named by ``ids`` (and the ids not found), or those ``where`` matches."""
    from common.ops.deadletters import get_dead_letters, list_dead_letters

    if ids:
        found = await get_dead_letters(redis, ref.dead_letter_stream, ids)
        missing = [i for i, r in zip(ids, found, strict=True) if r is None]
        return [r for r in found if r is not None and where.matches(r)], missing
    return await list_dead_letters(redis, ref.dead_letter_stream, where), []


def _progress(total: int, what: str) -> Any:
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(
        *Progress.get_default_columns(),
        console=console,
        transient=True,
        disable=total < _PROGRESS_FROM or not console.is_terminal,
    ), what


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str, typer.Argument(help="the service whose dead letters to list")],
    reason: ReasonOption = None,
    action_type: TypeOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most N records")] = 100,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """List dead letters, oldest first: id, time, reason, action type, retries, error."""
    from rich.console import Console

    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.deadletters import list_dead_letters
    from common.ops.render import dead_letters_table
    from common.ops.streams import find_stream

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:
            ref = await find_stream(redis, queues, service)
            records = await list_dead_letters(redis, ref.dead_letter_stream, where)
            total = await redis.xlen(ref.dead_letter_stream)
        if as_json:
            typer.echo(_dumps([r.as_dict() for r in records]))
        else:
            title = f"{ref.dead_letter_stream}: {len(records)} shown of {total}"
            Console().print(dead_letters_table(records, title))
        return 0

    _run_op(op, redis_url, prefix, env)


@dlq_app.command("show")
def dlq_show(
    service: Annotated[str, typer.Argument(help="the service")],
    ids: Annotated[list[str], typer.Argument(help="dead-letter ids")],
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Show dead letters in full: the original payload, the error, where and when."""
    from rich.console import Console

    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.deadletters import get_dead_letters
    from common.ops.errors import OpsError
    from common.ops.render import dead_letter_detail
    from common.ops.streams import find_stream

    async def op(settings: Any) -> int:
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:
            ref = await find_stream(redis, queues, service)
            found = await get_dead_letters(redis, ref.dead_letter_stream, ids)
        missing = [i for i, r in zip(ids, found, strict=True) if r is None]
        if missing:
            raise OpsError(f"no dead letter {', '.join(missing)} in {ref.dead_letter_stream}")
        records = [r for r in found if r is not None]
        if as_json:
            typer.echo(_dumps([r.as_dict() for r in records]))
        else:
            console = Console()
            for record in records:
                console.print(dead_letter_detail(record))
        return 0

    _run_op(op, redis_url, prefix, env)


@dlq_app.command("replay")
def dlq_replay(
    service: Annotated[str, typer.Argument(help="the service")],
    ids: IdsArgument = None,
    reason: ReasonOption = None,
    action_type: TypeOption = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most N")] = None,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Put dead letters back on their stream as new entries (a fresh attempt count), each
    removed from the dead letters in the same atomic step."""
    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.deadletters import ReplayResult, replay
    from common.ops.streams import find_stream

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:
            ref = await find_stream(redis, queues, service)
            records, not_found = await _select(redis, ref, ids, where)
            progress, _ = _progress(len(records), "replay")
            with progress:
                task = progress.add_task("replaying", total=len(records))
                result: ReplayResult = await replay(
                    redis, ref, records, lambda n: progress.advance(task, n)
                )
        result.missing[:0] = not_found
        if as_json:
            typer.echo(_dumps(result.as_dict()))
        else:
            typer.echo(f"replayed {len(result.replayed)} onto {ref.stream}")
            for record_id in result.missing:
                typer.echo(f"not found: {record_id} (replayed or purged meanwhile?)")
            for record_id, why in result.refused.items():
                typer.echo(f"not replayed: {record_id}: {why}")
        return 1 if result.missing or result.refused else 0

    _run_op(op, redis_url, prefix, env)


@dlq_app.command("purge")
def dlq_purge(
    service: Annotated[str, typer.Argument(help="the service")],
    ids: IdsArgument = None,
    reason: ReasonOption = None,
    action_type: TypeOption = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most N")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.deadletters import purge
    from common.ops.errors import OpsError
    from common.ops.streams import find_stream

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        queues = QueueManager(settings.queue_prefix, settings.environment)
        async with ops_connection(settings, connect_timeout) as redis:
            ref = await find_stream(redis, queues, service)
            records, not_found = await _select(redis, ref, ids, where)
            if records and not yes:
                try:
                    sure = typer.confirm(
                        f"Delete {len(records)} dead letters from {ref.dead_letter_stream}?"
                    )
                except (typer.Abort, EOFError):
                    sure = False
                if not sure:
                    raise OpsError("nothing deleted (pass --yes to purge without asking)")
            progress, _ = _progress(len(records), "purge")
            with progress:
                task = progress.add_task("purging", total=len(records))
                deleted = await purge(
                    redis,
                    ref.dead_letter_stream,
                    [r.id for r in records],
                    lambda n: progress.advance(task, n),
                )
        if as_json:
            typer.echo(_dumps({"deleted": deleted, "missing": not_found}))
        else:
            typer.echo(f"deleted {deleted} dead letters from {ref.dead_letter_stream}")
            for record_id in not_found:
                typer.echo(f"not found: {record_id}")
        return 1 if not_found else 0

    _run_op(op, redis_url, prefix, env)


@app.command()
def send(
    action_type: Annotated[str, typer.Argument(help="action type, e.g. user.create")],
    data: Annotated[str, typer.Argument(help="the action's data: a JSON object")] = "{}",
    target: Annotated[
        str | None, typer.Option("--target", help="target service (default: from the type)")
    ] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Fire an action (no response awaited); prints its stream, entry id and action id."""
    from common.ops.connection import ops_connection
    from common.ops.sending import build_action, parse_data, send_action

    async def op(settings: Any) -> int:
        action = build_action(action_type, parse_data(data), target)
        async with ops_connection(settings, connect_timeout) as redis:
            sent = await send_action(redis, settings, action)
        typer.echo(_dumps(sent))
        return 0

    _run_op(op, redis_url, prefix, env)


@app.command()
def call(
    action_type: Annotated[str, typer.Argument(help="action type, e.g. user.get")],
    data: Annotated[str, typer.Argument(help="the action's data: a JSON object")] = "{}",
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=0.001, help="seconds to wait for the response")
    ] = 30.0,
    target: Annotated[
        str | None, typer.Option("--target", help="target service (default: from the type)")
    ] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = _OPS_TIMEOUT_S,
) -> None:
    """Call an action and print its response as JSON (exit 1 if it did not succeed)."""
    from common.ops.connection import ops_connection
    from common.ops.sending import build_action, call_action, parse_data

    async def op(settings: Any) -> int:
        action = build_action(action_type, parse_data(data), target)
        async with ops_connection(settings, connect_timeout) as redis:
            response = await call_action(redis, settings, action, timeout)
        typer.echo(_dumps(response.model_dump(mode="json")))
        return 0 if response.success else 1

    _run_op(op, redis_url, prefix, env)


def main() -> None:
    app()

"""``common dlq list|show|replay|purge NAME [--group G]``: a service's dead letters, or a topic's
subscriber group's.

``NAME`` is a service (its ``...:{service}:dlq``, and with partitions each partition's
``...:{service:k}:dlq``, where record ``k:<id>`` is ``<id>`` of partition k) or a topic; a
topic's dead letters are per subscriber group (``...:{topic}:dlq:<group>``, and with
partitions each partition's ``...:{topic:k}:dlq:<group>``, named ``k:<id>`` likewise):
``--group`` names the group (needed when the topic has several). Replaying a topic's dead
letters re-publishes the events on the topic (each on its record's partition), which every
group reads: with other groups on the topic, replay asks first unless ``--yes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer

from common.ops.cli_support import (
    OPS_TIMEOUT_S,
    EnvOption,
    IdsArgument,
    JsonOption,
    PrefixOption,
    ReasonOption,
    RedisUrlOption,
    SinceOption,
    TimeoutOption,
    TypeOption,
    dumps,
    progress_bar,
    run_op,
)

__all__ = ["dlq_app"]


dlq_app = typer.Typer(
    help="Dead letters of a service or of a topic's subscriber group: list, show, replay, purge.",
    no_args_is_help=True,
)

GroupOption = Annotated[
    str | None,
    typer.Option("--group", "-g", help="a topic's subscriber group (needed if it has several)"),
]


def _filter(
    reason: str | None, action_type: str | None, since: str | None, limit: int | None
) -> Any:
    from common.ops.deadletters import DeadLetterFilter
    from common.ops.since import parse_since

    since_ms = parse_since(since) if since is not None else None
    return DeadLetterFilter(reason, action_type, since_ms, limit)


def _where(refs: list[Any]) -> str:
    """What messages name: the one dead-letter stream, or a service's partitions'."""
    if len(refs) == 1:
        return str(refs[0].dead_letter_stream)
    return f"the dead letters of the {len(refs)} partitions of {refs[0].name}"


async def _select(
    redis: Any, refs: list[Any], ids: list[str] | None, where: Any
) -> tuple[list[Any], list[str]]:
    """The records named by ``ids`` (and the ids not found), or those ``where`` matches."""
    from common.ops.deadletters import find_records, list_partitions

    if ids:
        found = await find_records(redis, refs, ids)
        missing = [i for i, r in zip(ids, found, strict=True) if r is None]
        return [r for r in found if r is not None and where.matches(r)], missing
    return await list_partitions(redis, refs, where), []


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str, typer.Argument(help="the service or topic")],
    group: GroupOption = None,
    reason: ReasonOption = None,
    action_type: TypeOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most N records")] = 100,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """List dead letters, oldest first: id, time, reason, action type, retries, error (with
    partitions: all of them, a record of partition k named k:<id>)."""
    from rich.console import Console

    from common.ops.deadletters import list_partitions
    from common.ops.render import dead_letters_table

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        async with _dead_letters_of(settings, connect_timeout, service, group) as (redis, refs):
            records = await list_partitions(redis, refs, where)
            total = sum([await redis.xlen(ref.dead_letter_stream) for ref in refs])
        if as_json:
            typer.echo(dumps([r.as_dict() for r in records]))
        else:
            title = f"{_where(refs)}: {len(records)} shown of {total}"
            Console().print(dead_letters_table(records, title))
        return 0

    run_op(op, redis_url, prefix, env)


@dlq_app.command("show")
def dlq_show(
    service: Annotated[str, typer.Argument(help="the service or topic")],
    ids: Annotated[list[str], typer.Argument(help="dead-letter ids")],
    group: GroupOption = None,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Show dead letters in full: the original payload, the error, where and when."""
    from rich.console import Console

    from common.ops.deadletters import find_records
    from common.ops.errors import OpsError
    from common.ops.render import dead_letter_detail

    async def op(settings: Any) -> int:
        async with _dead_letters_of(settings, connect_timeout, service, group) as (redis, refs):
            found = await find_records(redis, refs, ids)
        missing = [i for i, r in zip(ids, found, strict=True) if r is None]
        if missing:
            raise OpsError(f"no dead letter {', '.join(missing)} in {_where(refs)}")
        records = [r for r in found if r is not None]
        if as_json:
            typer.echo(dumps([r.as_dict() for r in records]))
        else:
            console = Console()
            for record in records:
                console.print(dead_letter_detail(record))
        return 0

    run_op(op, redis_url, prefix, env)


@dlq_app.command("replay")
def dlq_replay(
    service: Annotated[str, typer.Argument(help="the service or topic")],
    group: GroupOption = None,
    ids: IdsArgument = None,
    reason: ReasonOption = None,
    action_type: TypeOption = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="at most N")] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="do not ask (a topic: its other groups get them too)"),
    ] = False,
    as_json: JsonOption = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Put dead letters back on their stream as new entries (a fresh attempt count), each
    removed from the dead letters in the same atomic step (a partition's onto that
    partition's stream).

    A topic's dead letters are re-published on the topic, so every subscriber group of the
    topic receives them again, not only the group that failed (one topic stream cannot address
    one group): with other groups there, this asks first unless --yes."""
    from common.ops.deadletters import ReplayResult, by_partition, replay
    from common.ops.errors import OpsError
    from common.ops.topics import other_groups

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        async with _dead_letters_of(settings, connect_timeout, service, group) as (redis, refs):
            ref = refs[0]
            records, not_found = await _select(redis, refs, ids, where)
            others = await other_groups(redis, ref) if ref.group is not None else []
            if records and others and not yes:
                warning = (
                    f"Replaying re-publishes {len(records)} events on topic {ref.name!r}: "
                    f"every group reads them again, not only {ref.group!r} but also "
                    f"{', '.join(others)}. Replay?"
                )
                try:
                    sure = typer.confirm(warning, err=True)
                except (typer.Abort, EOFError):
                    typer.echo("", err=True)  # end the prompt's line: the error has its own
                    sure = False
                if not sure:
                    raise OpsError(
                        f"nothing replayed: topic {ref.name!r} has other groups "
                        f"({', '.join(others)}) that would get the events again; "
                        "pass --yes to replay to all of them"
                    )
            progress = progress_bar(len(records))
            result = ReplayResult(missing=not_found)
            onto: list[tuple[str, int]] = []
            with progress:
                task = progress.add_task("replaying", total=len(records))
                for part, chosen in by_partition(refs, records):
                    done = await replay(redis, part, chosen, lambda n: progress.advance(task, n))
                    result.replayed.update(done.replayed)
                    result.missing += done.missing
                    result.refused.update(done.refused)
                    onto.append((part.stream, len(done.replayed)))
        if as_json:
            typer.echo(dumps(result.as_dict()))
        elif len(refs) == 1:
            typer.echo(f"replayed {len(result.replayed)} onto {ref.stream}")
        else:
            typer.echo(
                f"replayed {len(result.replayed)} onto the {len(refs)} partitions of {ref.name}"
            )
            for stream, count in onto:
                typer.echo(f"  {count} onto {stream}")
        if not as_json:
            for record_id in result.missing:
                typer.echo(f"not found: {record_id} (replayed or purged meanwhile?)")
            for record_id, why in result.refused.items():
                typer.echo(f"not replayed: {record_id}: {why}")
        return 1 if result.missing or result.refused else 0

    run_op(op, redis_url, prefix, env)


@dlq_app.command("purge")
def dlq_purge(
    service: Annotated[str, typer.Argument(help="the service or topic")],
    group: GroupOption = None,
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
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    from common.ops.deadletters import purge_partitions
    from common.ops.errors import OpsError

    async def op(settings: Any) -> int:
        where = _filter(reason, action_type, since, limit)
        async with _dead_letters_of(settings, connect_timeout, service, group) as (redis, refs):
            records, not_found = await _select(redis, refs, ids, where)
            if records and not yes:
                try:
                    sure = typer.confirm(f"Delete {len(records)} dead letters from {_where(refs)}?")
                except (typer.Abort, EOFError):
                    sure = False
                if not sure:
                    raise OpsError("nothing deleted (pass --yes to purge without asking)")
            progress = progress_bar(len(records))
            with progress:
                task = progress.add_task("purging", total=len(records))
                deleted = await purge_partitions(
                    redis, refs, records, lambda n: progress.advance(task, n)
                )
        if as_json:
            typer.echo(dumps({"deleted": deleted, "missing": not_found}))
        else:
            typer.echo(f"deleted {deleted} dead letters from {_where(refs)}")
            for record_id in not_found:
                typer.echo(f"not found: {record_id}")
        return 1 if not_found else 0

    run_op(op, redis_url, prefix, env)


@contextlib.asynccontextmanager
async def _dead_letters_of(
    settings: Any, connect_timeout: float, service: str, group: str | None
) -> AsyncIterator[tuple[Any, list[Any]]]:
    """A connection, and the dead-letter streams of ``service`` (each partition's) or of the
    topic group ``group``."""
    from common.clients.queue_manager import QueueManager
    from common.ops.connection import ops_connection
    from common.ops.topics import find_dead_letter_refs

    queues = QueueManager(settings.queue_prefix, settings.environment)
    async with ops_connection(settings, connect_timeout) as redis:
        yield redis, await find_dead_letter_refs(redis, queues, service, group)

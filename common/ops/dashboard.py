"""The web dashboard under ``/ops/``: stream status live, and dead letters to replay or purge.

Opt-in (``ops_router(pool, dashboard=True)``); the data comes from the same functions as
``common status`` and ``common dlq`` (:mod:`common.ops.status`, :mod:`common.ops.deadletters`),
read through the first started pool's Redis connection, in that pool's namespace
(``QUEUE_PREFIX``, ``ENVIRONMENT``). Routes:

- ``GET /ops/``: the overview page, refreshed by polling ``GET /ops/api/status`` (the
  statuses as ``common status --json`` gives them, and the rendered tables as ``html``);
- ``GET /ops/dlq/{name}[?group=G&reason=R&type=T&limit=N]``: a service's dead letters (of all
  its partitions, a record of partition k named ``k:<id>``), or a topic group's
  (``GET /ops/api/dlq/{name}``: the same records as JSON);
- ``POST /ops/api/dlq/{name}/replay`` and ``.../purge`` with ``{"ids": [...], "group": G}``
  (ids are the records' names; each acts on its own partition):
  only when the app passes ``dashboard_auth`` (a FastAPI dependency, run first: it may raise
  401 or 403); without it they answer 403 and the page's buttons are disabled. They also
  require the ``X-Ops-Dashboard`` header (which a cross-site form cannot send) and refuse an
  ``Origin`` other than the ``Host`` (or a proxy's ``X-Forwarded-Host``). Replaying a topic
  group's dead letters when the topic has other groups needs ``"all_groups": true`` (every
  group reads the event again), else 409.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from redis.exceptions import RedisError

from common.clients.queue_manager import QueueManager
from common.errors import WorkerStateError
from common.ops.cli_support import _scrub
from common.ops.dashboard_assets import CSRF_HEADER
from common.ops.dashboard_html import (
    DeadLetterView,
    dead_letters_page,
    overview_page,
    overview_tables,
)
from common.ops.deadletters import (
    PAGE,
    DeadLetterFilter,
    find_records,
    list_partitions,
    purge_partitions,
    replay_partitions,
)
from common.ops.errors import OpsError, UnknownStreamError
from common.ops.status import collect_status
from common.ops.topics import find_dead_letter_refs, other_groups
from common.secrets import redact_url

__all__ = ["DeadLetterIds", "add_dashboard"]

T = TypeVar("T")
# A record's name: its id, ``k:<id>`` in partition k >= 1 (deadletters.record_name).
RecordName = Annotated[str, StringConstraints(pattern=r"^(?:[1-9]\d{0,5}:)?\d{1,20}-\d{1,20}$")]
# Query parameters of the dead-letter routes (module level: FastAPI resolves them by name).
Group = Annotated[str | None, Query(max_length=200)]
Text = Annotated[str, Query(max_length=200)]
TypeText = Annotated[str, Query(alias="type", max_length=200)]
Limit = Annotated[int, Query(ge=1, le=1000)]


class DeadLetterIds(BaseModel):
    """The body of a replay or purge: which records (by name), of which topic group."""

    ids: list[RecordName] = Field(min_length=1, max_length=PAGE)
    group: str | None = None
    all_groups: bool = False  # replay a topic group's records although other groups read them


class _Failure(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(slots=True)
class _Connection:
    redis: Any
    queues: QueueManager
    url: str

    @property
    def where(self) -> str:
        return f"{self.queues.prefix}:{self.queues.environment} on {redact_url(self.url)}"


def _connection(pools: Sequence[Any]) -> _Connection:
    for pool in pools:
        try:
            redis = pool.redis
        except WorkerStateError:
            continue
        settings = pool.settings
        queues = QueueManager(settings.queue_prefix, settings.environment)
        return _Connection(redis, queues, settings.redis_url)
    raise _Failure(503, "no Redis connection: the worker pool is not started")


async def _run(
    pools: Sequence[Any], timeout_s: float, op: Callable[[_Connection], Awaitable[T]]
) -> tuple[_Connection, T]:
    """Run ``op`` on the pools' Redis within ``timeout_s``; every failure is a :class:`_Failure`
    whose message is one line without the password."""
    conn = _connection(pools)
    try:
        async with asyncio.timeout(timeout_s):
            return conn, await op(conn)
    except UnknownStreamError as exc:
        raise _Failure(404, str(exc)) from None
    except OpsError as exc:
        raise _Failure(400, _scrub(str(exc), conn.url)) from None
    except TimeoutError:
        message = f"Redis at {redact_url(conn.url)} did not answer within {timeout_s:g}s"
        raise _Failure(503, message) from None
    except (RedisError, OSError) as exc:
        message = f"Redis at {redact_url(conn.url)}: {type(exc).__name__}: {exc}"
        raise _Failure(503, _scrub(message, conn.url)) from None


def _where(pools: Sequence[Any]) -> str:
    try:
        return _connection(pools).where
    except _Failure:
        return ""


def _html(build: Callable[[str], str], status_code: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(build(nonce), status_code=status_code, headers=headers)


def _json(body: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


async def _from_the_page(request: Request) -> None:
    """Refuse what did not come from the dashboard's own page (CSRF)."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(403, f"the {CSRF_HEADER}: 1 header is required")
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}  # a proxy's
    if origin and urlsplit(origin).netloc not in hosts:
        raise HTTPException(403, f"cross-origin request from {origin} refused")


async def _disabled() -> None:
    raise HTTPException(
        403, "replay and purge are disabled: the app passes no dashboard_auth to ops_router"
    )


def add_dashboard(
    router: APIRouter,
    pools: Sequence[Any],
    auth: Callable[..., Any] | None = None,
    timeout_s: float = 2.0,
) -> None:
    """Add the dashboard's routes to ``router`` (replay and purge only behind ``auth``)."""
    enabled = auth is not None
    guards = [Depends(auth), Depends(_from_the_page)] if auth is not None else [Depends(_disabled)]

    async def statuses(conn: _Connection) -> list[Any]:
        return await collect_status(conn.redis, conn.queues)

    @router.get("/ops/", response_class=HTMLResponse, include_in_schema=False)
    async def overview() -> HTMLResponse:
        try:
            conn, found = await _run(pools, timeout_s, statuses)
        except _Failure as failure:
            where, message = _where(pools), failure.message
            return _html(lambda n: overview_page([], where, n, message), failure.status_code)
        return _html(lambda n: overview_page(found, conn.where, n))

    @router.get("/ops/api/status")
    async def status_json() -> JSONResponse:
        try:
            _, found = await _run(pools, timeout_s, statuses)
        except _Failure as failure:
            return _json({"detail": failure.message}, failure.status_code)
        return _json(
            {
                "streams": [s.as_dict() for s in found],
                "actions_enabled": enabled,
                "html": overview_tables(found),
            }
        )

    async def read_dead_letters(
        name: str, group: str | None, reason: str, action_type: str, limit: int
    ) -> tuple[_Connection, DeadLetterView]:
        async def op(conn: _Connection) -> DeadLetterView:
            refs = await find_dead_letter_refs(conn.redis, conn.queues, name, group)
            where = DeadLetterFilter(reason or None, action_type or None, None, limit)
            records = await list_partitions(conn.redis, refs, where)
            total = sum([int(await conn.redis.xlen(r.dead_letter_stream)) for r in refs])
            others = await other_groups(conn.redis, refs[0]) if refs[0].group else []
            return DeadLetterView(refs, records, total, enabled, others, reason, action_type, limit)

        return await _run(pools, timeout_s, op)

    @router.get("/ops/dlq/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def dead_letters(
        name: str,
        group: Group = None,
        reason: Text = "",
        action_type: TypeText = "",
        limit: Limit = 100,
    ) -> HTMLResponse:
        try:
            conn, view = await read_dead_letters(name, group, reason, action_type, limit)
        except _Failure as failure:
            where, message = _where(pools), failure.message
            return _html(
                lambda n: dead_letters_page(None, name, where, n, message), failure.status_code
            )
        return _html(lambda n: dead_letters_page(view, name, conn.where, n))

    @router.get("/ops/api/dlq/{name}")
    async def dead_letters_json(
        name: str,
        group: Group = None,
        reason: Text = "",
        action_type: TypeText = "",
        limit: Limit = 100,
    ) -> JSONResponse:
        try:
            _, view = await read_dead_letters(name, group, reason, action_type, limit)
        except _Failure as failure:
            return _json({"detail": failure.message}, failure.status_code)
        return _json(
            {
                "dead_letter_stream": view.ref.dead_letter_stream,
                "dead_letter_streams": [r.dead_letter_stream for r in view.refs],
                "total": view.total,
                "records": [r.as_dict() for r in view.records],
            }
        )

    @router.post("/ops/api/dlq/{name}/replay", dependencies=guards)
    async def replay_route(name: str, body: DeadLetterIds) -> JSONResponse:
        async def op(conn: _Connection) -> dict[str, Any]:
            refs = await find_dead_letter_refs(conn.redis, conn.queues, name, body.group)
            ref = refs[0]
            found = await find_records(conn.redis, refs, body.ids)
            records = [r for r in found if r is not None]
            if records and ref.group is not None and not body.all_groups:
                others = await other_groups(conn.redis, ref)
                if others:
                    raise _Failure(
                        409,
                        f"nothing replayed: topic {ref.name!r} has other groups "
                        f"({', '.join(others)}) that would get the events again; "
                        'send "all_groups": true to replay to all of them',
                    )
            result = await replay_partitions(conn.redis, refs, records)
            result.missing[:0] = [i for i, r in zip(body.ids, found, strict=True) if r is None]
            return result.as_dict()

        try:
            _, result = await _run(pools, timeout_s, op)
        except _Failure as failure:
            return _json({"detail": failure.message}, failure.status_code)
        return _json(result)

    @router.post("/ops/api/dlq/{name}/purge", dependencies=guards)
    async def purge_route(name: str, body: DeadLetterIds) -> JSONResponse:
        async def op(conn: _Connection) -> dict[str, Any]:
            refs = await find_dead_letter_refs(conn.redis, conn.queues, name, body.group)
            found = await find_records(conn.redis, refs, body.ids)
            deleted = await purge_partitions(conn.redis, refs, [r for r in found if r])
            missing = [i for i, r in zip(body.ids, found, strict=True) if r is None]
            return {"deleted": deleted, "missing": missing}

        try:
            _, result = await _run(pools, timeout_s, op)
        except _Failure as failure:
            return _json({"detail": failure.message}, failure.status_code)
        return _json(result)

"""``@event``: a FastAPI endpoint publishes its result as an event once its response is sent.

::

    @app.post("/users", status_code=201)
    @event("user.created", topic="user-events", key_field="id")
    async def register(body: NewUser) -> dict[str, Any]:
        user = await create_user(body)
        return {"id": user.id, "email": user.email}

After the endpoint returns, the response goes to the client first; then (a Starlette background
task of the response) the event ``name`` is published on ``topic`` (default: the event's name)
with ``data`` = the result (made JSON-ready as FastAPI does; with ``include_result=False``:
``{key_field: value}``, or ``{}`` without ``key_field``) and ``key`` = the result's
``key_field``. This is fire-and-forget:

- an endpoint that raises (``HTTPException`` included) publishes nothing, and so does one that
  returns a ``Response`` with an error status (>= 400);
- a publish that fails (Redis down, a result JSON cannot carry...) is logged and counted in
  :data:`stats` (``stats.failed``), never raised into the request; ``stats.published`` counts
  the others. Use ``get_producer().send(...)`` where a failure must be seen.

The decorated endpoint keeps its name, docstring and parameters for FastAPI (``functools.wraps``
and a signature with one extra ``BackgroundTasks`` parameter that FastAPI fills in and hides
from the API; an endpoint that declares its own ``BackgroundTasks`` parameter is reused
instead). Called outside a request (a unit test, a plain method), the publish is scheduled on
the running event loop instead, still fire-and-forget. Sync (``def``) endpoints work too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi.encoders import jsonable_encoder
from starlette.background import BackgroundTasks
from starlette.responses import Response

from common.messaging.events import Event
from common.messaging.producer import get_producer
from common.messaging.worker import check_topic

__all__ = ["EventStats", "event", "stats"]

logger = logging.getLogger("common.messaging.event")

F = TypeVar("F", bound=Callable[..., Any])

_TASKS_PARAM = "_event_background_tasks"
_SKIP: Any = object()
_pending: set[asyncio.Task[None]] = set()  # scheduled publishes outside a request


@dataclass
class EventStats:
    """What ``@event`` endpoints published in this process, and how many publishes failed."""

    published: int = 0
    failed: int = 0
    last_error: str | None = None


stats = EventStats()
"""The process's ``@event`` counters (``stats.failed``: publishes that failed and were logged)."""


def _is_tasks_annotation(annotation: Any) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, BackgroundTasks)
    return isinstance(annotation, str) and annotation.split(".")[-1] == "BackgroundTasks"


def _data_of(result: Any) -> Any:
    """The result as JSON-ready data; ``_SKIP`` for an error response."""
    if isinstance(result, Response):
        if result.status_code >= 400:
            return _SKIP
        return orjson.loads(result.body) if result.body else None
    return jsonable_encoder(result)


def _failed(what: str, exc: BaseException) -> None:
    stats.failed += 1
    stats.last_error = f"{type(exc).__name__}: {exc}"
    logger.error("@event %s: not published (%s)", what, stats.last_error, exc_info=exc)


async def _publish(event_name: str, topic: str, data: Any, key: str | None) -> None:
    try:
        producer = get_producer()
        await producer.send_event(
            topic,
            Event(name=event_name, data=data, source=producer.settings.service_name, key=key),
        )
    except Exception as exc:
        _failed(f"{event_name!r} on {topic!r}", exc)
    else:
        stats.published += 1


def event(
    event_name: str,
    topic: str | None = None,
    key_field: str | None = None,
    include_result: bool = True,
) -> Callable[[F], F]:
    """Publish the endpoint's result as the event ``event_name`` after its response is sent
    (see the module docstring)."""
    if not isinstance(event_name, str) or not event_name or len(event_name) > 256:
        raise ValueError(f"invalid event name {event_name!r}")
    target = check_topic(topic if topic is not None else event_name)

    def prepare(result: Any) -> tuple[Any, str | None] | None:
        """``(data, key)`` to publish, or None (nothing to publish)."""
        data = _data_of(result)
        if data is _SKIP:
            return None
        key: str | None = None
        value: Any = None
        if key_field is not None:
            value = data.get(key_field) if isinstance(data, dict) else None
            if value is None:
                logger.warning("@event %r: the result has no %r field", event_name, key_field)
            else:
                key = str(value)
        if not include_result:
            data = {key_field: value} if key_field is not None and value is not None else {}
        return data, key

    def schedule(result: Any, tasks: BackgroundTasks | None) -> None:
        try:
            prepared = prepare(result)
        except Exception as exc:
            _failed(repr(event_name), exc)
            return
        if prepared is None:
            return
        data, key = prepared
        if tasks is not None:
            tasks.add_task(_publish, event_name, target, data, key)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            _failed(f"{event_name!r} (called outside a request and an event loop)", exc)
            return
        task = loop.create_task(_publish(event_name, target, data, key))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        own = next((p.name for p in params if _is_tasks_annotation(p.annotation)), None)
        if own is None:
            extra = inspect.Parameter(
                _TASKS_PARAM,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=BackgroundTasks,
            )
            at = next(
                (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD),
                len(params),
            )
            params.insert(at, extra)
        wrapped_signature = signature.replace(parameters=params)

        def tasks_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> BackgroundTasks | None:
            if own is None:
                found = kwargs.pop(_TASKS_PARAM, None)
            elif own in kwargs:
                found = kwargs[own]
            else:
                found = signature.bind_partial(*args, **kwargs).arguments.get(own)
            return found if isinstance(found, BackgroundTasks) else None

        wrapper: Any
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tasks = tasks_of(args, kwargs)
                result = await func(*args, **kwargs)
                schedule(result, tasks)
                return result

            wrapper = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                tasks = tasks_of(args, kwargs)
                result = func(*args, **kwargs)
                schedule(result, tasks)
                return result

            wrapper = sync_wrapper
        wrapper.__signature__ = wrapped_signature
        return wrapper  # type: ignore[no-any-return]

    return decorate

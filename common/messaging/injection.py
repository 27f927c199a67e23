"""How a handler's parameters are filled: the payload, the context, the event, and ``Depends``.

The first parameter receives the payload (the event's ``data``, validated by the input schema
when there is one; the :class:`Event` itself for handlers that ask for it). Any parameter
annotated with :class:`ActionContext` (or named ``context``) receives the context; one annotated
with :class:`Event` (or named ``event``, past the first) receives the event. Parameters whose
default is ``Depends(...)`` are resolved by `fast-depends`_ (FastAPI's dependency injection):
a generator dependency's teardown runs once per message, also when the handler fails.

A handler that uses no ``Depends`` is called directly: injection costs nothing there.

.. _fast-depends: https://lancetnik.github.io/FastDepends/
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fast_depends import Depends, inject
from fast_depends.dependencies import Dependant

from common.messaging.context import ActionContext
from common.messaging.events import Event

__all__ = ["Call", "Depends", "build_call"]

Call = Callable[[Any, ActionContext, Event], Awaitable[Any]]
"""A handler made callable as ``call(payload, context, event)``."""


def _is_context(param: inspect.Parameter) -> bool:
    annotation = param.annotation
    if isinstance(annotation, type) and issubclass(annotation, ActionContext):
        return True
    if isinstance(annotation, str) and annotation.split(".")[-1] in (
        "ActionContext",
        "MessageContext",
    ):
        return True
    return param.name == "context" and annotation is inspect.Parameter.empty


def _is_event(param: inspect.Parameter) -> bool:
    annotation = param.annotation
    if annotation is Event or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "Event"
    ):
        return True
    return param.name == "event" and annotation is inspect.Parameter.empty


def build_call(func: Callable[..., Awaitable[Any]]) -> Call:
    """``func`` as ``call(payload, context, event)`` (see the module docstring)."""
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"{getattr(func, '__qualname__', func)!r} must be an 'async def' function")
    params = list(inspect.signature(func).parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    payload_param = positional[0] if positional else None
    context_names = [p.name for p in params if p is not payload_param and _is_context(p)]
    event_names = [p.name for p in params if p is not payload_param and _is_event(p)]
    uses_depends = any(isinstance(p.default, Dependant) for p in params)
    target: Callable[..., Awaitable[Any]] = inject(func) if uses_depends else func

    if payload_param is None:

        async def call_without_payload(payload: Any, context: ActionContext, event: Event) -> Any:
            kwargs = dict.fromkeys(context_names, context) | dict.fromkeys(event_names, event)
            return await target(**kwargs)

        return call_without_payload
    if not context_names and not event_names:

        async def call_payload(payload: Any, context: ActionContext, event: Event) -> Any:
            return await target(payload)

        return call_payload

    async def call(payload: Any, context: ActionContext, event: Event) -> Any:
        kwargs = dict.fromkeys(context_names, context) | dict.fromkeys(event_names, event)
        return await target(payload, **kwargs)

    return call

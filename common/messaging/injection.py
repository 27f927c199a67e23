"""How a handler's parameters are filled: the payload, the context, the event, and injection.

The first parameter receives the payload (the event's ``data``, validated by the input schema
when there is one; the :class:`Event` itself for handlers that ask for it). Any parameter
annotated with :class:`ActionContext` (or named ``context``) receives the context; one annotated
with :class:`Event` (or named ``event``, past the first) receives the event. The others are
injected, in one of two ways:

- ``Depends(...)`` defaults are resolved by `fast-depends`_ (FastAPI's dependency injection),
  once per message: a generator dependency's teardown runs once per message, also when the
  handler fails (``Depends(dep, use_cache=False)``: a new one at each use in that message;
  ``Depends(singleton(dep))``: one per process).
- **Providers**, registered by parameter name or by type, fill parameters that have no
  ``Depends`` default (so the seeds' bare ``db`` parameter works)::

      provide("db", open_session)                         # scoped: one per message
      provide(EmailService, make_email_service, scope="singleton")

      @injectable(scope=Scope.SINGLETON)                  # a class providing its own type
      class TemplateCache: ...

  A parameter is looked up by its name first, then by its annotation: the type itself, or the
  one registered subclass of it (``@injectable class SendgridEmailService(EmailService)``
  serves ``email_service: EmailService``). Scopes: ``singleton`` (made once per process),
  ``scoped`` (once per message; a generator's teardown runs when the message is done, also
  when the handler fails; the default) and ``transient`` (a new one at each use). A factory's
  own parameters are injected the same way. A parameter with no provider keeps its default; a
  parameter without a default and with no provider fails the message (the error names it).
  ``@bind`` (seed 000) marks a handler whose parameters are injected; every handler's are.

Injection costs nothing for handlers that use none: a handler with no ``Depends`` and no
parameter besides the payload, context and event is called directly, as is one whose extra
parameters (with defaults) have no provider.

.. _fast-depends: https://lancetnik.github.io/FastDepends/
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fast_depends import Depends
from fast_depends.dependencies import Dependant

from common.errors import ConfigurationError
from common.messaging import providers as _providers
from common.messaging.context import ActionContext
from common.messaging.depends import plan_depends
from common.messaging.events import Event
from common.messaging.providers import (
    Provider,
    Scope,
    _MessageScope,
    _Param,
    _params,
    bind,
    injectable,
    provide,
    provider_for,
    reset_providers,
    singleton,
)

__all__ = [
    "Call",
    "Depends",
    "Provider",
    "Scope",
    "bind",
    "build_call",
    "injectable",
    "provide",
    "provider_for",
    "reset_providers",
    "singleton",
]

Call = Callable[[Any, ActionContext, Event], Awaitable[Any]]
"""A handler made callable as ``call(payload, context, event)``."""

_EMPTY = inspect.Parameter.empty


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


class _Plan:
    """Which of a handler's parameters get a provider (re-planned when providers change)."""

    __slots__ = ("candidates", "providers", "version")

    def __init__(self, candidates: list[_Param]) -> None:
        self.candidates = candidates
        self.version = -1
        self.providers: list[tuple[str, Provider]] = []

    def current(self) -> list[tuple[str, Provider]]:
        if self.version != _providers._version:
            providers = []
            for param in self.candidates:
                found = provider_for(param.name, param.annotation)
                if found is not None:
                    providers.append((param.name, found))
                elif param.required:
                    raise ConfigurationError(
                        f"no provider for parameter {param.name!r}: register one with "
                        f"provide({param.name!r}, factory) or provide(<its type>, factory)"
                    )
            self.providers, self.version = providers, _providers._version
        return self.providers


def build_call(func: Callable[..., Awaitable[Any]]) -> Call:
    """``func`` as ``call(payload, context, event)`` (see the module docstring)."""
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"{getattr(func, '__qualname__', func)!r} must be an 'async def' function")
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    payload_param = positional[0] if positional else None
    context_names = [p.name for p in params if p is not payload_param and _is_context(p)]
    event_names = [p.name for p in params if p is not payload_param and _is_event(p)]
    uses_depends = any(isinstance(p.default, Dependant) for p in params)
    taken = {*context_names, *event_names}
    if payload_param is not None:
        taken.add(payload_param.name)
    candidates = [
        p
        for p in _params(func)
        if p.name not in taken and not isinstance(signature.parameters[p.name].default, Dependant)
    ]
    target: Callable[..., Awaitable[Any]] = plan_depends(func) if uses_depends else func
    if candidates:
        plan = _Plan(candidates)
        return _provided_call(target, payload_param is not None, context_names, event_names, plan)

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


def _provided_call(
    target: Callable[..., Awaitable[Any]],
    takes_payload: bool,
    context_names: list[str],
    event_names: list[str],
    plan: _Plan,
) -> Call:
    """The call of a handler with parameters that providers may fill."""

    async def call(payload: Any, context: ActionContext, event: Event) -> Any:
        kwargs = dict.fromkeys(context_names, context) | dict.fromkeys(event_names, event)
        args = (payload,) if takes_payload else ()
        providers = plan.current()
        if not providers:
            return await target(*args, **kwargs)
        scope = _MessageScope()
        try:
            for name, provider in providers:
                kwargs[name] = await provider.get(scope)
            result = await target(*args, **kwargs)
        except BaseException as exc:
            await scope.close(exc)
            raise
        await scope.close(None)
        return result

    return call

"""Providers: what fills a handler's parameters by name or by type, and how long it lives.

Registered with :func:`provide` (or :func:`injectable` on a class providing its own type); see
:mod:`common.messaging.injection` for how a handler's parameters are matched. Scopes:
``singleton`` (made once per process), ``scoped`` (once per message; a generator's teardown runs
when the message is done, also when the handler fails; the default) and ``transient`` (a new one
at each use). A factory's own parameters are injected the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, get_type_hints

from common.errors import ConfigurationError

__all__ = [
    "Provider",
    "Scope",
    "bind",
    "injectable",
    "provide",
    "provider_for",
    "reset_providers",
    "singleton",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_EMPTY = inspect.Parameter.empty


class Scope(StrEnum):
    """How long a provided object lives."""

    SINGLETON = "singleton"  # one per process
    SCOPED = "scoped"  # one per message (teardown when it is done)
    TRANSIENT = "transient"  # a new one at each use


# -- providers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    annotation: Any  # a type, a string (unresolvable forward reference) or _EMPTY
    required: bool  # no default


@dataclass(eq=False)
class Provider:
    """How to make what one name or type stands for (see :func:`provide`)."""

    key: str | type
    factory: Callable[..., Any]
    scope: Scope
    params: tuple[_Param, ...] = field(init=False)
    _kind: str = field(init=False)  # "agen", "gen" or "call"
    _value: Any = field(init=False, default=None)
    _made: bool = field(init=False, default=False)
    _lock: asyncio.Lock | None = field(init=False, default=None)
    _lock_loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.params = tuple(_params(self.factory))
        self._kind = (
            "agen"
            if inspect.isasyncgenfunction(self.factory)
            else "gen"
            if inspect.isgeneratorfunction(self.factory)
            else "call"
        )
        if self.scope is Scope.SINGLETON and _is_generator(self.factory):
            raise ConfigurationError(
                f"{self.key!r}: a singleton cannot be a generator (no message ends it); "
                "make it scoped, or return the object"
            )

    async def get(self, scope: _MessageScope, resolving: tuple[Provider, ...] = ()) -> Any:
        """The object for one use in the message whose scope is ``scope``."""
        if self in resolving:
            chain = " -> ".join(repr(p.key) for p in (*resolving, self))
            raise ConfigurationError(f"circular providers: {chain}")
        if self.scope is Scope.SINGLETON:
            if self._made:
                return self._value
            return await self._make_singleton(scope, resolving)
        if self.scope is Scope.SCOPED:
            if self in scope.made:
                return scope.made[self]
            value = await self._make(scope, resolving)
            scope.made[self] = value
            return value
        return await self._make(scope, resolving)

    async def _make_singleton(self, scope: _MessageScope, resolving: tuple[Provider, ...]) -> Any:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # two first uses at once make one object
            if not self._made:
                self._value = await self._make(scope, resolving)
                self._made = True
        return self._value

    async def _make(self, scope: _MessageScope, resolving: tuple[Provider, ...]) -> Any:
        kwargs: dict[str, Any] = {}
        chain = (*resolving, self)
        for param in self.params:
            found = provider_for(param.name, param.annotation)
            if found is None:
                if param.required:
                    raise ConfigurationError(
                        f"provider of {self.key!r}: no provider for its parameter {param.name!r}"
                    )
                continue
            if self.scope is Scope.SINGLETON and found.scope is not Scope.SINGLETON:
                raise ConfigurationError(
                    f"singleton {self.key!r} cannot depend on {found.scope} {found.key!r}"
                )
            kwargs[param.name] = await found.get(scope, chain)
        factory = self.factory
        if self._kind == "agen":
            cm = contextlib.asynccontextmanager(factory)(**kwargs)
            return await scope.stack().enter_async_context(cm)
        if self._kind == "gen":
            return scope.stack().enter_context(contextlib.contextmanager(factory)(**kwargs))
        value = factory(**kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value


class _MessageScope:
    """What one message's injection made: scoped objects, and the teardowns to run."""

    __slots__ = ("_stack", "made")

    def __init__(self) -> None:
        self.made: dict[Provider, Any] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    def stack(self) -> contextlib.AsyncExitStack:
        if self._stack is None:
            self._stack = contextlib.AsyncExitStack()
        return self._stack

    async def close(self, exc: BaseException | None) -> None:
        """Run the teardowns (generators see the handler's exception, if any)."""
        if self._stack is not None:
            stack, self._stack = self._stack, None
            if exc is None:
                await stack.aclose()
            else:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)


_by_name: dict[str, Provider] = {}
_by_type: dict[type, Provider] = {}
_version = 0  # bumped at each change: handlers re-plan their injection


def provide(
    key: str | type[T],
    factory: Callable[..., Any] | None = None,
    *,
    scope: Scope | str = Scope.SCOPED,
) -> Provider:
    """Register how to make what parameter ``key`` (a parameter name) or parameters annotated
    ``key`` (a type) receive: ``factory`` (a class, function, coroutine function or
    (async) generator function whose code after ``yield`` is the teardown; default: the type
    ``key`` itself), in ``scope`` (``singleton``, ``scoped`` or ``transient``). Registering a
    key again replaces its provider."""
    global _version
    if factory is None:
        if not isinstance(key, type):
            raise TypeError(f"provide({key!r}) needs a factory")
        factory = key
    if not isinstance(key, (str, type)):
        raise TypeError(f"a provider's key is a parameter name or a type, not {key!r}")
    provider = Provider(key, factory, Scope(scope))
    if isinstance(key, str):
        _by_name[key] = provider
    else:
        _by_type[key] = provider
    _version += 1
    return provider


def injectable(cls: type[T] | None = None, *, scope: Scope | str = Scope.SCOPED) -> Any:
    """Class decorator (seed 000's ``@injectable(scope=Scope.SINGLETON)``): the class provides
    its own type (and, when it is the only one, any base class's: see the module docstring).
    Its ``__init__`` parameters are injected too."""

    def register(cls: type[T]) -> type[T]:
        provide(cls, cls, scope=scope)
        return cls

    return register if cls is None else register(cls)


def bind(func: F) -> F:
    """Seed 000's ``@bind``: the handler's parameters are injected (as every handler's are
    here); returns ``func`` unchanged."""
    return func


def singleton(dependency: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A ``Depends`` dependency made once per process: ``Depends(singleton(make_client))``.
    (Generators cannot be singletons: no message ends them.)"""
    if _is_generator(dependency):
        raise ConfigurationError("a singleton dependency cannot be a generator")
    made: list[Any] = []
    lock: list[asyncio.Lock] = []

    @functools.wraps(dependency)
    async def once(*args: Any, **kwargs: Any) -> Any:
        if made:
            return made[0]
        if not lock:
            lock.append(asyncio.Lock())
        async with lock[0]:
            if not made:
                value = dependency(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                made.append(value)
        return made[0]

    return once


def provider_for(name: str, annotation: Any = _EMPTY) -> Provider | None:
    """The provider of a parameter called ``name`` annotated ``annotation`` (None: none)."""
    found = _by_name.get(name)
    if found is not None or annotation is _EMPTY or annotation is Any:
        return found
    if isinstance(annotation, type):
        found = _by_type.get(annotation)
        if found is not None:
            return found
        subclasses = [p for t, p in _by_type.items() if _is_subclass(t, annotation)]
        if len(subclasses) > 1:
            keys = ", ".join(repr(p.key) for p in subclasses)
            raise ConfigurationError(f"{name}: {annotation!r} is provided by several: {keys}")
        return subclasses[0] if subclasses else None
    if isinstance(annotation, str):  # an unresolvable forward reference: match the name
        short = annotation.rsplit(".", 1)[-1]
        named = [p for t, p in _by_type.items() if t.__name__ == short]
        return named[0] if len(named) == 1 else None
    return None


def reset_providers() -> None:
    """Forget every provider (and so every singleton): for tests."""
    global _version
    _by_name.clear()
    _by_type.clear()
    _version += 1


def _is_subclass(cls: type, of: type) -> bool:
    try:
        return issubclass(cls, of)
    except TypeError:  # e.g. a protocol that is not runtime-checkable
        return False


def _is_generator(func: Callable[..., Any]) -> bool:
    return inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    target: Any = getattr(func, "__func__", func)
    if isinstance(target, type):
        target = next(vars(base)["__init__"] for base in target.__mro__ if "__init__" in vars(base))
    try:
        return get_type_hints(target)
    except Exception:  # a forward reference to a local class: resolve what can be
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(target, "__globals__", {})
    for name, annotation in getattr(target, "__annotations__", {}).items():
        if isinstance(annotation, str):
            with contextlib.suppress(Exception):
                annotation = eval(annotation, namespace)  # as get_type_hints does
        hints[name] = annotation
    return hints


def _params(func: Callable[..., Any]) -> list[_Param]:
    """``func``'s injectable parameters (keyword-capable, not ``*args``/``**kwargs``)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    hints = _hints(func)
    return [
        _Param(p.name, hints.get(p.name, p.annotation), p.default is _EMPTY)
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


# -- handlers ----------------------------------------------------------------------------------

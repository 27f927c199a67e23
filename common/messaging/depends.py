"""``Depends(...)`` resolved without fast-depends' per-call machinery, where that is safe.

fast-depends (FastAPI's dependency injection, extracted) resolves a handler's dependencies on
every call through a general machine: argument casting with pydantic, and a worker thread for
every plain ``def`` dependency (about 100-200 µs per message). For the common shapes this module
plans the resolution once, when the handler is registered, and then per message only calls what
the plan says:

- an ``async def`` dependency is awaited; a plain ``def`` one is called inline, on the event
  loop (keep it quick: make a dependency that does I/O ``async def``);
- a generator (sync or async) dependency is entered as a context manager and closed when the
  message is done, with the handler's exception thrown into it if the handler failed: its
  teardown runs once per message, also on failure;
- a dependency's own parameters may be ``Depends(...)`` too (resolved the same way) or have
  plain defaults; within one message a dependency is made once unless it is declared with
  ``use_cache=False``.

Anything else (a dependency parameter without a default and without ``Depends``, or an active
``dependency_provider.override``) is left to fast-depends, unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fast_depends import dependency_provider, inject
from fast_depends.dependencies import Dependant

__all__ = ["DependsPlan", "plan_depends"]


@dataclass(frozen=True, slots=True)
class _Node:
    """How to make one dependency: its callable, its kind and its own dependencies."""

    func: Callable[..., Any]
    kind: str  # "async", "sync", "agen", "gen"
    use_cache: bool
    children: tuple[tuple[str, _Node], ...]


def _node(dependant: Dependant, seen: frozenset[int]) -> _Node | None:
    func = dependant.dependency
    if id(func) in seen:
        return None  # a cycle: let fast-depends report it
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    children: list[tuple[str, _Node]] = []
    for param in params:
        if isinstance(param.default, Dependant):
            child = _node(param.default, seen | {id(func)})
            if child is None:
                return None
            children.append((param.name, child))
        elif param.default is inspect.Parameter.empty or param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            return None  # fast-depends would look for it elsewhere: not a simple shape
    if inspect.isasyncgenfunction(func):
        kind = "agen"
    elif inspect.isgeneratorfunction(func):
        kind = "gen"
    elif inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004
    ):
        kind = "async"
    else:
        kind = "sync"
    return _Node(func, kind, dependant.use_cache, tuple(children))


async def _make(
    node: _Node, stack: contextlib.AsyncExitStack, cache: dict[Callable[..., Any], Any]
) -> Any:
    if node.use_cache and node.func in cache:
        return cache[node.func]
    kwargs = {name: await _make(child, stack, cache) for name, child in node.children}
    if node.kind == "async":
        value = await node.func(**kwargs)
    elif node.kind == "sync":
        value = node.func(**kwargs)
    elif node.kind == "agen":
        value = await stack.enter_async_context(contextlib.asynccontextmanager(node.func)(**kwargs))
    else:
        value = stack.enter_context(contextlib.contextmanager(node.func)(**kwargs))
    if node.use_cache:
        cache[node.func] = value
    return value


class DependsPlan:
    """A handler's ``Depends`` parameters, planned once; :meth:`call` resolves them and calls
    the handler (falling back to fast-depends while an override is active)."""

    def __init__(self, func: Callable[..., Awaitable[Any]], nodes: list[tuple[str, _Node]]):
        self.func = func
        self.nodes = nodes
        self.needs_exit = any(_has_generator(node) for _, node in nodes)
        self._fallback: Callable[..., Awaitable[Any]] | None = None

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        if dependency_provider.overrides:  # tests overriding a dependency: the general path
            if self._fallback is None:
                self._fallback = inject(self.func)
            return await self._fallback(*args, **kwargs)
        cache: dict[Callable[..., Any], Any] = {}
        if not self.needs_exit:  # no teardown to run: no exit stack to set up
            for name, node in self.nodes:
                kwargs[name] = await _make(node, _NO_EXIT, cache)
            return await self.func(*args, **kwargs)
        stack = contextlib.AsyncExitStack()
        try:
            for name, node in self.nodes:
                kwargs[name] = await _make(node, stack, cache)
            result = await self.func(*args, **kwargs)
        except BaseException as exc:
            # The teardowns see the failure; it is raised whatever they do with it (a
            # dependency that swallows it must not turn a failed message into a success).
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await stack.aclose()
        return result


def _has_generator(node: _Node) -> bool:
    return node.kind in ("agen", "gen") or any(_has_generator(c) for _, c in node.children)


_NO_EXIT: contextlib.AsyncExitStack[Any] = contextlib.AsyncExitStack()
"""Passed where no dependency is a generator: never entered, nothing is pushed on it."""


def plan_depends(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``func`` with its ``Depends`` parameters resolved per call: by a plan made now where the
    shapes allow (see the module docstring), else by fast-depends' ``inject``."""
    nodes: list[tuple[str, _Node]] = []
    for param in inspect.signature(func).parameters.values():
        if isinstance(param.default, Dependant):
            node = _node(param.default, frozenset())
            if node is None or param.kind is inspect.Parameter.POSITIONAL_ONLY:
                return inject(func)
            nodes.append((param.name, node))
    if not nodes:
        return func
    return DependsPlan(func, nodes).call

"""The registry of declarative targets, and discovery: ``discover_workers("package")``.

Every ``@worker`` function, ``Worker`` subclass, ``@consumer`` class, ``@message_handler`` and
``job_listener`` registers a :class:`Subscription` here under a unique name when its module is
imported. :func:`discover_workers` imports a module or a whole package (recursively) and returns
what those modules registered; :func:`registered` lists everything.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from common.errors import ConfigurationError
from common.messaging.subscription import Subscription

__all__ = ["discover_workers", "get", "register", "registered", "unregister"]

_registry: dict[str, Subscription] = {}


def register(subscription: Subscription) -> Subscription:
    """Add ``subscription``; a name registered again (a module re-imported) replaces it."""
    _registry[subscription.name] = subscription
    return subscription


def unregister(name: str) -> None:
    _registry.pop(name, None)


def registered() -> list[Subscription]:
    """Every registered target, in registration order."""
    return list(_registry.values())


def get(name: str) -> Subscription:
    """The target registered as ``name`` (its qualified name, or its short name if unique)."""
    found = _registry.get(name)
    if found is not None:
        return found
    short = [s for s in _registry.values() if s.name.rsplit(".", 1)[-1] == name]
    if len(short) == 1:
        return short[0]
    if short:
        names = ", ".join(s.name for s in short)
        raise ConfigurationError(f"{name!r} is ambiguous: {names}")
    raise ConfigurationError(f"no declarative worker named {name!r} is registered")


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {name!r}: {exc}") from exc


def discover_workers(package: str) -> list[Subscription]:
    """Import ``package`` (a module, or a package and all its submodules) and return the
    targets its modules registered."""
    root = _import(package)
    names = {root.__name__}
    path = getattr(root, "__path__", None)
    if path is not None:
        for info in pkgutil.walk_packages(path, prefix=f"{root.__name__}."):
            names.add(_import(info.name).__name__)
    return [
        s
        for s in _registry.values()
        if s.module in names or any(s.module.startswith(n + ".") for n in names)
    ]

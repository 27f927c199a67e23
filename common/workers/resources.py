"""``Resources``: the objects that all workers of a pool share (a ledger, a DB pool, a client).

A worker class creates them in its ``on_startup`` hook, which runs once per
:meth:`WorkerPool.start` (once per process under ``python -m common run``), and releases them
in ``on_shutdown``; every worker of the pool reaches the same object as ``self.resources``.
Like FastAPI's ``app.state``, it is a namespace: set attributes, read them back::

    class InventoryWorker(BaseWorker):
        @classmethod
        async def on_startup(cls, resources: Resources) -> None:
            resources.setdefault("ledger", StockLedger)

        async def _handle_inventory_check(self, action: DomainAction) -> dict[str, Any]:
            return {"available": self.resources.ledger.available(action.data["sku"])}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Resources"]


class Resources:
    """A namespace of shared objects; ``Resources(ledger=StockLedger())`` pre-fills it."""

    def __init__(self, objects: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self.__dict__.update(objects or {})
        self.__dict__.update(more)

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: say where it should have come from.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"no shared resource {name!r} (have: {', '.join(self) or 'none'}); create it in "
            "the worker class's on_startup hook, or pass it to WorkerPool(resources=...)"
        )

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__dict__))

    def __len__(self) -> int:
        return len(self.__dict__)

    def __repr__(self) -> str:
        return f"Resources({', '.join(self)})"

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def setdefault(self, name: str, factory: Callable[[], Any]) -> Any:
        """The resource ``name``; created with ``factory()`` (and kept) if it is missing."""
        if name not in self.__dict__:
            self.__dict__[name] = factory()
        return self.__dict__[name]

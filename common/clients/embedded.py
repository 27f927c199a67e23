"""In-process wake-ups for the embedded ``memory://`` server.

fakeredis runs every command synchronously, in the thread of the client that sends it, under
the server's lock. Its own blocking commands differ between versions (``XREADGROUP ... BLOCK``
answered at once before 2.41), wake every blocked client of the database on any write, and do
not survive being cancelled. The embedded mode therefore does not block in the server at all:
a waiter registers a :class:`KeyWatch` on the keys it reads, reads without blocking, and if it
found nothing waits (as a plain, cancellable asyncio wait) until a write touches one of those
keys. The server reports writes per key: its databases' ``notify_watch`` hook (the one WATCH
uses, called for every modified key, by plain commands, pipelines and transactions alike) is
wrapped to notify the server's :class:`ChangeSignal`.

Servers are shared process-wide, so writers and waiters may run in different threads and event
loops: a waiter is woken directly when the write runs in its own loop, else through
``call_soon_threadsafe``. A watch is registered before its owner looks at the keys, so a write
that lands between the look and the wait is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from common.errors import ConfigurationError

__all__ = ["ChangeSignal", "KeyWatch", "change_signal", "server_signal"]

_registry_lock = threading.Lock()
_signals: weakref.WeakKeyDictionary[Any, ChangeSignal] = weakref.WeakKeyDictionary()


class KeyWatch:
    """One waiter's interest in some keys; use as a context manager around "look, then wait"."""

    __slots__ = ("_event", "_loop", "_signal", "_woken", "exclusive", "keys")

    def __init__(self, signal: ChangeSignal, keys: tuple[bytes, ...], exclusive: bool) -> None:
        self._signal = signal
        self.keys = keys
        self.exclusive = exclusive
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._woken = False  # set by the writer at once; the event follows in the loop

    @property
    def changed(self) -> bool:
        """True once a watched key was written since the watch was registered."""
        return self._woken

    def _wake(self) -> None:
        """Called by the writer, in any thread, with the server lock held: never block here."""
        loop = self._loop
        try:
            if asyncio._get_running_loop() is loop:
                self._event.set()
            else:
                loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the waiter's loop is closed: nobody is left to wake
            self._signal._remove(self)

    async def wait(self, timeout: float, interrupt: asyncio.Event | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a write to a watched key; True if one came.

        Returns False at once when ``interrupt`` is (or becomes) set, e.g. a stop request.
        """
        if self._woken:
            return True
        if interrupt is not None and interrupt.is_set():
            return False
        if interrupt is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            return self._woken
        changed = asyncio.ensure_future(self._event.wait())
        interrupted = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait(
                (changed, interrupted), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()
            interrupted.cancel()
        return self._woken and not interrupt.is_set()

    def __enter__(self) -> KeyWatch:
        self._signal._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._signal._remove(self)


class ChangeSignal:
    """Who waits for which key of one embedded server, and the wake-up when a key is written.

    A write wakes every shared watch of the key, and one exclusive watch not woken yet (the
    longest waiting): consumers of one group take turns, as Redis serves blocked XREADGROUPs,
    instead of all rushing to read the one new entry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[bytes, set[KeyWatch]] = {}
        self._exclusive: dict[bytes, dict[KeyWatch, None]] = {}  # in order of registration

    def watch(self, *keys: str | bytes, exclusive: bool = False) -> KeyWatch:
        """A watch on ``keys`` for the running loop; it is registered on ``__enter__``."""
        encoded = tuple(k.encode() if isinstance(k, str) else k for k in keys)
        return KeyWatch(self, encoded, exclusive)

    @property
    def watching(self) -> int:
        """How many watches are registered (for tests and diagnostics)."""
        with self._lock:
            shared = {w for watches in self._shared.values() for w in watches}
            return len(shared) + len({w for ws in self._exclusive.values() for w in ws})

    def notify(self, key: bytes) -> None:
        """``key`` was written: wake its watchers. Runs under the server lock, in any thread."""
        if key not in self._shared and key not in self._exclusive:  # decided without the lock
            return
        woken = []
        with self._lock:
            for watch in self._shared.get(key, ()):
                if not watch._woken:
                    watch._woken = True
                    woken.append(watch)
            for watch in self._exclusive.get(key, ()):
                if not watch._woken:
                    watch._woken = True
                    woken.append(watch)
                    break
        for watch in woken:
            watch._wake()

    def _add(self, watch: KeyWatch) -> None:
        with self._lock:
            for key in watch.keys:
                if watch.exclusive:
                    self._exclusive.setdefault(key, {})[watch] = None
                else:
                    self._shared.setdefault(key, set()).add(watch)

    def _remove(self, watch: KeyWatch) -> None:
        with self._lock:
            for key in watch.keys:
                if watch.exclusive:
                    exclusive = self._exclusive.get(key)
                    if exclusive is not None:
                        exclusive.pop(watch, None)
                        if not exclusive:
                            del self._exclusive[key]
                else:
                    shared = self._shared.get(key)
                    if shared is not None:
                        shared.discard(watch)
                        if not shared:
                            del self._shared[key]


def server_signal(server: Any) -> ChangeSignal:
    """The :class:`ChangeSignal` of a fakeredis ``FakeServer`` (hooked into it on first use)."""
    with _registry_lock:
        signal = _signals.get(server)
        if signal is None:
            _hook_server(server, signal := ChangeSignal())
            _signals[server] = signal
        return signal


def change_signal(redis: Any) -> ChangeSignal:
    """The :class:`ChangeSignal` of the embedded server a fakeredis client talks to."""
    server = redis.connection_pool.connection_kwargs.get("server")
    if server is None:
        raise ConfigurationError(f"{type(redis).__name__} is not a client of an embedded server")
    return server_signal(server)


def _hook_server(server: Any, signal: ChangeSignal) -> None:
    dbs = getattr(server, "dbs", None)
    if dbs is None or not hasattr(dbs, "default_factory"):
        raise ConfigurationError("this fakeredis version is not supported by memory://")
    make_db: Callable[[], Any] = dbs.default_factory

    def make_hooked_db() -> Any:
        db = make_db()
        _hook_db(db, signal)
        return db

    dbs.default_factory = make_hooked_db
    for db in list(dbs.values()):
        _hook_db(db, signal)


def _hook_db(db: Any, signal: ChangeSignal) -> None:
    notify_watch: Callable[[bytes], None] | None = getattr(db, "notify_watch", None)
    if notify_watch is None:
        raise ConfigurationError("this fakeredis version is not supported by memory://")

    def notify_watch_and_signal(key: bytes) -> None:
        notify_watch(key)
        signal.notify(key)

    db.notify_watch = notify_watch_and_signal

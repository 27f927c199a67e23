"""A minimal HTTP server of ``GET /metrics`` on the event loop (for ``run --metrics-port``).

A worker process run by ``python -m common run`` has no web framework to mount
:func:`~common.ops.health.ops_router` in; this answers Prometheus's scrapes on the same loop as
the workers (or the supervisor), one short-lived connection each: ``GET /metrics`` gives the
text exposition format, anything else 404 (405 for another method).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from common.errors import ConfigurationError

__all__ = ["MetricsServer"]

logger = logging.getLogger(__name__)

_READ_TIMEOUT_S = 5.0
_MAX_HEADER_LINES = 100


class MetricsServer:
    """Serves ``render()`` at ``GET /metrics`` on ``host``:``port`` (0: a free port, then
    :attr:`port` tells which) while inside ``async with``."""

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        content_type: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.render = render
        self.content_type = content_type
        self.host = host
        self.requested_port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port listened on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self) -> None:
        """Listen; :class:`ConfigurationError` (one line) if the address cannot be had."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigurationError(
                f"cannot serve metrics on {self.host}:{self.requested_port}: {why}"
            ) from None

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                request = await reader.readline()
                for _ in range(_MAX_HEADER_LINES):  # the headers: not needed
                    if (await reader.readline()).strip() == b"":
                        break
            status, body, content_type = await self._answer(request)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a client that went away or never sent a request
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, request: bytes) -> tuple[str, bytes, str]:
        parts = request.decode("latin-1").split()
        if len(parts) < 2:
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, path = parts[0], parts[1].split("?", 1)[0]
        if path != "/metrics":
            return "404 Not Found", b"not found: GET /metrics\n", "text/plain"
        if method != "GET":
            return "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        try:
            return "200 OK", await self.render(), self.content_type
        except Exception:
            logger.exception("rendering the metrics failed")
            return "500 Internal Server Error", b"rendering the metrics failed\n", "text/plain"

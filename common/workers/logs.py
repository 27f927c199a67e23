"""Log lines that always say which service and consumer they come from."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ContextLogger"]


class ContextLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes messages with ``[service consumer]`` and adds both as record attributes
    (``record.service``, ``record.consumer``) for structured log handlers."""

    def __init__(self, logger: logging.Logger, service: str, consumer: str) -> None:
        super().__init__(logger, {"service": service, "consumer": consumer})
        self._prefix = f"[{service} {consumer}] "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return self._prefix + str(msg), kwargs

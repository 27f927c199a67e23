"""Log lines that always say which service and consumer they come from (and, while a handler
runs with the delivery log context on, which trace: see :mod:`common.observability.logs`)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from common.observability.logs import current_trace_id

__all__ = ["ContextLogger", "RepeatedFailures"]


class ContextLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes messages with ``[service consumer]`` and adds both as record attributes
    (``record.service``, ``record.consumer``) for structured log handlers, and
    ``record.trace_id`` when the line is written while a handler runs."""

    def __init__(self, logger: logging.Logger, service: str, consumer: str) -> None:
        super().__init__(logger, {"service": service, "consumer": consumer})
        self._prefix = f"[{service} {consumer}] "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        trace_id = current_trace_id()
        if trace_id is not None:
            extra["trace_id"] = trace_id
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return self._prefix + str(msg), kwargs


class RepeatedFailures:
    """The log of a periodic task's failures: the first one as a warning, its repeats at
    debug level, and the recovery once, so that an outage or a failover of Redis costs a few
    lines, not one per pass (the tasks back off or keep their period meanwhile)."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter, what: str) -> None:  # type: ignore[type-arg]
        self.log = log
        self.what = what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        log = self.log.warning if self.failures == 1 else self.log.debug
        log("%s failed: %s", self.what, exc)

    def ok(self) -> None:
        if self.failures:
            self.log.info("%s works again (after %d failed attempts)", self.what, self.failures)
            self.failures = 0

"""What the declarative targets are, described for people and scripts (``common list``).

:func:`describe` turns a :class:`~common.messaging.subscription.Subscription` into plain data:
its name and kind, topics read and published, group, concurrency, consumers, retries, and per
handler its event, schemas and dead-letter topic. :func:`find_targets` imports a package (or
lists what is registered already).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from common.config import CommonAppSettings
from common.errors import ConfigurationError
from common.messaging.handler import Handler
from common.messaging.registry import discover_workers, registered
from common.messaging.subscription import Subscription
from common.ops.errors import OpsError

__all__ = ["HandlerInfo", "TargetInfo", "describe", "find_targets", "handlers_of"]


@dataclass(slots=True)
class HandlerInfo:
    name: str
    event: str | None  # the event name it handles (None: every event of its topics)
    input_schema: str | None
    output_schema: str | None
    output_topic: str | None
    dlq_topic: str | None
    max_retries: int


@dataclass(slots=True)
class TargetInfo:
    name: str
    kind: str  # worker | consumer | message_handler | listener
    module: str
    topics: list[str]
    output_topics: list[str]
    group: str
    concurrency: int
    consumers: int
    max_retries: int  # the most any of its handlers tries
    handlers: list[HandlerInfo] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _max_retries(handler: Handler, sub: Subscription, settings: CommonAppSettings) -> int:
    if handler.policy is not None:
        return handler.policy.max_retries
    if "max_retries" in handler.retry:
        return int(handler.retry["max_retries"])
    if sub.policy is not None:
        return sub.policy.max_retries
    return settings.max_retries


def _schema_name(schema: type | None) -> str | None:
    return None if schema is None else f"{schema.__module__}.{schema.__qualname__}"


def handlers_of(sub: Subscription) -> list[tuple[str | None, Handler]]:
    """``(event name or None, handler)`` for each of the subscription's handlers."""
    if sub.handler is not None:
        return [(None, sub.handler)]
    return list(sub.by_event.items())


def describe(sub: Subscription, settings: CommonAppSettings) -> TargetInfo:
    """``sub`` as plain data (the group as it runs with ``settings``' service name)."""
    handlers = [
        HandlerInfo(
            name=handler.name,
            event=event,
            input_schema=_schema_name(handler.input_schema),
            output_schema=_schema_name(handler.output_schema),
            output_topic=handler.output_topic,
            dlq_topic=handler.dlq_topic,
            max_retries=_max_retries(handler, sub, settings),
        )
        for event, handler in handlers_of(sub)
    ]
    outputs = sorted({h.output_topic for h in handlers if h.output_topic is not None})
    return TargetInfo(
        name=sub.name,
        kind=sub.kind,
        module=sub.module,
        topics=list(sub.topics),
        output_topics=outputs,
        group=sub.group(settings.service_name),
        concurrency=sub.concurrency,
        consumers=sub.consumers,
        max_retries=max((h.max_retries for h in handlers), default=settings.max_retries),
        handlers=handlers,
    )


def find_targets(package: str | None) -> list[Subscription]:
    """The targets ``package`` (a module or package, imported) registers; all registered ones
    without it."""
    if not package:
        return registered()
    try:
        return discover_workers(package)
    except ConfigurationError as exc:
        raise OpsError(str(exc)) from None
    except Exception as exc:  # the package itself is broken: say how, in one line
        raise OpsError(f"cannot import {package!r}: {type(exc).__name__}: {exc}") from None

"""``Subscription``: what the declarative decorators register, and the runner runs.

One subscription is one subscriber group reading one or more topics, with a route from each
event to its :class:`~common.messaging.handler.Handler`: one handler for everything (``@worker``,
``@message_handler``, listeners), or one per event name (``@consumer`` with ``@on_event``
methods, where an event no method handles is ACKed and counted, not dead-lettered).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from common.messaging.handler import Handler
from common.workers.retry import RetryPolicy

__all__ = ["Subscription"]

Hook = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class Subscription:
    """A registered declarative target (see the module docstring)."""

    name: str  # unique in the registry: the function's or class's qualified name
    topics: tuple[str, ...]
    handler: Handler | None = None  # handles every event ...
    by_event: Mapping[str, Handler] = field(default_factory=dict)  # ... or these, by name
    group_id: str | None = None  # None: "<service>.<name>"
    concurrency: int = 1  # handlers running at once per consumer
    consumers: int = 1  # consumers of the group in this process
    policy: RetryPolicy | None = None  # None: the settings' retry policy
    auto_ack: bool = True
    visibility_timeout_s: float | None = None  # None: the settings' visibility timeout
    max_messages: int | None = None  # read batch size; None: the settings' batch size
    kind: str = "worker"  # worker | consumer | message_handler | listener (for listings)
    on_startup: Hook | None = None  # once per process, before its consumers start
    on_shutdown: Hook | None = None  # once per process, after they stopped
    module: str = ""  # where it was defined (discovery filters on it)
    auto_start: bool = True  # False: run only when named (run_workers() without targets skips it)

    def route(self, name: str) -> Handler | None:
        """The handler for an event called ``name`` (None: nobody handles it)."""
        if self.handler is not None:
            return self.handler
        return self.by_event.get(name)

    def group(self, service_name: str) -> str:
        """The group id: ``group_id``, or ``<service>.<name>`` made a valid id."""
        if self.group_id is not None:
            return self.group_id
        group = re.sub(r"[^A-Za-z0-9._:-]", "-", f"{service_name}.{self.name}")
        if len(group) > 127:  # keep it readable and unique: a prefix and a digest
            group = f"{group[:100]}-{hashlib.sha1(group.encode()).hexdigest()[:12]}"
        return group

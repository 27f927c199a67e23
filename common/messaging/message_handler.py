"""``@message_handler``: a lone function handling every message of one or more topics.

::

    @message_handler(topic="payments.process", max_retries=3, retry_delay=5)
    async def process_payment(message: dict, db: Session = Depends(get_db)) -> None: ...

    @message_handler(topic="orders.created", schema=OrderCreatedEvent)
    async def handle_order(message: OrderCreatedEvent) -> None: ...

The first parameter gets the message (the event's ``data``); with ``schema`` (a pydantic model)
the message is validated first, and the function gets the model when its first parameter is
annotated with it (a dict otherwise). A message that does not match the schema would fail on
every attempt: it is dead-lettered at once (logged; never retried). Like any handler the
function may also ask for the :class:`~common.messaging.context.ActionContext`, the
:class:`~common.messaging.events.Event` and ``Depends`` parameters.

Retries: a failure is retried until ``max_retries`` deliveries have failed, waiting
``retry_delay`` seconds before each retry. As seed 001 says, the delay does not grow ("always
``retry_delay`` seconds": ``RetryPolicy(backoff="fixed", initial_delay=retry_delay,
max_delay=retry_delay)``, no jitter); for a delay that grows, give a ``retry_policy`` (it sets
the whole policy). Without these the settings' policy applies, with ``max_retries`` changed
when it is given. After the last attempt the message goes to the group's dead-letter
stream (and to ``dlq_topic`` as ``{original, error, worker, retries}`` when given).

The group is ``group_id`` or ``<service>.<module>.<function>``. The function is returned
unchanged (still directly callable in a unit test).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from common.messaging.worker import check_group, check_topic, register_function, retry_overrides
from common.workers.retry import RetryPolicy

__all__ = ["message_handler"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _retry(max_retries: int | None, retry_delay: float | None) -> dict[str, Any]:
    """The overrides of the settings' retry policy (see the module docstring)."""
    overrides = retry_overrides(max_retries, None)
    if retry_delay is not None:
        if retry_delay < 0:
            raise ValueError("retry_delay must be >= 0")
        delay = float(retry_delay)
        overrides |= {"backoff": "fixed", "initial_delay": delay, "max_delay": delay, "jitter": 0.0}
    return overrides


def message_handler(
    topic: str | Sequence[str],
    schema: type[BaseModel] | None = None,
    max_retries: int | None = None,
    retry_delay: float | None = None,
    *,
    retry_policy: RetryPolicy | None = None,
    group_id: str | None = None,
    concurrency: int = 1,
    consumers: int = 1,
    dlq_topic: str | None = None,
) -> Callable[[F], F]:
    """Register an async function as the handler of every message of ``topic`` (a name or a
    list of names); see the module docstring."""
    topics = (topic,) if isinstance(topic, str) else tuple(topic)
    if not topics:
        raise ValueError("@message_handler needs at least one topic")
    for name in topics:
        check_topic(name)
    if len(set(topics)) != len(topics):
        raise ValueError(f"a topic is listed twice: {list(topics)}")
    if dlq_topic is not None:
        check_topic(dlq_topic)
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema must be a pydantic model class, not {schema!r}")
    check_group(group_id, concurrency, consumers)
    handler = {
        "input_schema": schema,
        "dlq_topic": dlq_topic,
        "policy": retry_policy,
        "retry": _retry(max_retries, retry_delay),
    }

    def decorate(func: F) -> F:
        return register_function(
            func,
            kind="message_handler",
            topics=topics,
            handler=handler,
            group_id=group_id,
            concurrency=concurrency,
            consumers=consumers,
        )

    return decorate

"""The declarative layer: ``@worker`` functions, ``Worker`` classes, topics and events.

Everything here runs on the same engine as :class:`~common.workers.BaseWorker` (one reading,
settlement, retry, reclaim, trimming and dead-letter machinery). See the README section
"Declarative workers and events".
"""

from __future__ import annotations

from fast_depends import Depends

from common.messaging.consumer import consumer, on_event
from common.messaging.context import ActionContext, MessageContext
from common.messaging.endpoint import event
from common.messaging.events import Event
from common.messaging.handler import Handler
from common.messaging.injection import Scope, bind, injectable, provide, singleton
from common.messaging.listeners import JobListener, Message, job_listener
from common.messaging.message_handler import message_handler
from common.messaging.producer import Producer, get_producer, publish, publish_event
from common.messaging.registry import discover_workers, registered
from common.messaging.runner import MessagingPool, run_workers
from common.messaging.settings import configure_messaging
from common.messaging.subscription import Subscription
from common.messaging.worker import Worker, worker
from common.workers.retry import RetryPolicy

__all__ = [
    "ActionContext",
    "Depends",
    "Event",
    "Handler",
    "JobListener",
    "Message",
    "MessageContext",
    "MessagingPool",
    "Producer",
    "RetryPolicy",
    "Scope",
    "Subscription",
    "Worker",
    "bind",
    "configure_messaging",
    "consumer",
    "discover_workers",
    "event",
    "get_producer",
    "injectable",
    "job_listener",
    "message_handler",
    "on_event",
    "provide",
    "publish",
    "publish_event",
    "registered",
    "run_workers",
    "singleton",
    "worker",
]

"""Workers: the consumer engine, ``BaseWorker``, pools, retries and recovery."""

from common.workers.base_worker import BaseWorker, HandlerResult
from common.workers.engine import StreamConsumer
from common.workers.outcome import DeadLetterReason, Delivery
from common.workers.pool import WorkerPool
from common.workers.recovery import Reclaimer
from common.workers.resources import Resources
from common.workers.retry import RetryPolicy
from common.workers.stats import WorkerStats

__all__ = [
    "BaseWorker",
    "DeadLetterReason",
    "Delivery",
    "HandlerResult",
    "Reclaimer",
    "Resources",
    "RetryPolicy",
    "StreamConsumer",
    "WorkerPool",
    "WorkerStats",
]

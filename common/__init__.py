"""A toolkit for microservices that talk through Redis Streams.

Services subclass :class:`BaseWorker`, run N of them with :class:`WorkerPool` (in a FastAPI
lifespan), and call each other with :class:`BaseRedisClient`.
"""

import logging

from common.clients import BaseRedisClient, QueueManager, RedisManager
from common.config import CommonAppSettings
from common.errors import (
    ActionTimeoutError,
    CommonError,
    ConfigurationError,
    InvalidKeyError,
    MalformedMessageError,
    NoConsumerError,
    NonRetryableError,
    PartialSendError,
    PayloadTooLargeError,
    RedisUnavailableError,
    RemoteActionError,
    ReplicationError,
    RetryLaterError,
    SendTimeoutError,
    UnknownActionError,
)
from common.models import DomainAction, DomainActionResponse, ErrorDetail
from common.workers import BaseWorker, Resources, RetryPolicy, WorkerPool

__version__ = "0.1.0"

__all__ = [
    "ActionTimeoutError",
    "BaseRedisClient",
    "BaseWorker",
    "CommonAppSettings",
    "CommonError",
    "ConfigurationError",
    "DomainAction",
    "DomainActionResponse",
    "ErrorDetail",
    "InvalidKeyError",
    "MalformedMessageError",
    "NoConsumerError",
    "NonRetryableError",
    "PartialSendError",
    "PayloadTooLargeError",
    "QueueManager",
    "RedisManager",
    "RedisUnavailableError",
    "RemoteActionError",
    "ReplicationError",
    "Resources",
    "RetryLaterError",
    "RetryPolicy",
    "SendTimeoutError",
    "UnknownActionError",
    "WorkerPool",
    "__version__",
]

logging.getLogger("common").addHandler(logging.NullHandler())

"""What an error from Redis means for the write that got it: try again later, or never.

Every error a write can get is one of two kinds:

- **transient**: the server may take the same command later. A lost or refused connection,
  ``OOM`` (``maxmemory`` with ``noeviction``), ``READONLY`` (a replica, or a failover in
  progress), ``LOADING`` (a restart reading its data set), ``BUSY`` (a long script),
  ``MASTERDOWN``, ``CLUSTERDOWN``, ``TRYAGAIN``, ``NOREPLICAS``, ``MISCONF`` (the last save
  failed, so writes are refused), redis-py's ``ClusterError`` (too many MOVED/ASK
  redirections in a row, during a slot migration), a ``WAIT`` that fell short
  (:class:`~common.errors.ReplicationError`). The entry that needs the write stays pending,
  and the write is tried again after a backoff.
- **permanent**: the same command will be refused again (``WRONGTYPE`` on a reply key,
  ``NOPERM``, a syntax error...). The entry that needs the write is dead-lettered with the reason.
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    ExecAbortError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from common.clients.redis_manager import CONNECTION_ERRORS
from common.errors import ReplicationError

__all__ = ["TRANSIENT_CODES", "error_code", "is_transient"]

TRANSIENT_CODES = frozenset(
    {
        "OOM",
        "READONLY",
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "NOREPLICAS",
        "MISCONF",
    }
)

_TRANSIENT_CLASSES = (
    ClusterError,  # redis-py gave up following MOVED/ASK (a slot migration in progress)
    ReplicationError,  # a WAIT that fell short (redis_wait_replicas): write again
    OutOfMemoryError,
    ReadOnlyError,
    MasterDownError,
    ClusterDownError,
    TryAgainError,
)


def error_code(exc: BaseException) -> str:
    """The error's code as Redis sent it (``OOM``, ``WRONGTYPE``...), or the class name."""
    if isinstance(exc, OutOfMemoryError):
        return "OOM"
    if isinstance(exc, ReadOnlyError):
        return "READONLY"
    if isinstance(exc, ResponseError):
        first = str(exc).split(" ", 1)[0]
        if first.isupper() and first.isalpha():
            return first
        return "ERR"
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """True if the command that raised ``exc`` may succeed if sent again later."""
    if isinstance(exc, CONNECTION_ERRORS + _TRANSIENT_CLASSES):
        return True
    if isinstance(exc, ExecAbortError):
        # redis-py raises the first queued error where it can; a bare EXECABORT names its
        # cause in the text ("... previous errors"), which we cannot see: try again.
        return True
    return isinstance(exc, ResponseError) and error_code(exc) in TRANSIENT_CODES

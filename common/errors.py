"""The toolkit's error tree. Every error it raises derives from :class:`CommonError`.

::

    CommonError
     ├── ConfigurationError          bad settings or URL (raised at start-up)
     ├── InvalidKeyError             a key that QueueManager does not recognise
     ├── MessageError                an entry that cannot become a DomainAction
     │    ├── MalformedMessageError  not JSON, wrong fields, wrong types
     │    └── PayloadTooLargeError   larger than ``max_payload_bytes``
     ├── HandlerError                raised *by handlers* to steer delivery
     │    ├── NonRetryableError      dead-letter at once, no retry
     │    │    └── UnknownActionError   no handler for the action type
     │    └── RetryLaterError        retry after ``delay`` seconds
     ├── ActionTimeoutError          a pseudo-sync call got no reply in time
     │    └── NoConsumerError        ... and no service consumes the target stream
     ├── RemoteActionError           a pseudo-sync call got an error reply
     ├── PartialSendError            some actions of a batch send were not appended
     ├── RedisUnavailableError       Redis could not be reached at start-up
     ├── ReplicationError            too few replicas confirmed a write in time (WAIT)
     ├── SendTimeoutError            a send did not complete in time (also a TimeoutError)
     └── WorkerStateError            a worker or client used in the wrong state
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.models.actions import ErrorDetail

__all__ = [
    "ActionTimeoutError",
    "CommonError",
    "ConfigurationError",
    "HandlerError",
    "InvalidKeyError",
    "MalformedMessageError",
    "MessageError",
    "NoConsumerError",
    "NonRetryableError",
    "PartialSendError",
    "PayloadTooLargeError",
    "RedisUnavailableError",
    "RemoteActionError",
    "ReplicationError",
    "RetryLaterError",
    "SendTimeoutError",
    "UnknownActionError",
    "WorkerStateError",
]


class CommonError(Exception):
    """Root of every error raised by the toolkit."""


class ConfigurationError(CommonError, ValueError):
    """Settings or a connection URL are invalid.

    ``problems`` has a ``(setting, message)`` pair per invalid setting when settings were
    validated (``"settings"`` for a rule between several settings). A ``ValueError``, as
    pydantic's ``ValidationError`` that settings used to raise is one.
    """

    def __init__(self, message: str, problems: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class InvalidKeyError(CommonError, ValueError):
    """A Redis key is outside the naming scheme of this prefix and environment."""


class MessageError(CommonError):
    """A stream entry cannot be turned into a valid message."""


class MalformedMessageError(MessageError):
    """The entry is not JSON, lacks fields, or has fields of the wrong type."""


class PayloadTooLargeError(MessageError):
    """The encoded payload is larger than ``max_payload_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds max_payload_bytes={limit}")
        self.size = size
        self.limit = limit


class HandlerError(CommonError):
    """Base of the errors a handler raises on purpose to steer delivery."""


class NonRetryableError(HandlerError):
    """The action can never succeed: dead-letter it at once, without retries."""

    status_code: int = 422


class UnknownActionError(NonRetryableError):
    """No handler exists for the action type."""

    status_code = 404


class RetryLaterError(HandlerError):
    """Retry the action after ``delay`` seconds instead of the policy's backoff."""

    def __init__(self, delay: float, message: str = "") -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        super().__init__(message or f"retry requested in {delay:g}s")
        self.delay = float(delay)


class ActionTimeoutError(CommonError):
    """A pseudo-synchronous call received no response within its timeout."""

    def __init__(self, action_id: Any, timeout: float) -> None:
        super().__init__(f"no response to action {action_id} within {timeout:g}s")
        self.action_id = action_id
        self.timeout = timeout


class NoConsumerError(ActionTimeoutError):
    """A pseudo-synchronous call timed out, and no service consumes the target stream.

    Raised instead of a plain :class:`ActionTimeoutError` when, checked once after the
    timeout, the ``stream`` has no consumer group (no worker ever read it) or only groups
    without consumers (every worker has stopped): nobody was there to answer."""

    def __init__(self, action_id: Any, timeout: float, stream: str, reason: str) -> None:
        super().__init__(action_id, timeout)
        self.args = (
            f"no response to action {action_id} within {timeout:g}s: no service consumes"
            f" stream {stream} ({reason})",
        )
        self.stream = stream
        self.reason = reason


class RemoteActionError(CommonError):
    """A pseudo-synchronous call was answered with ``success=False``."""

    def __init__(self, error: ErrorDetail | None, status_code: int) -> None:
        message = error.message if error is not None else "remote action failed"
        kind = error.error_type if error is not None else "Error"
        super().__init__(f"{kind} ({status_code}): {message}")
        self.error = error
        self.status_code = status_code


class PartialSendError(CommonError):
    """A batch send appended some actions and not others.

    ``entry_ids`` has, in order, the entry id of each action that was appended and None for
    each one that was not; ``errors`` has Redis's error for each of those. Resend only the
    actions whose id is None: the others are on their streams already."""

    def __init__(self, entry_ids: list[str | None], errors: list[Exception]) -> None:
        super().__init__(f"{len(errors)} of {len(entry_ids)} actions were not sent: {errors[0]}")
        self.entry_ids = entry_ids
        self.errors = errors


class ReplicationError(CommonError):
    """Fewer than ``redis_wait_replicas`` replicas confirmed a write within
    ``redis_wait_timeout_ms`` (Redis ``WAIT``).

    Redis applied the write on the master: it holds there, and is lost only if that master
    fails before a replica has it. A send that raises it is not resent automatically:
    ``entry_ids`` says where its actions were appended. Workers treat it as transient (the
    entry stays pending, the write is tried again). ``confirmed`` is how many replicas did
    confirm; ``moved``: the key's slot moved to another cluster node during the write."""

    def __init__(
        self,
        wanted: int,
        confirmed: int,
        timeout_ms: int,
        *,
        moved: bool = False,
        entry_ids: Iterable[str] = (),
    ) -> None:
        self.wanted = wanted
        self.confirmed = confirmed
        self.timeout_ms = timeout_ms
        self.moved = moved
        self.entry_ids = list(entry_ids)
        if moved:
            why = "its slot moved to another cluster node during the write"
        else:
            why = f"only {confirmed} of {wanted} replicas confirmed it within {timeout_ms} ms"
        sent = f" (entry ids {', '.join(self.entry_ids)}; not resent)" if self.entry_ids else ""
        super().__init__(
            f"write not confirmed by replicas (redis_wait_replicas={wanted}): {why}; Redis "
            f"applied it{sent}, but a failover now could lose it"
        )

    def for_entries(self, entry_ids: Iterable[str]) -> ReplicationError:
        """The same error, naming the entries of one send."""
        return ReplicationError(
            self.wanted, self.confirmed, self.timeout_ms, moved=self.moved, entry_ids=entry_ids
        )


class RedisUnavailableError(CommonError):
    """Redis could not be reached at start-up within the time allowed for connecting.

    ``url`` is the redacted ``redis_url`` (never a password); ``cause`` is the last error
    met, ``attempts`` how many connections were tried."""

    def __init__(self, url: str, cause: BaseException, attempts: int, waited: float) -> None:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(
            f"cannot connect to Redis at {url} ({tries} in {waited:.1f}s):"
            f" {type(cause).__name__}: {cause}"
        )
        self.url = url
        self.cause = cause
        self.attempts = attempts
        self.waited = waited


class SendTimeoutError(CommonError, TimeoutError):
    """A send did not complete within its time limit (``redis_send_timeout_s``).

    ``outcome_unknown`` is True when the action(s) had gone out to Redis: they may or may not
    have been appended, and may still run. Nothing is resent automatically: resending may run
    an action twice. It is False when the send was still waiting for its turn and never went
    out: resending is safe."""

    def __init__(self, timeout: float, *, outcome_unknown: bool, count: int = 1) -> None:
        what = "the action" if count == 1 else f"the {count} actions"
        if outcome_unknown:
            detail = (
                f"{what} went out to Redis, whose answer did not come: the outcome is unknown"
                " (appended or not); not resent"
            )
        else:
            detail = f"{what} waited for an earlier send and were not sent; safe to resend"
            if count == 1:
                detail = f"{what} waited for an earlier send and was not sent; safe to resend"
        super().__init__(f"send not completed within {timeout:g}s: {detail}")
        self.timeout = timeout
        self.outcome_unknown = outcome_unknown


class WorkerStateError(CommonError, RuntimeError):
    """A worker, pool or client was used before initialisation or after closing."""

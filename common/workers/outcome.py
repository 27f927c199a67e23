"""What reading an entry gives (a :class:`Delivery`) and what handling it decides (an outcome).

A processor returns one outcome per delivery; the engine settles it: ``Ack`` (write replies
and callbacks, then XACK), ``Fail`` (stay pending, retry after a delay or dead-letter when the
budget is spent) or ``DeadLetter`` (to the dead-letter stream and XACK in one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio.client import Pipeline

from common.models.actions import ErrorDetail
from common.workers.delays import ScheduleRetry
from common.workers.retry import RetryPolicy

__all__ = [
    "Ack",
    "DeadLetter",
    "DeadLetterReason",
    "Delivery",
    "Fail",
    "HeldKey",
    "ListPush",
    "Outcome",
    "StreamAdd",
    "Write",
]


class DeadLetterReason(StrEnum):
    MALFORMED = "malformed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_ACTION = "unknown_action"
    REFUSED_TARGET = "refused_target"
    NON_RETRYABLE = "non_retryable"
    MAX_RETRIES = "max_retries"
    EXPIRED = "expired"
    WRITE_REFUSED = "write_refused"
    REJECTED = "rejected"


HeldKey = tuple[str, bytes]
"""(stream, entry id): the key of a held delivery."""


@dataclass(slots=True, eq=False)
class Delivery:
    """One stream entry held by this consumer, from read (or claim) to settlement."""

    entry_id: bytes
    fields: dict[bytes, bytes]
    attempt: int = 1
    touched: float = 0.0  # monotonic time at which Redis last reset the entry's idle time
    payload: Any = None  # the decoded message, once a processor has decoded it
    started: bool = False  # its handler was started (a hand-back then costs an attempt)
    policy: RetryPolicy | None = None  # this delivery's handler's policy (None: the consumer's)
    stream: str = ""  # the stream it was read from ("": the consumer's first stream)
    # What identifies it among a consumer's held entries: entry ids are unique per stream only
    # (two streams, two partitions or topics, often give the same id). Made once: it is looked
    # up several times per message.
    key: HeldKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.stream, self.entry_id)

    @property
    def first_seen_ms(self) -> int:
        """Milliseconds since the epoch at which the entry was added (from its id)."""
        return int(self.entry_id.split(b"-", 1)[0])


@dataclass(frozen=True, slots=True)
class ListPush:
    """RPUSH a reply onto a list and (re)set the list's expiry."""

    key: str
    value: bytes
    ttl_s: int

    def apply(self, pipe: Pipeline) -> None:
        pipe.rpush(self.key, self.value)
        pipe.expire(self.key, self.ttl_s)


@dataclass(frozen=True, slots=True)
class StreamAdd:
    """XADD an entry (a callback or a forwarded action) to a stream."""

    key: str
    fields: dict[str, bytes]
    maxlen: int | None = None

    def apply(self, pipe: Pipeline) -> None:
        pipe.xadd(self.key, self.fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]


Write = ListPush | StreamAdd | ScheduleRetry


@dataclass(frozen=True, slots=True)
class Ack:
    writes: tuple[Write, ...] = ()


@dataclass(frozen=True, slots=True)
class Fail:
    error: ErrorDetail
    delay: float | None = None  # None: the retry policy decides
    exc: BaseException | None = field(default=None, compare=False)  # logged with its traceback
    deadline: float | None = None  # epoch seconds after which a retry is pointless


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    error: ErrorDetail
    writes: tuple[Write, ...] = field(default=())


Outcome = Ack | Fail | DeadLetter

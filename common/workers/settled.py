"""What the outbox holds (one :class:`Settled` per settled delivery), what a flush returns, and
the commands a flush queues for them: the writes (replies grouped per list) and the dead-letter
record (see :mod:`common.workers.outbox` for the order and the guarantees)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio.client import Pipeline

from common.models.codec import ACTION_FIELD_BYTES, dumps
from common.workers.outcome import DeadLetter, Delivery, ListPush, Write

__all__ = ["FlushResult", "Settled", "dead_letter_fields", "queue_writes"]


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def dead_letter_fields(
    stream: str, delivery: Delivery, dead: DeadLetter, worker: str
) -> dict[str, bytes | str]:
    """The dead-letter record: ``{original, error, worker, retries, reason, ...}``."""
    raw = delivery.fields.get(ACTION_FIELD_BYTES)
    if raw is None:
        raw = dumps(
            {
                k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
                for k, v in delivery.fields.items()
            }
        )
    return {
        "original": raw,
        "error": dead.error.model_dump_json(),
        "reason": dead.reason.value,
        "worker": worker,
        "retries": str(delivery.attempt),
        "stream": stream,
        "entry_id": delivery.entry_id,
        "first_seen": _iso_ms(delivery.first_seen_ms),
        "failed_at": datetime.now(UTC).isoformat(),
    }


@dataclass(slots=True, eq=False)
class Settled:
    """One settled delivery in the outbox: its writes, then its XACK (or its dead letter)."""

    delivery: Delivery
    writes: tuple[Write, ...] = ()
    dead: DeadLetter | None = None
    written: bool = False  # its writes are confirmed: only the ACK (or dead letter) is left
    ack: bool = True  # False: a retry scheduled in the delay set, pending until it is due

    @property
    def entry_id(self) -> bytes:
        return self.delivery.entry_id


@dataclass(slots=True)
class FlushResult:
    """What one flush settled for good, and the error that kept the rest back (if any)."""

    done: list[Settled] = field(default_factory=list)
    error: BaseException | None = None
    refused: list[Settled] = field(default_factory=list)  # writes refused for good


def queue_writes(pipe: Pipeline, items: list[Settled]) -> list[list[Settled]]:
    """Queue the writes of ``items`` on ``pipe``; returns, per queued command, the items that
    depend on it. Replies to one list go as one RPUSH (in order) and one EXPIRE (the last TTL
    asked for), where that list's first reply was; other writes go as they are, in order."""
    served: list[list[Settled]] = []
    lists: dict[str, tuple[list[bytes], list[Settled]]] = {}
    ttls: dict[str, int] = {}
    ops: list[tuple[Write, Settled] | str] = []  # a str: the grouped replies to that key
    for item in items:
        for write in item.writes:
            if isinstance(write, ListPush):
                grouped = lists.get(write.key)
                if grouped is None:
                    grouped = lists[write.key] = ([], [])
                    ops.append(write.key)
                grouped[0].append(write.value)
                if not grouped[1] or grouped[1][-1] is not item:
                    grouped[1].append(item)
                ttls[write.key] = write.ttl_s
            else:
                ops.append((write, item))
    for op in ops:
        if isinstance(op, str):
            values, users = lists[op]
            pipe.rpush(op, *values)
            pipe.expire(op, ttls[op])
            served += [users, users]
        else:
            write, item = op
            write.apply(pipe)
            served.append([item])
    return served

"""Counters of what a worker did; read them for tests, logs and metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["WorkerStats"]


@dataclass(slots=True)
class WorkerStats:
    read: int = 0  # entries read with XREADGROUP
    handled: int = 0  # handled successfully
    acked: int = 0  # XACKed (handled, dead-lettered or expired)
    failed: int = 0  # handler failures (each failed delivery)
    retried: int = 0  # deliveries re-run after a failure
    reclaimed: int = 0  # entries claimed from other (dead or stuck) consumers
    deleted_while_pending: int = 0  # pending entries found trimmed or deleted
    lease_renewals: int = 0  # idle-time resets of long-running entries
    lost: int = 0  # entries taken over by another consumer while held here
    released: int = 0  # entries handed back at shutdown for prompt pickup
    dead_lettered: dict[str, int] = field(default_factory=dict)  # by reason
    dead_letters_trimmed: int = 0  # old dead letters dropped by the dead_letter_maxlen cap
    flush_errors: int = 0  # flushes that Redis refused (each is retried after a backoff)
    flush_error: str | None = None  # why the outbox cannot be written now (None: healthy)

    def count_dead_letter(self, reason: str) -> None:
        self.dead_lettered[reason] = self.dead_lettered.get(reason, 0) + 1

    @property
    def expired(self) -> int:
        return self.dead_lettered.get("expired", 0)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

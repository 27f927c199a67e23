"""Dead letters: read, filter, replay and purge the records of a dead-letter stream.

A record is what :func:`common.workers.outbox.dead_letter_fields` wrote: ``original`` (the
entry's payload), ``error`` (an ``ErrorDetail`` as JSON), ``reason``, ``worker``, ``retries``,
``stream`` (where the entry came from), ``entry_id``, ``first_seen`` and ``failed_at``.

:func:`replay` puts each record's ``original`` back on its stream as a new entry (so with a
fresh attempt count) and deletes the record, both in one script per batch (the dead-letter
stream and the stream share a hash tag: legal on a cluster). The script reads the record
itself, so a record replayed or purged meanwhile by someone else is skipped, never sent twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.ops.streams import StreamRef

__all__ = [
    "DeadLetterFilter",
    "DeadLetterRecord",
    "ReplayResult",
    "get_dead_letters",
    "iter_dead_letters",
    "list_dead_letters",
    "purge",
    "replay",
]

PAGE = 500  # entries per XRANGE page, and per replay script or XDEL


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _event_of(text: str) -> dict[str, Any] | None:
    """A topic entry's event (its ``name`` read as the record's type), or None."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    return {"action_type": event.get("name"), "event_id": event.get("event_id")}


@dataclass(slots=True)
class DeadLetterRecord:
    """One dead letter, as read from its stream (``id`` is its id in the dead-letter stream)."""

    id: str
    reason: str
    action_type: str | None
    action_id: str | None
    error: dict[str, Any] | str | None
    worker: str
    retries: int | None
    stream: str
    entry_id: str
    first_seen: str
    failed_at: str
    original: str

    @classmethod
    def from_entry(cls, entry_id: Any, fields: dict[Any, Any]) -> DeadLetterRecord:
        get = {_text(k): v for k, v in fields.items()}
        original = get.get("original")
        action_type = action_id = None
        try:
            payload = orjson.loads(original) if original is not None else None
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("event"), str):
            payload = _event_of(payload["event"])  # a topic's entry: its type is the event's
        if isinstance(payload, dict):
            if isinstance(payload.get("action_type"), str):
                action_type = payload["action_type"]
            if payload.get("action_id") is not None:
                action_id = str(payload["action_id"])
            elif payload.get("event_id") is not None:
                action_id = str(payload["event_id"])
        error: dict[str, Any] | str | None = None
        if get.get("error") is not None:
            try:
                error = orjson.loads(get["error"])
            except orjson.JSONDecodeError:
                error = _text(get["error"])
        retries = _text(get.get("retries"))
        return cls(
            id=_text(entry_id),
            reason=_text(get.get("reason")),
            action_type=action_type,
            action_id=action_id,
            error=error,
            worker=_text(get.get("worker")),
            retries=int(retries) if retries.isdigit() else None,
            stream=_text(get.get("stream")),
            entry_id=_text(get.get("entry_id")),
            first_seen=_text(get.get("first_seen")),
            failed_at=_text(get.get("failed_at")),
            original=_text(original),
        )

    @property
    def error_message(self) -> str:
        if isinstance(self.error, dict):
            return str(self.error.get("message", ""))
        return self.error or ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which records: by ``reason``, ``action_type``, dead-lettered at or after ``since_ms``
    (epoch ms), at most ``limit`` (None: all)."""

    reason: str | None = None
    action_type: str | None = None
    since_ms: int | None = None
    limit: int | None = None

    def matches(self, record: DeadLetterRecord) -> bool:
        if self.reason is not None and record.reason != self.reason:
            return False
        return self.action_type is None or record.action_type == self.action_type


async def iter_dead_letters(
    redis: aioredis.Redis, dead_letter_stream: str, where: DeadLetterFilter | None = None
) -> AsyncIterator[DeadLetterRecord]:
    """The matching records, oldest first, read a page at a time.

    A dead-letter stream's ids are the times of dead-lettering, so ``since_ms`` is where the
    reading starts, not a filter on everything."""
    where = where or DeadLetterFilter()
    start = f"{where.since_ms}-0" if where.since_ms is not None else "-"
    found = 0
    while where.limit is None or found < where.limit:
        page: list[Any] = (
            await redis.xrange(dead_letter_stream, min=start, max="+", count=PAGE) or []
        )
        for entry_id, fields in page:
            record = DeadLetterRecord.from_entry(entry_id, fields)
            if where.matches(record):
                yield record
                found += 1
                if where.limit is not None and found >= where.limit:
                    return
        if len(page) < PAGE:
            return
        start = "(" + _text(page[-1][0])


async def list_dead_letters(
    redis: aioredis.Redis, dead_letter_stream: str, where: DeadLetterFilter | None = None
) -> list[DeadLetterRecord]:
    return [r async for r in iter_dead_letters(redis, dead_letter_stream, where)]


async def get_dead_letters(
    redis: aioredis.Redis, dead_letter_stream: str, ids: Sequence[str]
) -> list[DeadLetterRecord | None]:
    """The records with these ids (None for an id that is not there)."""
    pipe = redis.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(dead_letter_stream, min=entry_id, max=entry_id, count=1)
    found: list[DeadLetterRecord | None] = []
    for rows in await pipe.execute():
        found.append(DeadLetterRecord.from_entry(*rows[0]) if rows else None)
    return found


# KEYS[1] dead-letter stream, KEYS[2] the stream to replay onto; ARGV[1] the payload field
# ('': 'original' is a JSON object of the entry's fields, as a topic's records are), then
# record ids. Per id: its 'original' goes onto the stream as a new entry and the record is
# deleted; returns per id the new entry id, '' (the record is gone, or has no original) or
# '!' (its original is not a JSON object of string fields: left where it is).
_REPLAY = """
local out = {}
for i = 2, #ARGV do
  local rows = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  local original = nil
  if #rows > 0 then
    local fields = rows[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'original' then original = fields[j + 1] end
    end
  end
  if not original then
    out[#out + 1] = ''
  elseif ARGV[1] ~= '' then
    out[#out + 1] = redis.call('XADD', KEYS[2], '*', ARGV[1], original)
    redis.call('XDEL', KEYS[1], ARGV[i])
  else
    local ok, decoded = pcall(cjson.decode, original)
    local args = {}
    if ok and type(decoded) == 'table' then
      for k, v in pairs(decoded) do
        if type(k) ~= 'string' or type(v) ~= 'string' then args = nil break end
        args[#args + 1] = k
        args[#args + 1] = v
      end
    else
      args = nil
    end
    if args and #args > 0 then
      out[#out + 1] = redis.call('XADD', KEYS[2], '*', unpack(args))
      redis.call('XDEL', KEYS[1], ARGV[i])
    else
      out[#out + 1] = '!'
    end
  end
end
return out
"""


@dataclass(slots=True)
class ReplayResult:
    replayed: dict[str, str] = field(default_factory=dict)  # record id -> new entry id
    missing: list[str] = field(default_factory=list)  # gone meanwhile (replayed or purged)
    refused: dict[str, str] = field(default_factory=dict)  # record id -> why not replayed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[int], None]
"""Told how many more records were done after each batch."""


async def replay(
    redis: aioredis.Redis,
    ref: StreamRef,
    records: Sequence[DeadLetterRecord],
    progress: Progress | None = None,
) -> ReplayResult:
    """Put ``records`` back on their stream (new entries, fresh attempt counts) and delete them
    from the dead-letter stream, atomically per batch."""
    result = ReplayResult()
    by_target: dict[str, list[str]] = {}
    for record in records:
        target = ref.replay_target(record.stream)
        if target is None:
            result.refused[record.id] = f"it came from {record.stream}, not {ref.stream}"
            if progress:
                progress(1)
        else:
            by_target.setdefault(target, []).append(record.id)
    for target, ids in by_target.items():
        for i in range(0, len(ids), PAGE):
            batch = ids[i : i + PAGE]
            new_ids = await redis.eval(
                _REPLAY, 2, ref.dead_letter_stream, target, ref.payload_field, *batch
            )
            for record_id, new_id in zip(batch, new_ids, strict=True):
                if new_id in ("!", b"!"):
                    result.refused[record_id] = "its original is not an entry's fields"
                elif new_id:
                    result.replayed[record_id] = _text(new_id)
                else:
                    result.missing.append(record_id)
            if progress:
                progress(len(batch))
    return result


async def purge(
    redis: aioredis.Redis,
    dead_letter_stream: str,
    ids: Sequence[str],
    progress: Progress | None = None,
) -> int:
    """Delete the records ``ids``; returns how many were there."""
    deleted = 0
    for i in range(0, len(ids), PAGE):
        batch = ids[i : i + PAGE]
        deleted += int(await redis.xdel(dead_letter_stream, *batch))
        if progress:
            progress(len(batch))
    return deleted

"""Dead letters: read, filter, replay and purge the records of a dead-letter stream.

A record is what :func:`common.workers.settled.dead_letter_fields` wrote: ``original`` (the
entry's payload), ``error`` (an ``ErrorDetail`` as JSON), ``reason``, ``worker``, ``retries``,
``stream`` (where the entry came from), ``entry_id``, ``first_seen`` and ``failed_at``.

:func:`replay` puts each record's ``original`` back on its stream as a new entry (so with a
fresh attempt count) and deletes the record, both in one script per batch (the dead-letter
stream and the stream share a hash tag: legal on a cluster). The script reads the record
itself, so a record replayed or purged meanwhile by someone else is skipped, never sent twice.

A partitioned service (``stream_partitions`` > 1) has one dead-letter stream per partition,
beside that partition's stream. Ids of different streams can be equal, so a record is named
by :func:`record_name`: its id in partition 0, ``k:<id>`` in partition k (as its hash tag
``{service:k}``); :func:`list_partitions`, :func:`find_records`, :func:`replay_partitions` and
:func:`purge_partitions` work over all of them.
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
    "by_partition",
    "find_records",
    "get_dead_letters",
    "iter_dead_letters",
    "list_dead_letters",
    "list_partitions",
    "parse_record_name",
    "purge",
    "purge_partitions",
    "record_name",
    "replay",
    "replay_partitions",
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


def record_name(partition: int, record_id: str) -> str:
    """How a record is named across a service's partitions: ``id``, or ``k:id`` in partition
    k >= 1."""
    return f"{partition}:{record_id}" if partition else record_id


def parse_record_name(name: str) -> tuple[int, str] | None:
    """``(partition, id)`` of a :func:`record_name`, or None if it is not one."""
    head, colon, record_id = name.rpartition(":")
    if not colon:
        return 0, name
    if head.isdigit() and head == str(int(head)) and record_id:
        return int(head), record_id
    return None


@dataclass(slots=True)
class DeadLetterRecord:
    """One dead letter, as read from its stream (``id`` is its id in the dead-letter stream,
    ``partition`` the partition of the service whose dead letters hold it; :attr:`name`)."""

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
    partition: int = 0

    @property
    def name(self) -> str:
        """The record's id, with its partition if not 0 (``2:1700000000000-0``)."""
        return record_name(self.partition, self.id)

    @classmethod
    def from_entry(
        cls, entry_id: Any, fields: dict[Any, Any], partition: int = 0
    ) -> DeadLetterRecord:
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
            partition=partition,
        )

    @property
    def error_message(self) -> str:
        if isinstance(self.error, dict):
            return str(self.error.get("message", ""))
        return self.error or ""

    def as_dict(self) -> dict[str, Any]:
        """The fields, and ``name`` (what ``dlq show|replay|purge`` take)."""
        return {**asdict(self), "name": self.name}


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
    redis: aioredis.Redis,
    dead_letter_stream: str,
    where: DeadLetterFilter | None = None,
    partition: int = 0,
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
            record = DeadLetterRecord.from_entry(entry_id, fields, partition)
            if where.matches(record):
                yield record
                found += 1
                if where.limit is not None and found >= where.limit:
                    return
        if len(page) < PAGE:
            return
        start = "(" + _text(page[-1][0])


async def list_dead_letters(
    redis: aioredis.Redis,
    dead_letter_stream: str,
    where: DeadLetterFilter | None = None,
    partition: int = 0,
) -> list[DeadLetterRecord]:
    return [r async for r in iter_dead_letters(redis, dead_letter_stream, where, partition)]


def _age_key(record: DeadLetterRecord) -> tuple[int, int, int]:
    ms, _, seq = record.id.partition("-")
    try:
        return int(ms), int(seq or 0), record.partition
    except ValueError:
        return 0, 0, record.partition


async def list_partitions(
    redis: aioredis.Redis, refs: Sequence[StreamRef], where: DeadLetterFilter | None = None
) -> list[DeadLetterRecord]:
    """The matching records of every ref's dead-letter stream (a service's partitions),
    oldest first over all of them, at most ``where.limit`` in all."""
    where = where or DeadLetterFilter()
    records: list[DeadLetterRecord] = []
    for ref in refs:
        records += await list_dead_letters(redis, ref.dead_letter_stream, where, ref.partition)
    records.sort(key=_age_key)
    return records if where.limit is None else records[: where.limit]


async def get_dead_letters(
    redis: aioredis.Redis, dead_letter_stream: str, ids: Sequence[str], partition: int = 0
) -> list[DeadLetterRecord | None]:
    """The records with these ids (None for an id that is not there)."""
    pipe = redis.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(dead_letter_stream, min=entry_id, max=entry_id, count=1)
    found: list[DeadLetterRecord | None] = []
    for rows in await pipe.execute():
        if rows:
            entry_id, fields = rows[0]
            found.append(DeadLetterRecord.from_entry(entry_id, fields, partition))
        else:
            found.append(None)
    return found


async def find_records(
    redis: aioredis.Redis, refs: Sequence[StreamRef], names: Sequence[str]
) -> list[DeadLetterRecord | None]:
    """The records named ``names`` (:func:`record_name`) among ``refs``' dead letters (a
    service's partitions), None for a name that is not there."""
    by_partition = {ref.partition: ref for ref in refs}
    wanted: dict[int, list[str]] = {}
    for name in names:
        parsed = parse_record_name(name)
        if parsed is not None and parsed[0] in by_partition:
            wanted.setdefault(parsed[0], []).append(parsed[1])
    found: dict[str, DeadLetterRecord] = {}
    for partition, ids in wanted.items():
        ref = by_partition[partition]
        for record in await get_dead_letters(redis, ref.dead_letter_stream, ids, partition):
            if record is not None:
                found[record.name] = record
    return [found.get(name) for name in names]


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
    """Put ``records`` (of ``ref``'s dead letters) back on their stream (new entries, fresh
    attempt counts) and delete them from the dead-letter stream, atomically per batch. The
    result names records by :attr:`DeadLetterRecord.name`."""
    result = ReplayResult()
    by_target: dict[str, list[DeadLetterRecord]] = {}
    for record in records:
        target = ref.replay_target(record.stream)
        if target is None:
            result.refused[record.name] = f"it came from {record.stream}, not {ref.stream}"
            if progress:
                progress(1)
        else:
            by_target.setdefault(target, []).append(record)
    for target, chosen in by_target.items():
        for i in range(0, len(chosen), PAGE):
            batch = chosen[i : i + PAGE]
            new_ids = await redis.eval(
                _REPLAY,
                2,
                ref.dead_letter_stream,
                target,
                ref.payload_field,
                *(r.id for r in batch),
            )
            for record, new_id in zip(batch, new_ids, strict=True):
                if new_id in ("!", b"!"):
                    result.refused[record.name] = "its original is not an entry's fields"
                elif new_id:
                    result.replayed[record.name] = _text(new_id)
                else:
                    result.missing.append(record.name)
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


def by_partition(
    refs: Sequence[StreamRef], records: Sequence[DeadLetterRecord]
) -> list[tuple[StreamRef, list[DeadLetterRecord]]]:
    """``records`` grouped by the ref (partition) whose dead letters hold them, in ``refs``'
    order; a ref without records is left out."""
    grouped = [(ref, [r for r in records if r.partition == ref.partition]) for ref in refs]
    return [(ref, chosen) for ref, chosen in grouped if chosen]


async def replay_partitions(
    redis: aioredis.Redis,
    refs: Sequence[StreamRef],
    records: Sequence[DeadLetterRecord],
    progress: Progress | None = None,
) -> ReplayResult:
    """:func:`replay` over a service's partitions: each record onto its own partition's
    stream."""
    result = ReplayResult()
    for ref, chosen in by_partition(refs, records):
        done = await replay(redis, ref, chosen, progress)
        result.replayed.update(done.replayed)
        result.missing += done.missing
        result.refused.update(done.refused)
    return result


async def purge_partitions(
    redis: aioredis.Redis,
    refs: Sequence[StreamRef],
    records: Sequence[DeadLetterRecord],
    progress: Progress | None = None,
) -> int:
    """:func:`purge` over a service's partitions: each record from its own partition's dead
    letters; returns how many were there."""
    deleted = 0
    for ref, chosen in by_partition(refs, records):
        deleted += await purge(redis, ref.dead_letter_stream, [r.id for r in chosen], progress)
    return deleted

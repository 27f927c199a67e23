"""Rich tables for people: the status of streams, and dead-letter records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rich.console import Group
from rich.table import Table
from rich.text import Text

from common.ops.deadletters import DeadLetterRecord
from common.ops.status import StreamStatus

__all__ = ["dead_letter_detail", "dead_letters_table", "idle_text", "status_view"]


def idle_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)


def status_view(statuses: Sequence[StreamStatus]) -> Group:
    """One table of streams and their groups, then one of consumers (with a ``partition``
    column when a service or a topic has partitions: one row per partition)."""
    partitioned = any(s.partition for s in statuses)
    lead = ["service", "partition"] if partitioned else ["service"]
    streams = Table(title="Streams", title_justify="left")
    for column in (*lead, "length", "group", "lag", "pending", "oldest idle"):
        justify: Literal["left", "right"] = "left" if column in ("service", "group") else "right"
        streams.add_column(column, justify=justify, no_wrap=True)
    for column in ("delayed", "scheduled", "dead letters"):
        streams.add_column(column, justify="right", no_wrap=True)
    consumers = Table(title="Consumers", title_justify="left")
    for column in (*lead, "group", "consumer", "pending", "idle"):
        right = column in ("partition", "pending", "idle")
        consumers.add_column(column, justify="right" if right else "left")
    for status in statuses:
        dead = Text(str(status.dead_letters), style="bold red" if status.dead_letters else "")
        where = [status.name, str(status.partition)] if partitioned else [status.name]
        if not status.groups:
            streams.add_row(
                *where, str(status.length), "(none)", "-", "-", "-", "-",
                str(status.scheduled), dead,
            )  # fmt: skip
        for i, group in enumerate(status.groups):
            streams.add_row(
                *(where if i == 0 else [""] * len(where)),
                str(status.length) if i == 0 else "",
                group.name,
                _num(group.lag),
                str(group.pending),
                idle_text(group.oldest_pending_idle_ms),
                str(group.delayed),
                str(status.scheduled) if i == 0 else "",
                dead if i == 0 else "",
            )
            for consumer in group.consumers:
                consumers.add_row(
                    *where,
                    group.name,
                    consumer.name,
                    str(consumer.pending),
                    idle_text(consumer.idle_ms),
                )
    if not statuses:
        return Group(Text("no streams found"))
    return Group(streams, consumers) if consumers.row_count else Group(streams)


def dead_letters_table(records: Sequence[DeadLetterRecord], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "failed at", "reason", "type", "retries"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", overflow="fold")
    for r in records:
        table.add_row(
            r.name,
            r.failed_at[:19].replace("T", " "),
            r.reason,
            r.action_type or "-",
            _num(r.retries),
            r.error_message[:120],
        )
    return table


def dead_letter_detail(record: DeadLetterRecord) -> Table:
    table = Table(show_header=False, title=f"Dead letter {record.id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in record.as_dict().items():
        table.add_row(name, "-" if value in (None, "") else str(value))
    return table

"""The dashboard's HTML: the overview of streams and the dead letters of one stream.

A service with partitions (``stream_partitions`` > 1) has a row per partition in the overview,
with a ``partition`` column (only when some stream has partitions, as ``common status``), and
one dead-letter page for all its partitions, its records named as ``common dlq`` names them.

Every value that comes from Redis (names, payloads, errors) goes through :func:`html.escape`:
payloads are user data. Links are relative (``dlq/job`` from ``/ops/``, ``../`` back), so the
pages work wherever the app mounts the router.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from html import escape
from urllib.parse import quote, urlencode

import orjson

from common.ops.dashboard_assets import CSS, DEAD_LETTERS_JS, OVERVIEW_JS
from common.ops.deadletters import DeadLetterRecord
from common.ops.render import idle_text
from common.ops.status import GroupStatus, StreamStatus
from common.ops.streams import StreamRef

__all__ = ["DeadLetterView", "dead_letters_page", "overview_page", "overview_tables"]

PREVIEW_CHARS = 90


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _page(
    title: str,
    where: str,
    body: str,
    nonce: str,
    script: str = "",
    data: str = "",
    nav: str = "",
) -> str:
    """A whole page; its inline style and script carry ``nonce`` (the response's CSP allows
    only those, so markup that slipped into a payload could not run)."""
    tail = f'<script nonce="{_e(nonce)}">{script}</script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><style nonce="{_e(nonce)}">{CSS}</style></head>'
        f"<body{data}><header><h1>{_e(title)}</h1>"
        f'<span class="where">{_e(where)}</span><nav>{nav}</nav></header>'
        f"<main>{body}</main>{tail}</body></html>"
    )


def _banner(error: str | None) -> str:
    return f'<div class="banner" role="alert">{_e(error)}</div>' if error else ""


def _num(value: int | None, warn_above: int | None = None, bad_above: int | None = None) -> str:
    if value is None:
        return '<span class="muted">?</span>'
    if bad_above is not None and value > bad_above:
        return f'<span class="bad">{value}</span>'
    if warn_above is not None and value > warn_above:
        return f'<span class="warn">{value}</span>'
    return str(value)


def _dlq_link(status: StreamStatus, group: GroupStatus | None, count: int) -> str:
    query = f"?{urlencode({'group': group.name})}" if group is not None else ""
    href = f"dlq/{quote(status.name, safe='')}{query}"
    return f'<a href="{_e(href)}">{_num(count, bad_above=0)}</a>'


def _card(label: str, value: int, css: str = "") -> str:
    return (
        f'<div class="card"><div class="n {css}" data-card="{_e(label)}">{value}</div>'
        f'<div class="label">{_e(label)}</div></div>'
    )


def overview_tables(statuses: Sequence[StreamStatus]) -> str:
    """The cards, the streams table and the consumers table (what the page refreshes)."""
    if not statuses:
        return '<p class="note">No streams found in this namespace yet.</p>'
    lag = sum(g.lag or 0 for s in statuses for g in s.groups)
    pending = sum(s.pending for s in statuses)
    dead = sum(s.dead_letters for s in statuses)
    cards = (
        _card("streams", len(statuses))
        + _card("lag", lag, "warn" if lag else "")
        + _card("pending", pending)
        + _card("dead letters", dead, "bad" if dead else "")
    )
    partitioned = any(s.partition for s in statuses)
    lead = ["stream", "partition"] if partitioned else ["stream"]
    heads = [*lead, "length", "group", "lag", "pending", "oldest pending idle"]
    heads += ["delayed", "scheduled", "dead letters"]
    numeric = {"partition", "length", "lag", "pending", "oldest pending idle", "delayed"}
    numeric |= {"scheduled", "dead letters"}
    head = "".join(f'<th class="{"num" if h in numeric else ""}">{_e(h)}</th>' for h in heads)
    rows: list[str] = []
    consumers: list[str] = []
    for status in statuses:
        name = (
            f'<span class="kind">{_e(status.kind)}</span>'
            f'<span title="{_e(status.stream)}">{_e(status.name)}</span>'
        )
        part = str(status.partition) if status.kind == "actions" else "-"
        actions = partitioned and status.kind == "actions"
        part_attr = f' data-partition="{status.partition}"' if actions else ""
        groups: list[GroupStatus | None] = list(status.groups) or [None]
        for i, group in enumerate(groups):
            first = i == 0
            if group is not None and group.dead_letters is not None:
                dead_cell = _dlq_link(status, group, group.dead_letters)
            elif first and status.kind != "topic":
                dead_cell = _dlq_link(status, None, status.dead_letters)
            else:
                dead_cell = ""
            cells = [("name", name if first else "")]
            if partitioned:
                cells.append(("partition", _e(part) if first else ""))
            cells += [
                ("length", str(status.length) if first else ""),
                ("group", _e(group.name) if group else '<span class="muted">(none)</span>'),
                ("lag", _num(group.lag, warn_above=0) if group else "-"),
                ("pending", str(group.pending) if group else "-"),
                ("oldest-idle", idle_text(group.oldest_pending_idle_ms) if group else "-"),
                ("delayed", str(group.delayed) if group else "-"),
                ("scheduled", str(status.scheduled) if first else ""),
                ("dead-letters", dead_cell),
            ]
            tds = "".join(
                f'<td data-col="{col}" class="{"" if col in ("name", "group") else "num"}">'
                f"{html}</td>"
                for col, html in cells
            )
            group_attr = f' data-group="{_e(group.name)}"' if group else ""
            rows.append(f'<tr data-stream="{_e(status.name)}"{part_attr}{group_attr}>{tds}</tr>')
            for consumer in group.consumers if group else []:
                part_td = f'<td class="num" data-col="partition">{_e(part)}</td>'
                consumers.append(
                    f'<tr data-consumer="{_e(consumer.name)}"{part_attr}><td>{_e(status.name)}</td>'
                    f"{part_td if partitioned else ''}"
                    f"<td>{_e(group.name) if group else ''}</td>"
                    f'<td class="key">{_e(consumer.name)}</td>'
                    f'<td class="num" data-col="pending">{consumer.pending}</td>'
                    f'<td class="num" data-col="idle">{idle_text(consumer.idle_ms)}</td></tr>'
                )
    html = (
        f'<div class="cards">{cards}</div><h2>Streams and topics</h2>'
        f'<table id="streams"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    if consumers:
        part_th = '<th class="num">partition</th>' if partitioned else ""
        html += (
            f'<h2>Consumers</h2><table id="consumers"><thead><tr><th>stream</th>{part_th}'
            '<th>group</th><th>consumer</th><th class="num">pending</th><th class="num">idle</th>'
            "</tr></thead>"
            f"<tbody>{''.join(consumers)}</tbody></table>"
        )
    return html


def overview_page(
    statuses: Sequence[StreamStatus], where: str, nonce: str, error: str | None = None
) -> str:
    body = f'{_banner(error)}<div id="overview">{overview_tables(statuses)}</div>'
    state = '<span id="state">live: refreshed every few seconds</span>'
    return _page("Streams", where, body, nonce, OVERVIEW_JS, nav=state)


@dataclass(slots=True)
class DeadLetterView:
    """What the dead-letter page shows: the records of ``refs`` (a service's partitions, or a
    topic group's one) and what may be done to them."""

    refs: Sequence[StreamRef]
    records: Sequence[DeadLetterRecord]
    total: int
    actions_enabled: bool
    other_groups: Sequence[str] = ()
    reason: str = ""
    action_type: str = ""
    limit: int = 100

    @property
    def ref(self) -> StreamRef:
        """The first of :attr:`refs` (a service's partition 0)."""
        return self.refs[0]


def _decoded(original: str) -> object:
    """The record's payload as JSON; a topic's ``{"event": "<json>"}`` with the event decoded."""
    value = orjson.loads(original)
    if isinstance(value, dict) and isinstance(value.get("event"), str):
        with suppress(orjson.JSONDecodeError):
            value = {**value, "event": orjson.loads(value["event"])}
    return value


def _payload(original: str) -> str:
    """The payload pretty-printed, folded under a one-line preview of its ``data``."""
    try:
        value = _decoded(original)
    except orjson.JSONDecodeError:
        pretty = compact = original
    else:
        pretty = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        inner = value.get("event", value) if isinstance(value, dict) else value
        if isinstance(inner, dict) and "data" in inner:
            inner = inner["data"]
        compact = orjson.dumps(inner).decode()
    preview = compact if len(compact) <= PREVIEW_CHARS else compact[:PREVIEW_CHARS] + "..."
    return f"<details><summary>{_e(preview)}</summary><pre>{_e(pretty)}</pre></details>"


def _error(record: DeadLetterRecord) -> str:
    kind = record.error.get("error_type") if isinstance(record.error, dict) else None
    head = f"<b>{_e(kind)}</b>: " if kind else ""
    return head + _e(record.error_message)


def _record_row(record: DeadLetterRecord, enabled: bool) -> str:
    off = "" if enabled else " disabled"
    why = "" if enabled else ' title="disabled: the app passes no dashboard_auth"'
    buttons = (
        f'<button class="replay" data-verb="replay"{off}{why}>Replay</button>'
        f'<button class="purge" data-verb="purge"{off}{why}>Purge</button>'
        '<div class="result muted" aria-live="polite"></div>'
    )
    cells = [
        ("id", f'<span class="key">{_e(record.name)}</span>'),
        ("failed-at", _e(record.failed_at[:19].replace("T", " "))),
        ("reason", _e(record.reason)),
        ("type", _e(record.action_type or "-")),
        ("retries", _e("?" if record.retries is None else record.retries)),
        ("error", _error(record)),
        ("payload", _payload(record.original)),
        ("actions", buttons),
    ]
    tds = "".join(f'<td data-col="{col}">{html}</td>' for col, html in cells)
    return f'<tr data-id="{_e(record.name)}">{tds}</tr>'


def dead_letters_page(
    view: DeadLetterView | None, name: str, where: str, nonce: str, error: str = ""
) -> str:
    """The dead letters of one service or topic group, or ``error`` when they cannot be read."""
    title = f"Dead letters: {name}" + (f" ({view.ref.group})" if view and view.ref.group else "")
    back = '<a href="../">&larr; all streams</a>'
    if view is None:
        return _page(title, where, _banner(error or "nothing to show"), nonce, nav=back)
    ref = view.ref
    notes = ""
    if not view.actions_enabled:
        notes += (
            '<p class="note">Read-only: replay and purge are disabled because the app passes no '
            "<code>dashboard_auth</code> to <code>ops_router</code>.</p>"
        )
    if view.other_groups:
        notes += (
            f'<p class="note">Replay re-publishes the event on topic {_e(ref.name)}: every group '
            f"reads it again, not only {_e(ref.group)} but also "
            f"{_e(', '.join(view.other_groups))}.</p>"
        )
    group_field = f'<input type="hidden" name="group" value="{_e(ref.group)}">' if ref.group else ""
    form = (
        f'<form class="filter" method="get">{group_field}'
        f'<input name="reason" placeholder="reason" value="{_e(view.reason)}">'
        f'<input name="type" placeholder="type" value="{_e(view.action_type)}">'
        f'<input name="limit" type="number" min="1" value="{view.limit}">'
        "<button>Filter</button></form>"
    )
    heads = ("id", "failed at", "reason", "type", "retries", "error", "payload", "")
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    rows = "".join(_record_row(r, view.actions_enabled) for r in view.records)
    if not view.records:
        rows = f'<tr><td colspan="{len(heads)}" class="muted">no dead letters</td></tr>'
    source = f'<span class="key">{_e(ref.dead_letter_stream)}</span>'
    if len(view.refs) > 1:
        streams = ", ".join(r.dead_letter_stream for r in view.refs)
        source = (
            f'<span title="{_e(streams)}">the dead letters of the {len(view.refs)} '
            f"partitions of {_e(ref.name)}</span> (a record of partition k is k:&lt;id&gt;)"
        )
    body = (
        f"<p>{source}: "
        f'<span id="shown">{len(view.records)} shown of {view.total}</span></p>'
        f'{notes}{_banner(error)}{form}<table id="dead-letters"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    data = f' data-name="{_e(ref.name)}"'
    if ref.group:
        data += f' data-group="{_e(ref.group)}"'
    if view.other_groups:
        data += f' data-other-groups="{_e(", ".join(view.other_groups))}"'
    return _page(title, where, body, nonce, DEAD_LETTERS_JS, data, nav=back)

"""Checks of a demo run against its plan, and the summary (rich tables or JSON)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from common.clients.redis_manager import redact_url
from services.demo.scenario import SKUS, DemoResult

__all__ = ["Check", "checks", "percentile", "render", "summary"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    sent: int | None
    expected: str
    actual: str
    ok: bool


def _check(name: str, sent: int | None, expected: object, actual: object) -> Check:
    return Check(name, sent, str(expected), str(actual), expected == actual)


def _at_least(name: str, expected: int, actual: int) -> Check:
    return Check(name, None, f">= {expected}", str(actual), actual >= expected)


def checks(r: DemoResult) -> list[Check]:
    """Every expectation of the run; the demo succeeds when all of them hold."""
    plan = r.plan
    inv, orders = r.stats.get("inventory"), r.stats.get("orders")
    audits = plan.audits_async + plan.audits_sync
    expected_dead = plan.expected_dead_letters()
    result = [
        _check("async inventory.restock handled", plan.restocks, plan.restocks, r.restocks_applied),
        _check("pseudo-sync inventory.check replies", plan.checks, plan.checks, r.check_replies),
        _check(
            "POST /orders -> 201 reserved",
            plan.http_orders,
            plan.http_orders - 1,
            r.http_statuses.get(201, 0),
        ),
        _check("POST /orders -> 409 out of stock", None, 1, r.http_statuses.get(409, 0)),
        _check(
            "callbacks: order reserved",
            plan.callback_orders,
            plan.callback_orders - 1,
            r.callback_statuses.get("reserved", 0),
        ),
        _check(
            "callbacks: order rejected (409)",
            None,
            1,
            r.callback_statuses.get("rejected", 0),
        ),
        _check(
            "inventory.audit (always fails): reply",
            plan.audits_sync,
            500,
            r.audit_sync_status,
        ),
        _check("unknown inventory.teleport: reply", plan.unknown, 404, r.unknown_status),
        _check(
            "retried deliveries (inventory.audit)",
            audits,
            audits * (r.settings.max_retries - 1),
            inv.retried if inv else None,
        ),
    ]
    for reason in sorted(set(expected_dead) | set(r.dead_letters)):
        sent = plan.malformed if reason == "malformed" else None
        result.append(
            _check(
                f"dead-lettered: {reason}",
                sent,
                expected_dead.get(reason, 0),
                r.dead_letters.get(reason, 0),
            )
        )
    handled_inventory = (
        len(SKUS) + plan.restocks + plan.checks + plan.http_orders + plan.callback_orders
    )
    result += [
        _at_least("handled by inventory workers", handled_inventory, inv.handled if inv else 0),
        _at_least(
            "handled by orders workers (callbacks)",
            plan.callback_orders,
            orders.handled if orders else 0,
        ),
        _check("entries left pending", None, 0, sum(r.pending.values())),
        _check(
            "SKUs with stock = seed+restocks-orders",
            None,
            len(r.expected_stock),
            sum(1 for sku, n in r.expected_stock.items() if r.stock.get(sku) == n),
        ),
        _check("late pseudo-sync replies", None, 0, r.late_replies),
        _check("unexpected errors", None, 0, len(r.errors)),
    ]
    return result


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _latency_ms(values: Sequence[float]) -> dict[str, float | int | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 2)

    return {
        "count": len(values),
        "p50": ms(percentile(values, 50)),
        "p99": ms(percentile(values, 99)),
        "max": ms(max(values) if values else None),
    }


def summary(r: DemoResult) -> dict[str, Any]:
    """The run as plain data (``--json``)."""
    all_checks = checks(r)
    return {
        "ok": all(c.ok for c in all_checks),
        "elapsed_s": round(r.elapsed_s, 3),
        "redis_url": redact_url(r.settings.redis_url),
        "queue_prefix": r.settings.queue_prefix,
        "plan": asdict(r.plan),
        "checks": [asdict(c) for c in all_checks],
        "workers": {name: stats.as_dict() for name, stats in r.stats.items()},
        "dead_letters": dict(r.dead_letters),
        "http_statuses": {str(k): v for k, v in sorted(r.http_statuses.items())},
        "callback_statuses": dict(r.callback_statuses),
        "latency_ms": {
            "pseudo_sync": _latency_ms(r.check_latencies_s),
            "http_orders": _latency_ms(r.http_latencies_s),
        },
        "errors": r.errors,
    }


def _fmt_ms(v: float | int | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def render(r: DemoResult, console: Console) -> bool:
    """Print the summary tables; returns True when every check passed."""
    all_checks = checks(r)
    table = Table(title="Demo summary", title_justify="left")
    table.add_column("what")
    table.add_column("sent", justify="right")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("ok", justify="center")
    for c in all_checks:
        mark = "[green]ok[/]" if c.ok else "[bold red]FAIL[/]"
        table.add_row(c.name, "" if c.sent is None else str(c.sent), c.expected, c.actual, mark)
    console.print(table)

    workers = Table(title="Workers", title_justify="left")
    fields = ("read", "handled", "acked", "failed", "retried", "reclaimed")
    workers.add_column("service")
    for name in fields:
        workers.add_column(name, justify="right")
    workers.add_column("dead", justify="right")
    for service, stats in r.stats.items():
        dead = sum(stats.dead_lettered.values())
        workers.add_row(service, *(str(getattr(stats, f)) for f in fields), str(dead))
    console.print(workers)

    latency = Table(title="Latency (under the demo's concurrent load)", title_justify="left")
    for col in ("call", "count", "p50", "p99", "max"):
        latency.add_column(col, justify="left" if col == "call" else "right")
    for label, values in (
        ("pseudo-sync inventory.check", r.check_latencies_s),
        ("POST /orders (HTTP -> pseudo-sync)", r.http_latencies_s),
    ):
        lat = _latency_ms(values)
        latency.add_row(
            label, str(lat["count"]), _fmt_ms(lat["p50"]), _fmt_ms(lat["p99"]), _fmt_ms(lat["max"])
        )
    console.print(latency)

    for error in r.errors:
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
    failed = [c for c in all_checks if not c.ok]
    where = f"{redact_url(r.settings.redis_url)} (prefix {r.settings.queue_prefix})"
    if failed:
        console.print(
            f"[bold red]{len(failed)} of {len(all_checks)} checks FAILED[/] "
            f"in {r.elapsed_s:.2f}s on {where}"
        )
    else:
        console.print(
            f"[bold green]all {len(all_checks)} checks passed[/] in {r.elapsed_s:.2f}s on {where}"
        )
    return not failed

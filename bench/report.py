"""Results: one :class:`Row` per scenario, shown as a rich table or dumped as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Row", "print_table", "to_json"]


@dataclass
class Row:
    """One measured scenario: ours and raw (medians), their ratio and the target on it."""

    key: str  # stable name, tracked over time
    label: str
    unit: str  # "msg/s", "ms" or "MiB"
    ours: float
    raw: float | None
    target: float | None = None  # a bound on ``ratio``
    lower_is_better: bool = False  # latencies, memory: the ratio must stay <= target
    ratio: float | None = None  # ours/raw, or what ``ratio_of`` says
    ratio_of: str = "ours/raw"
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.raw:
            self.ratio = self.ours / self.raw

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'<=' if self.lower_is_better else '>='} {self.target:.2f}"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.0f} {unit}"


def _met(row: Row) -> str:
    met = row.met
    if met is None:
        return "-"
    return "[green]yes[/]" if met else "[red]NO[/]"


def print_table(rows: list[Row], machine: dict[str, Any], console: Console) -> None:
    console.print(
        "[bold]machine[/]: "
        + ", ".join(f"{k}={v}" for k, v in machine.items() if not isinstance(v, dict))
    )
    table = Table(title="redis-streams-common vs raw redis-py (medians)", title_justify="left")
    table.add_column("scenario")
    table.add_column("ours", justify="right")
    table.add_column("raw", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        if row.ratio is not None and row.ratio_of != "ours/raw":
            ratio += f" ({row.ratio_of})"
        ours = _value(row.ours, row.unit)
        if "start_mb" in row.detail:
            ours = f"{row.detail['start_mb']:.1f} -> {ours}"
        table.add_row(
            row.label,
            ours,
            _value(row.raw, row.unit),
            ratio,
            row.target_text,
            _met(row),
        )
    console.print(table)
    console.print(
        "ratio = ours/raw in the same run; the 2-core machine may be shared, so expect noise."
    )


def to_json(rows: list[Row], machine: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    scenarios = {}
    for row in rows:
        doc = asdict(row)
        doc.pop("key")
        doc["met"] = row.met
        doc["target_op"] = None if row.target is None else ("<=" if row.lower_is_better else ">=")
        scenarios[row.key] = doc
    return {"machine": machine, "sizes": sizes, "scenarios": scenarios}

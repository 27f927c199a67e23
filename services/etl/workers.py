"""The ETL chain's three workers (see the package docstring).

``extract`` validates raw sensor readings (``input_schema``: an invalid one is dead-lettered
at once, never retried) and drops the ones flagged as test data (``None`` publishes nothing);
``transform`` adds Fahrenheit (its result is checked against ``output_schema``); ``load``
stores each row in the warehouse, once per reading id.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from common.messaging import worker

__all__ = ["TOPICS", "WAREHOUSE", "Warehouse", "extract", "load", "transform"]

TOPICS = ("readings.raw", "readings.clean", "readings.enriched")


class RawReading(BaseModel):
    reading_id: str = Field(min_length=1)
    sensor: str = Field(min_length=1)
    celsius: float = Field(ge=-273.15)
    test: bool = False


class EnrichedReading(BaseModel):
    reading_id: str
    sensor: str
    celsius: float
    fahrenheit: float


class Warehouse:
    """Where ``load`` writes: rows by reading id (a re-delivery overwrites, never doubles)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def upsert(self, row: dict[str, Any]) -> None:
        self.rows[row["reading_id"]] = row

    def clear(self) -> None:
        self.rows.clear()


WAREHOUSE = Warehouse()


@worker(topic="readings.raw", output_topic="readings.clean", input_schema=RawReading)
async def extract(raw: dict[str, Any]) -> dict[str, Any] | None:
    if raw["test"]:
        return None  # test data stops here: nothing is published
    return {"reading_id": raw["reading_id"], "sensor": raw["sensor"], "celsius": raw["celsius"]}


@worker(topic="readings.clean", output_topic="readings.enriched", output_schema=EnrichedReading)
async def transform(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "fahrenheit": round(row["celsius"] * 9 / 5 + 32, 2)}


@worker(topic="readings.enriched", input_schema=EnrichedReading)
async def load(row: dict[str, Any]) -> None:
    WAREHOUSE.upsert(row)

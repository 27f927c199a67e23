"""An ETL chain of ``@worker`` functions: each one's ``output_topic`` is the next one's topic.

``readings.raw`` -> :func:`extract` -> ``readings.clean`` -> :func:`transform` ->
``readings.enriched`` -> :func:`load` (into :data:`WAREHOUSE`).
"""

from services.etl.workers import TOPICS, WAREHOUSE, Warehouse, extract, load, transform

__all__ = ["TOPICS", "WAREHOUSE", "Warehouse", "extract", "load", "transform"]

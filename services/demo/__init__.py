"""The demo: both example services in one process, a scripted client, and a checked summary.

Run it with ``python -m services.demo`` (or ``bash scripts/demo``); see ``--help``.
"""

from services.demo.scenario import DemoOptions, DemoResult, Plan, Scenario

__all__ = ["DemoOptions", "DemoResult", "Plan", "Scenario"]

"""Observability: OpenTelemetry tracing (optional extra ``tracing``), detailed metrics'
tallies (:mod:`common.observability.handler_metrics`, exposed by :mod:`common.ops.metrics`)
and structured logs.

Nothing here imports OpenTelemetry until tracing is switched on (:func:`tracing.enable` or
``COMMON_TRACING=1``); see the README sections "Tracing and logs" and "Health and metrics
routes".
"""

from __future__ import annotations

from common.observability.logs import (
    DeliveryLogFilter,
    JsonFormatter,
    bind_delivery,
    configure_json_logging,
    current_trace_id,
    enable_delivery_context,
    reset_delivery,
)

__all__ = [
    "DeliveryLogFilter",
    "JsonFormatter",
    "bind_delivery",
    "configure_json_logging",
    "current_trace_id",
    "enable_delivery_context",
    "reset_delivery",
]

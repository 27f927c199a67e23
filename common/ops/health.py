"""The operations router: ``/health/live``, ``/health/ready`` and ``/metrics``.

Mount it in the service's app::

    pool = WorkerPool(UserWorker, settings)
    app = FastAPI(lifespan=pool.lifespan)
    app.include_router(ops_router(pool))

``/health/live`` answers 200 while the process serves requests. ``/health/ready`` answers 200
when Redis answers, the consumer groups exist, the workers run and no outbox is stuck, and 503
with the reasons otherwise (see :mod:`common.ops.readiness`). ``/metrics`` is the Prometheus
exposition (:mod:`common.ops.metrics`), or 501 when ``prometheus-client`` is not installed.
With ``dashboard=True`` it also serves the web dashboard under ``/ops/``
(:mod:`common.ops.dashboard`): read-only unless ``dashboard_auth`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from common.ops.readiness import check_ready

__all__ = ["ops_router"]


def ops_router(
    pools: Any | Sequence[Any],
    *,
    metrics: bool = True,
    ready_timeout_s: float = 1.0,
    dashboard: bool = False,
    dashboard_auth: Callable[..., Any] | None = None,
) -> APIRouter:
    """Health and metrics routes for one :class:`~common.workers.WorkerPool` or several.

    ``dashboard=True`` adds the dashboard (never there by default); its replay and purge
    routes depend on ``dashboard_auth`` (a FastAPI dependency) and answer 403 without it."""
    pool_list = list(pools) if isinstance(pools, (list, tuple)) else [pools]
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        result = await check_ready(pool_list, ready_timeout_s)
        body = {
            "status": "ready" if result.ready else "unavailable",
            "reason": "; ".join(result.reasons) or None,
            "checks": result.checks,
        }
        return JSONResponse(body, status_code=200 if result.ready else 503)

    if metrics:
        state: dict[str, Any] = {}

        @router.get("/metrics")
        async def metrics_route() -> Response:
            try:
                from common.ops import metrics as prom
            except ImportError:
                return PlainTextResponse(
                    "prometheus-client is not installed: "
                    "pip install 'redis-streams-common[metrics]'\n",
                    status_code=501,
                )
            if not state:
                state["registry"], state["collector"] = prom.metrics_registry(pool_list)
            body = await prom.render(state["registry"], state["collector"])
            return Response(body, media_type=prom.CONTENT_TYPE_LATEST)

    if dashboard:
        from common.ops.dashboard import add_dashboard

        add_dashboard(router, pool_list, dashboard_auth)
    elif dashboard_auth is not None:
        raise ValueError("dashboard_auth is given but dashboard is False: pass dashboard=True")
    return router

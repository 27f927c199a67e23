"""prometheus-client is optional: the core, the CLI and the health routes work without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from common import CommonAppSettings, WorkerPool
from common.ops import ops_router
from tests.integration.workers import CalcWorker

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_but_the_metrics_module_imports_prometheus_client() -> None:
    code = (
        "import sys, common, common.ops, common.cli, common.ops.health\n"
        "assert 'prometheus_client' not in sys.modules, 'imported eagerly'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


async def test_metrics_route_says_what_to_install_when_it_is_missing(
    settings: CommonAppSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delitem(sys.modules, "common.ops.metrics", raising=False)
    monkeypatch.delattr("common.ops.metrics", raising=False)
    app = FastAPI()
    app.include_router(ops_router(WorkerPool(CalcWorker, settings, num_workers=1)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        response = await http.get("/metrics")
        assert response.status_code == 501
        assert "redis-streams-common[metrics]" in response.text
        assert (await http.get("/health/live")).status_code == 200

"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The app runs in uvicorn on an ephemeral loopback port in a thread of its own; the test seeds
Redis, loads the page, and clicks. Chromium is required, not optional: without it this test
fails saying how to install it (``bash scripts/bootstrap --with-browser``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from playwright.async_api import Dialog, async_playwright, expect

from common import CommonAppSettings, WorkerPool
from common.ops import ops_router
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker
from tests.ops.dashboard_seed import AUTH_TOKEN, SCRIPT, board_settings, seed

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

basic = HTTPBasic()


def admin_only(credentials: Annotated[HTTPBasicCredentials, Depends(basic)]) -> None:
    if not secrets.compare_digest(credentials.password.encode(), AUTH_TOKEN.encode()):
        raise HTTPException(401, "admin only", headers={"WWW-Authenticate": "Basic"})


def chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(found, os.X_OK):
        pytest.fail(
            "the dashboard's browser test needs Debian's chromium package: "
            "run `bash scripts/bootstrap --with-browser` (or `apt-get install chromium`)",
            pytrace=False,
        )
    return found


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """``app`` in uvicorn on 127.0.0.1 (a port the kernel picks), in a thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        await wait_for(lambda: server.started or not thread.is_alive(), timeout=20)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await wait_for(lambda: not thread.is_alive(), timeout=20)
        sock.close()


async def test_the_page_shows_lag_live_and_replay_and_purge_clicks_work(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    executable = chromium()
    seeded = await seed(settings, redis)
    plain_id, script_id = seeded.dead_letter_ids
    pool = WorkerPool(CalcWorker, board_settings(settings), num_workers=1)
    app = FastAPI(lifespan=pool.lifespan)
    app.include_router(ops_router(pool, dashboard=True, dashboard_auth=admin_only))
    problems: list[str] = []
    confirmed: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        if dialog.type == "confirm":
            confirmed.append(dialog.message)
            await dialog.accept()
        else:  # an alert() would be markup from a payload running
            problems.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

    async with serve(app) as base, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = await browser.new_context(
                http_credentials={"username": "ops", "password": AUTH_TOKEN},
                viewport={"width": 1200, "height": 700},
            )
            page = await context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", on_dialog)

            await page.goto(f"{base}/ops/")
            users = page.locator('tr[data-stream="users"][data-group="users-group"]')
            await expect(users.locator('td[data-col="lag"]')).to_have_text("2")
            await expect(users.locator('td[data-col="pending"]')).to_have_text("1")
            calc = page.locator('tr[data-stream="calc"][data-group="calc-group"]')
            await expect(calc.locator('td[data-col="dead-letters"]')).to_have_text("2")

            await redis.xadd(seeded.users_stream, {"action": "{}"})  # the page polls: lag 3
            await expect(users.locator('td[data-col="lag"]')).to_have_text("3", timeout=15_000)
            await expect(page.locator("#state")).to_contain_text("live, updated")

            await calc.locator('td[data-col="dead-letters"] a').click()
            await expect(page.locator("#dead-letters tbody tr")).to_have_count(2)
            script_row = page.locator(f'tr[data-id="{script_id}"]')
            await expect(script_row.locator('td[data-col="error"]')).to_contain_text(SCRIPT)
            await expect(script_row.locator("summary")).to_contain_text(SCRIPT)  # data, as text
            await script_row.locator("summary").click()
            await expect(script_row.locator("pre")).to_contain_text('"action_type": "calc.reject"')

            row = page.locator(f'tr[data-id="{plain_id}"]')
            await row.locator('button[data-verb="replay"]').click()
            await expect(row.locator(".result")).to_contain_text("replayed as ")
            new_id = (await row.locator(".result").inner_text()).removeprefix("replayed as ")

            async def replayed() -> bool:
                back = await redis.xrange(seeded.calc_stream, min=new_id, max=new_id)
                gone = not await redis.xrange(seeded.calc_dead_letters, min=plain_id, max=plain_id)
                return bool(back) and gone

            await wait_for(replayed)
            [(_, fields)] = await redis.xrange(seeded.calc_stream, min=new_id, max=new_id)
            assert b"bad input, never retry" in fields[b"action"]

            await script_row.locator('button[data-verb="purge"]').click()
            await expect(script_row.locator(".result")).to_have_text("purged")

            async def purged() -> bool:
                return int(await redis.xlen(seeded.calc_dead_letters)) == 0

            await wait_for(purged)
            assert confirmed == [f"Delete dead letter {script_id} for good?"]
            await page.reload()
            await expect(page.locator("#shown")).to_have_text("0 shown of 0")
        finally:
            await browser.close()
    assert problems == []
    assert await redis.xlen(seeded.calc_stream) == 3


def test_without_chromium_the_browser_test_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(pytest.fail.Exception, match=r"bootstrap --with-browser"):
        chromium()

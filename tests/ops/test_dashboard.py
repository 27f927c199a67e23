"""The web dashboard over HTTP: opt-in, what it shows, and replay/purge behind the app's auth."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Header, HTTPException

from common import CommonAppSettings, WorkerPool
from common.clients.queue_manager import QueueManager
from common.ops import ops_router
from tests.integration.workers import CalcWorker
from tests.ops.dashboard_seed import (
    AUTH_TOKEN,
    PARTITIONS,
    SCRIPT,
    Seeded,
    board_settings,
    seed,
    seed_partitioned,
)

CSRF = {"X-Ops-Dashboard": "1"}
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def require_token(x_token: Annotated[str | None, Header()] = None) -> None:
    """The app's auth dependency in these tests: a fixed token."""
    if x_token != AUTH_TOKEN:
        raise HTTPException(401, "a valid X-Token is required")


@pytest.fixture
async def seeded(settings: CommonAppSettings, redis: aioredis.Redis) -> Seeded:
    return await seed(settings, redis)


Make = Callable[..., Any]


@pytest.fixture
async def board(settings: CommonAppSettings) -> AsyncIterator[WorkerPool[CalcWorker]]:
    """The started pool the dashboard reads Redis through."""
    async with WorkerPool(CalcWorker, board_settings(settings), num_workers=1) as pool:
        yield pool


def _http(pool: Any, **options: Any) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(ops_router(pool, **options))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops")


def _row(html: str, stream: str, group: str) -> str:
    found = re.search(rf'<tr data-stream="{stream}" data-group="{group}">(.*?)</tr>', html)
    assert found, f"no row for {stream}/{group}"
    return found.group(1)


def _cell(row: str, column: str) -> str:
    found = re.search(rf'<td data-col="{column}"[^>]*>(.*?)</td>', row)
    assert found, f"no {column} cell in {row}"
    return re.sub(r"<[^>]+>", "", found.group(1))


async def _entry(redis: aioredis.Redis, stream: str, entry_id: str) -> dict[bytes, bytes] | None:
    rows = await redis.xrange(stream, min=entry_id, max=entry_id)
    return rows[0][1] if rows else None


async def test_the_dashboard_is_off_by_default(board: Any, seeded: Seeded) -> None:
    async with _http(board) as http:
        assert (await http.get("/health/live")).status_code == 200
        for path in ("/ops/", "/ops/api/status", "/ops/dlq/calc", "/ops/api/dlq/calc"):
            assert (await http.get(path)).status_code == 404, path
        body = {"ids": seeded.dead_letter_ids[:1]}
        replay = await http.post("/ops/api/dlq/calc/replay", json=body, headers=CSRF)
        assert replay.status_code == 404
    with pytest.raises(ValueError, match="pass dashboard=True"):
        ops_router(board, dashboard_auth=require_token)


async def test_the_overview_shows_lag_pending_and_dead_letters(board: Any, seeded: Seeded) -> None:
    async with _http(board, dashboard=True) as http:
        page = await http.get("/ops/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        users = _row(page.text, "users", "users-group")
        assert _cell(users, "lag") == "2"
        assert _cell(users, "length") == "3"
        assert _cell(users, "pending") == "1"
        assert re.search(r'<tr data-consumer="users-1">.*?data-col="pending">1<', page.text)
        calc = _row(page.text, "calc", "calc-group")
        assert _cell(calc, "lag") == "0"
        assert _cell(calc, "dead-letters") == "2"
        assert 'href="dlq/calc"' in calc
        assert "s3cret" not in page.text and "default:***@" in page.text
        assert ">partition</th>" not in page.text  # no service has partitions

        api = await http.get("/ops/api/status")
        assert api.status_code == 200
        body = api.json()
        streams = {s["name"]: s for s in body["streams"]}
        [group] = streams["users"]["groups"]
        assert (group["lag"], group["pending"], group["consumers"][0]["name"]) == (2, 1, "users-1")
        assert streams["calc"]["dead_letters"] == 2
        assert body["actions_enabled"] is False
        assert 'data-consumer="users-1"' in body["html"]  # the tables the page swaps in
        assert "s3cret" not in api.text


async def test_without_dashboard_auth_it_is_read_only(
    board: Any, seeded: Seeded, redis: aioredis.Redis
) -> None:
    async with _http(board, dashboard=True) as http:
        page = await http.get("/ops/dlq/calc")
        assert page.status_code == 200
        assert page.text.count('data-verb="replay" disabled') == 2
        assert "Read-only" in page.text
        body = {"ids": seeded.dead_letter_ids[:1]}
        for verb in ("replay", "purge"):
            response = await http.post(f"/ops/api/dlq/calc/{verb}", json=body, headers=CSRF)
            assert response.status_code == 403
            assert "no dashboard_auth" in response.json()["detail"]
    assert await redis.xlen(seeded.calc_dead_letters) == 2
    assert await redis.xlen(seeded.calc_stream) == 2


async def test_the_auth_dependency_and_the_csrf_header_guard_replay_and_purge(
    board: Any, seeded: Seeded, redis: aioredis.Redis
) -> None:
    body = {"ids": seeded.dead_letter_ids[:1]}
    token = {"X-Token": AUTH_TOKEN}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        page = await http.get("/ops/dlq/calc")
        assert 'data-verb="replay" disabled' not in page.text
        for verb in ("replay", "purge"):
            url = f"/ops/api/dlq/calc/{verb}"
            rejected = await http.post(url, json=body, headers=CSRF)
            assert rejected.status_code == 401
            assert rejected.json()["detail"] == "a valid X-Token is required"
            wrong = await http.post(url, json=body, headers={**CSRF, "X-Token": "guess"})
            assert wrong.status_code == 401
            no_header = await http.post(url, json=body, headers=token)
            assert no_header.status_code == 403
            assert "X-Ops-Dashboard" in no_header.json()["detail"]
            foreign = {**CSRF, **token, "Origin": "https://evil.example"}
            cross = await http.post(url, json=body, headers=foreign)
            assert cross.status_code == 403
            assert "cross-origin" in cross.json()["detail"]
            bad_id = await http.post(url, json={"ids": ["x"]}, headers={**CSRF, **token})
            assert bad_id.status_code == 422
    assert await redis.xlen(seeded.calc_dead_letters) == 2


async def test_replay_moves_the_entry_back_onto_its_stream(
    board: Any, seeded: Seeded, redis: aioredis.Redis
) -> None:
    record_id = seeded.dead_letter_ids[0]
    [record] = await redis.xrange(seeded.calc_dead_letters, min=record_id, max=record_id)
    original = record[1][b"original"]
    headers = {**CSRF, "X-Token": AUTH_TOKEN, "Origin": "http://ops"}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        response = await http.post(
            "/ops/api/dlq/calc/replay", json={"ids": [record_id]}, headers=headers
        )
        assert response.status_code == 200, response.text
        result = response.json()
        new_id = result["replayed"][record_id]
        assert result["missing"] == [] and result["refused"] == {}
        assert await _entry(redis, seeded.calc_dead_letters, record_id) is None
        assert await _entry(redis, seeded.calc_stream, new_id) == {b"action": original}
        assert await redis.xlen(seeded.calc_dead_letters) == 1

        status = (await http.get("/ops/api/status")).json()
        [calc] = [s for s in status["streams"] if s["name"] == "calc"]
        assert (calc["length"], calc["groups"][0]["lag"], calc["dead_letters"]) == (3, 1, 1)

        again = await http.post(
            "/ops/api/dlq/calc/replay", json={"ids": [record_id]}, headers=headers
        )
        assert again.json() == {"replayed": {}, "missing": [record_id], "refused": {}}
    assert await redis.xlen(seeded.calc_stream) == 3


async def test_purge_deletes_the_record(board: Any, seeded: Seeded, redis: aioredis.Redis) -> None:
    record_id, other = seeded.dead_letter_ids
    headers = {**CSRF, "X-Token": AUTH_TOKEN}
    proxied = {**headers, "Origin": "https://ops.example", "X-Forwarded-Host": "ops.example"}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        response = await http.post(
            "/ops/api/dlq/calc/purge", json={"ids": [record_id]}, headers=proxied
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"deleted": 1, "missing": []}
        assert await _entry(redis, seeded.calc_dead_letters, record_id) is None
        assert await _entry(redis, seeded.calc_dead_letters, other) is not None
        assert await redis.xlen(seeded.calc_stream) == 2  # nothing put back
        listed = (await http.get("/ops/api/dlq/calc")).json()
        assert [r["id"] for r in listed["records"]] == [other]
        assert listed["total"] == 1


def _partition_row(html: str, stream: str, partition: int) -> str:
    found = re.search(
        rf'<tr data-stream="{stream}" data-partition="{partition}"[^>]*>(.*?)</tr>', html
    )
    assert found, f"no row for {stream} partition {partition}"
    return found.group(1)


async def test_a_partitioned_service_shows_its_partitions_and_replays_onto_the_right_one(
    board: Any, settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    await seed_partitioned(settings, redis)
    queues = QueueManager(settings.queue_prefix, settings.environment)
    headers = {**CSRF, "X-Token": AUTH_TOKEN}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        overview = (await http.get("/ops/")).text
        assert '<th class="num">partition</th>' in overview
        rows = [_partition_row(overview, "calc", k) for k in range(PARTITIONS)]
        assert [_cell(row, "partition") for row in rows] == ["0", "1", "2"]
        assert [_cell(row, "length") for row in rows] == ["1", "1", "2"]
        assert [_cell(row, "dead-letters") for row in rows] == ["0", "1", "2"]
        assert all('href="dlq/calc"' in row for row in rows)
        status = (await http.get("/ops/api/status")).json()
        parts = [(s["partition"], s["stream"]) for s in status["streams"] if s["name"] == "calc"]
        assert parts == [(k, queues.action_stream("calc", k)) for k in range(PARTITIONS)]

        listed = (await http.get("/ops/api/dlq/calc")).json()
        assert listed["total"] == 3
        assert listed["dead_letter_streams"] == [
            queues.dead_letter_stream("calc", k) for k in range(PARTITIONS)
        ]
        records = listed["records"]
        assert sorted(r["partition"] for r in records) == [1, 2, 2]
        for r in records:
            assert r["name"] == f"{r['partition']}:{r['id']}"
            assert r["stream"] == queues.action_stream("calc", r["partition"])
        page = (await http.get("/ops/dlq/calc")).text
        assert "the dead letters of the 3 partitions of calc" in page
        for r in records:
            assert f'<tr data-id="{r["name"]}">' in page
        assert re.search(r'<span id="shown">3 shown of 3</span>', page)

        second = next(r for r in records if r["partition"] == 2)
        response = await http.post(
            "/ops/api/dlq/calc/replay", json={"ids": [second["name"]]}, headers=headers
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["missing"] == [] and result["refused"] == {}
        new_id = result["replayed"][second["name"]]
    on_two = await _entry(redis, queues.action_stream("calc", 2), new_id)
    assert on_two == {b"action": second["original"].encode()}
    lengths = [await redis.xlen(queues.action_stream("calc", k)) for k in range(PARTITIONS)]
    dead = [await redis.xlen(queues.dead_letter_stream("calc", k)) for k in range(PARTITIONS)]
    assert (lengths, dead) == ([1, 1, 3], [0, 1, 1])
    assert await _entry(redis, queues.dead_letter_stream("calc", 2), second["id"]) is None


async def test_purge_takes_the_record_of_one_partition_when_two_share_its_id(
    board: Any, settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    for k in range(PARTITIONS):
        await redis.xgroup_create(queues.action_stream("job", k), "job-group", mkstream=True)
    for k in (0, 1):
        record = {"original": b"{}", "reason": "malformed", "stream": f"p{k}"}
        await redis.xadd(queues.dead_letter_stream("job", k), record, id="1000-0")
    headers = {**CSRF, "X-Token": AUTH_TOKEN}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        listed = (await http.get("/ops/api/dlq/job")).json()
        assert [(r["name"], r["stream"]) for r in listed["records"]] == [
            ("1000-0", "p0"),
            ("1:1000-0", "p1"),
        ]
        url = "/ops/api/dlq/job/purge"
        purged = await http.post(url, json={"ids": ["1:1000-0"]}, headers=headers)
        assert purged.status_code == 200, purged.text
        assert purged.json() == {"deleted": 1, "missing": []}
        assert await redis.xlen(queues.dead_letter_stream("job", 0)) == 1
        assert await redis.xlen(queues.dead_letter_stream("job", 1)) == 0

        again = await http.post(url, json={"ids": ["1:1000-0", "2:1000-0"]}, headers=headers)
        assert again.json() == {"deleted": 0, "missing": ["1:1000-0", "2:1000-0"]}
        for bad in ("x:1000-0", "0:1000-0", "01:1000-0"):
            refused = await http.post(url, json={"ids": [bad]}, headers=headers)
            assert refused.status_code == 422, bad
        left = (await http.get("/ops/api/dlq/job")).json()
        assert [r["name"] for r in left["records"]] == ["1000-0"]
    assert await redis.xlen(queues.dead_letter_stream("job", 0)) == 1


async def test_payloads_and_errors_are_escaped(board: Any, seeded: Seeded) -> None:
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        page = await http.get("/ops/dlq/calc")
    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page.text
    scripts = re.findall(r"<script[ >]", page.text)
    assert len(scripts) == 1  # the page's own, nothing from the payload
    shown = re.search(r'<span id="shown">(.*?)</span>', page.text)
    assert shown and shown.group(1) == "2 shown of 2"
    assert page.text.count("NonRetryableError") == 2


async def test_unknown_names_and_a_pool_not_started(board: Any, seeded: Seeded) -> None:
    async with _http(board, dashboard=True) as http:
        page = await http.get("/ops/dlq/nosuch")
        assert page.status_code == 404
        assert "unknown service &#x27;nosuch&#x27;" in page.text
        api = await http.get("/ops/api/dlq/nosuch")
        assert api.status_code == 404 and "unknown service" in api.json()["detail"]
        bad = await http.get("/ops/api/dlq/not%20a%20name")
        assert bad.status_code == 404 and "is not a service name" in bad.json()["detail"]
    stopped = WorkerPool(CalcWorker, board_settings(board.settings), num_workers=1)
    async with _http(stopped, dashboard=True) as http:
        api = await http.get("/ops/api/status")
        assert api.status_code == 503
        assert api.json() == {"detail": "no Redis connection: the worker pool is not started"}
        page = await http.get("/ops/")
        assert page.status_code == 503 and "the worker pool is not started" in page.text


async def test_a_topic_groups_dead_letters_replay_to_every_group_only_when_asked(
    board: Any, settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    topic = "dash.orders"
    stream = queues.topic_stream(topic)
    event = orjson.dumps({"name": topic, "event_id": "e-1", "data": {"order": 7}}).decode()
    for group in ("billing", "shipping"):
        await redis.xgroup_create(stream, group, id="$", mkstream=True)
    await redis.xadd(stream, {"event": event})
    dead_letters = queues.topic_dead_letter_stream(topic, "billing")
    record = {
        "original": orjson.dumps({"event": event}),
        "error": orjson.dumps({"error_type": "RuntimeError", "message": "tax table missing"}),
        "reason": "max_retries",
        "retries": "2",
        "stream": stream,
    }
    record_id = (await redis.xadd(dead_letters, record)).decode()
    headers = {**CSRF, "X-Token": AUTH_TOKEN}
    async with _http(board, dashboard=True, dashboard_auth=require_token) as http:
        overview = (await http.get("/ops/")).text
        billing = _row(overview, topic, "billing")
        assert _cell(billing, "dead-letters") == "1"
        assert 'href="dlq/dash.orders?group=billing"' in billing
        assert _cell(_row(overview, topic, "shipping"), "dead-letters") == "0"

        page = await http.get("/ops/dlq/dash.orders", params={"group": "billing"})
        assert page.status_code == 200
        assert 'data-other-groups="shipping"' in page.text
        assert "tax table missing" in page.text and "{&quot;order&quot;:7}" in page.text
        no_group = await http.get("/ops/api/dlq/dash.orders")
        assert no_group.status_code == 400 and "billing, shipping" in no_group.json()["detail"]

        url = "/ops/api/dlq/dash.orders/replay"
        body: dict[str, Any] = {"ids": [record_id], "group": "billing"}
        refused = await http.post(url, json=body, headers=headers)
        assert refused.status_code == 409
        assert "(shipping) that would get the events again" in refused.json()["detail"]
        assert await redis.xlen(dead_letters) == 1 and await redis.xlen(stream) == 1

        done = await http.post(url, json={**body, "all_groups": True}, headers=headers)
        assert done.status_code == 200, done.text
        new_id = done.json()["replayed"][record_id]
    assert await redis.xlen(dead_letters) == 0
    assert await _entry(redis, stream, new_id) == {b"event": event.encode()}


async def test_the_readme_snippet_serves_the_dashboard_behind_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's "Dashboard" example as printed, on the embedded memory:// server."""
    section = README.split("### Dashboard\n", 1)[1].split("\n### ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.setenv("OPS_PASSWORD", "correct horse")
    monkeypatch.setenv("QUEUE_PREFIX", "readme" + uuid.uuid4().hex[:8])
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    app: FastAPI = namespace["app"]
    body = {"ids": ["1-1"]}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            page = await http.get("/ops/")
            assert page.status_code == 200
            assert 'data-stream="users"' in page.text
            url = "/ops/api/dlq/users/purge"
            anonymous = await http.post(url, json=body, headers=CSRF)
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"].startswith("Basic")
            wrong = await http.post(url, json=body, headers=CSRF, auth=("ops", "guess"))
            assert wrong.status_code == 401
            ok = await http.post(url, json=body, headers=CSRF, auth=("ops", "correct horse"))
            assert ok.status_code == 200
            assert ok.json() == {"deleted": 0, "missing": ["1-1"]}

"""The README is the front door: its quickstart runs and its settings table is complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from common.config import CommonAppSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs_and_prints_the_greeting() -> None:
    block = re.search(r"## Quickstart\n+```python\n(.*?)```", README, re.S)
    assert block is not None
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello, Ada!"


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == set(CommonAppSettings.model_fields)


def test_the_two_commands_exist() -> None:
    for script in ("scripts/demo", "scripts/test"):
        assert f"bash {script}" in README
        assert (ROOT / script).exists()
    assert "bash scripts/test" in (ROOT / ".ci/run").read_text()


def test_the_routing_examples_go_where_the_readme_says() -> None:
    from common import DomainAction, QueueManager

    qm = QueueManager("app", "dev")
    routing = README.split("**Routing.**", 1)[1].split("\n\n", 1)[0]
    for action in (
        DomainAction(action_type="user.create"),
        DomainAction(action_type="user.create", target_service="accounts"),
    ):
        assert action.target_service is not None
        assert f"`{qm.action_stream(action.target_service)}`" in routing


async def test_the_fastapi_snippet_runs_its_pool_in_the_lifespan() -> None:
    """The quickstart's worker and the FastAPI snippet, through httpx's ASGI transport on
    memory://: the lifespan starts the pool, a route calls the workers, the lifespan stops."""
    import httpx

    quickstart = re.search(r"## Quickstart\n+```python\n(.*?)```", README, re.S)
    snippet = re.search(r"In a FastAPI service.*?```python\n(.*?)```", README, re.S)
    assert quickstart is not None and snippet is not None
    namespace: dict[str, object] = {}
    exec(quickstart.group(1).split("async def main")[0], namespace)
    exec(snippet.group(1), namespace)
    app, pool = namespace["app"], namespace["pool"]
    from fastapi import FastAPI

    from common import BaseRedisClient, DomainAction, WorkerPool

    assert isinstance(app, FastAPI) and isinstance(pool, WorkerPool)

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        client = BaseRedisClient("api", pool.redis, pool.settings)
        try:
            reply = await client.send_action_pseudo_sync(
                DomainAction(action_type="greeter.hello", data={"name": name}), timeout=5
            )
        finally:
            await client.close()
        return {"greeting": reply.data["greeting"]}

    async with app.router.lifespan_context(app):
        assert pool.running
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            response = await http.get("/hello/Ada")
    assert response.json() == {"greeting": "Hello, Ada!"}
    assert not pool.running


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _snippets(section: str) -> list[tuple[str, str | None]]:
    """Each ```python block of ``section``, with the ```text block right after it (what it
    prints), if any."""
    found = re.findall(r"```python\n(.*?)```(?:\n\n[^`]*?```text\n(.*?)```)?", section, re.S)
    return [(code, printed or None) for code, printed in found]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_every_declarative_example_runs(tmp_path: Path) -> None:
    """Every example of "Declarative workers and events": scripts run and print what the
    README says (in any line order); a block defining tests runs under pytest."""
    snippets = _snippets(_section("Declarative workers and events"))
    assert len(snippets) >= 2
    for n, (code, printed) in enumerate(snippets):
        if "def test_" in code:
            path = tmp_path / f"test_readme_snippet_{n}.py"
            path.write_text(code)
            result = _run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-o", "asyncio_mode=auto", str(path)],
                tmp_path,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            assert re.search(r"\b[1-9]\d* passed\b", result.stdout), result.stdout
        else:
            result = _run([sys.executable, "-c", code], ROOT)
            assert result.returncode == 0, result.stderr
            if printed is not None:
                assert sorted(result.stdout.split("\n")) == sorted(printed.split("\n"))

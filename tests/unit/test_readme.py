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

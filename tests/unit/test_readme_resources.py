"""The README's shared-resources example runs as printed (on the embedded memory://)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_shared_resources_example_runs_and_counts_once_across_workers() -> None:
    section = README.split("### Shared resources", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    result = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8"


def test_health_section_lists_every_field() -> None:
    from common.workers.stats import WorkerStats

    table = README.split("### Health", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", table))
    expected = set(WorkerStats.__dataclass_fields__) | {
        "service",
        "stream",
        "running",
        "num_workers",
        "restarts",
        "workers",
        "consumer",
    }
    assert expected <= documented, expected - documented

"""Package metadata that installs quietly: an SPDX licence on a setuptools that reads it.

A ``license = { text = ... }`` table (or licence classifiers) makes setuptools >= 77 print a
deprecation banner several times per install; the SPDX string needs setuptools >= 77."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def test_the_licence_is_an_spdx_expression() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_the_build_backend_reads_spdx_licences() -> None:
    requires = _pyproject()["build-system"]["requires"]
    [setuptools] = [r for r in requires if re.match(r"setuptools\b", r)]
    match = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert match is not None and int(match[1]) >= 77

"""``common list``, ``common docs`` (valid AsyncAPI 3.0) and ``common generate worker``."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from common.messaging import registry
from tests.ops.conftest import Invoke

# The official AsyncAPI 3.0.0 JSON schema ("3.0.0-without-$id.json" of the npm package
# @asyncapi/specs 6.11.1, Apache-2.0), minified and gzipped.
SCHEMA = Path(__file__).parent.parent / "data" / "asyncapi-3.0.0.schema.json.gz"


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """What a test imports registers anew (the sample module is imported afresh each time)."""
    before = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(before)
    sys.modules.pop("tests.ops.sample_workers", None)


def _validate(document: dict[str, Any]) -> None:
    schema = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    jsonschema.Draft7Validator(schema).validate(document)


async def test_list_shows_each_worker_with_topics_group_concurrency_retries(cli: Invoke) -> None:
    result = await cli("list", "tests.ops.sample_workers", "--json")
    assert result.exit_code == 0, result.output
    by_name = {t["name"].rsplit(".", 1)[-1]: t for t in json.loads(result.stdout)}
    bill, archive = by_name["bill"], by_name["archive"]
    assert (bill["topics"], bill["output_topics"], bill["group"]) == (
        ["opsdemo.orders"],
        ["opsdemo.processed"],
        "opsdemo-billing",
    )
    assert (bill["concurrency"], bill["max_retries"], bill["kind"]) == (10, 3, "worker")
    assert bill["handlers"][0]["input_schema"].endswith("sample_workers.OrderIn")
    assert (archive["concurrency"], archive["consumers"]) == (5, 2)
    assert archive["group"].endswith("sample_workers.archive")
    text = await cli("list", "tests.ops.sample_workers")
    assert "Input:  opsdemo.orders" in text.stdout
    assert "Output: opsdemo.processed" in text.stdout
    assert "Concurrency: 10" in text.stdout and "Retries: 3" in text.stdout


async def test_list_of_a_package_that_does_not_import_is_one_line(cli: Invoke) -> None:
    result = await cli("list", "tests.ops.no_such_module")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot import 'tests.ops.no_such_module'")


async def test_docs_is_a_valid_asyncapi_3_document_with_the_schemas(
    cli: Invoke, tmp_path: Path
) -> None:
    out = tmp_path / "asyncapi.json"
    result = await cli(
        "docs",
        "tests.ops.sample_workers",
        "--service",
        "job=tests.ops.test_dlq:RepairableWorker",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    _validate(document)
    assert document["asyncapi"] == "3.0.0"
    orders = document["channels"]["opsdemo_orders"]
    assert orders["address"].endswith("{opsdemo.orders}:topic")
    schemas = document["components"]["schemas"]
    assert schemas["OrderIn"]["properties"]["order_id"]["type"] == "integer"
    assert schemas["OrderOut"]["required"] == ["order_id", "total"]
    actions = {
        m["name"] for m in document["components"]["messages"].values() if m["name"][:4] == "job."
    }
    assert actions == {"job.run", "job.reject"}
    actions_ops = [o for o in document["operations"].values() if o["action"] == "send"]
    assert actions_ops and actions_ops[0]["channel"] == {"$ref": "#/channels/opsdemo_processed"}
    with pytest.raises(jsonschema.ValidationError):  # the schema does check: a broken one fails
        _validate({**document, "operations": {"x": {"action": "fly"}}})


async def test_docs_bad_service_spec_is_one_line(cli: Invoke) -> None:
    for spec, expected in (
        ("job", "error: --service 'job': expected NAME=package.module:WorkerClass"),
        ("job=tests.ops.nosuch:X", "error: cannot import 'tests.ops.nosuch:X'"),
        ("job=tests.ops.sample_workers:OrderIn", "error: 'tests.ops.sample_workers:OrderIn'"),
    ):
        result = await cli("docs", "--service", spec)
        assert result.exit_code == 1, spec
        [line] = result.stderr.splitlines()
        assert line.startswith(expected), line


@pytest.mark.parametrize("retry", [False, True])
async def test_generated_worker_and_test_pass_as_generated(
    cli: Invoke, tmp_path: Path, retry: bool
) -> None:
    args = ["generate", "worker", "send_invoice", "--topic", "invoices.due", "--workers", "4"]
    result = await cli(*args, *(["--retry"] if retry else []), "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    module = (tmp_path / "send_invoice.py").read_text()
    assert "@worker('invoices.due', concurrency=4" in module
    assert ("max_retries=3" in module) is retry
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    again = await cli(*args, "--dir", str(tmp_path))
    assert again.exit_code == 1 and "exists already" in again.stderr


async def test_generate_refuses_a_bad_name(cli: Invoke, tmp_path: Path) -> None:
    result = await cli("generate", "worker", "Send-Invoice", "--dir", str(tmp_path))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid worker name 'Send-Invoice'")

"""``python -m bench [--smoke] [--json] [--uvloop]``: the toolkit against raw redis-py.

Starts a private redis-server on an ephemeral loopback port, runs every scenario (ours and the
raw baseline alternately, medians of ``--runs``), and prints a table with ours/raw and the
targets; ``--json`` prints the results as JSON on stdout (the table then goes to stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

import hiredis
import orjson
import pydantic
import redis
from rich.console import Console

from bench.report import Row, print_table, to_json
from bench.suite import SCENARIOS, SMOKE, Sizes, Suite, server_version
from bench.workload import raw_client, run_async
from common.testing import RedisServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI), one run")
    parser.add_argument("--json", action="store_true", help="print JSON results on stdout")
    parser.add_argument("--uvloop", action="store_true", help="run every process on uvloop")
    parser.add_argument("--runs", type=int, help="runs per scenario (median); default 3")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--memory-count", type=int, help="actions for the memory scenario")
    return parser.parse_args(argv)


def machine_info(redis_version: str, use_uvloop: bool) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "redis_py": redis.__version__,
        "hiredis": hiredis.__version__,
        "pydantic": pydantic.VERSION,
        "loop": "uvloop" if use_uvloop else "asyncio",
        "platform": platform.platform(terse=True),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def run(args: argparse.Namespace, sizes: Sizes, console: Console) -> dict[str, Any]:
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(SCENARIOS):
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(only - set(SCENARIOS)))}")
    with RedisServer() as server:
        client = raw_client(server.url)
        version = await server_version(client)
        await client.aclose()
        machine = machine_info(version, args.uvloop)
        console.print(f"[dim]private redis-server {version} on {server.url}[/]")
        started = time.perf_counter()
        log = lambda m: console.print(f"[dim]{m}[/]")  # noqa: E731
        suite = Suite(server.url, sizes, args.uvloop, log, redis_pid=server.pid)
        rows: list[Row] = await suite.run(only)
        machine["loadavg_end"] = round(os.getloadavg()[0], 2)
        machine["seconds"] = round(time.perf_counter() - started, 1)
    print_table(rows, machine, console)
    return to_json(rows, machine, dataclasses.asdict(sizes))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    if args.memory_count:
        sizes = dataclasses.replace(sizes, memory=args.memory_count)
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console.width = 140  # logs and CI: do not wrap the table at 80 columns
    result = run_async(run(args, sizes, console), args.uvloop)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()

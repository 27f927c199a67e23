"""``python -m services.demo``: run the demo; exit 0 when every check passed, 1 otherwise.

On the embedded ``memory://`` server by default; set ``REDIS_URL`` to use a real one. Without
``QUEUE_PREFIX`` the run uses a fresh key prefix and deletes its streams at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

import orjson
from redis.exceptions import RedisError
from rich.console import Console
from rich.logging import RichHandler

from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager, redact_url
from common.config import CommonAppSettings, load_settings
from common.errors import ConfigurationError
from services.demo.examples import ExampleResult, run_examples
from services.demo.progress import follow
from services.demo.report import render, summary
from services.demo.scenario import DemoOptions, Scenario, unique_prefix
from services.inventory.worker import AuditUnavailableError

# Small retry delays and a short read block, so that the always-failing action reaches the
# dead-letter stream in a fraction of a second. Everything else comes from the environment.
DEMO_TUNING: dict[str, object] = {
    "max_retries": 3,
    "retry_initial_delay_s": 0.05,
    "retry_max_delay_s": 0.2,
    "worker_block_ms": 200,
    "shutdown_grace_s": 2.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.demo",
        description="Run the inventory and orders services in-process and drive them with a "
        "scripted client (memory:// unless REDIS_URL is set).",
    )
    parser.add_argument("--actions", type=int, default=300, help="async actions to send (300)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (32)")
    parser.add_argument("--timeout", type=float, default=25.0, help="give up after seconds (25)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    output.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="show worker warnings")
    parser.add_argument("--keep", action="store_true", help="keep a generated prefix's streams")
    args = parser.parse_args(argv)
    if args.actions < 1 or args.concurrency < 1 or args.timeout <= 0:
        parser.error("--actions and --concurrency must be >= 1, --timeout > 0")
    return args


def demo_settings() -> tuple[CommonAppSettings, bool]:
    """The demo's settings, and whether their queue prefix was generated for this run."""
    settings = load_settings(**DEMO_TUNING)
    if "queue_prefix" in settings.model_fields_set:  # QUEUE_PREFIX came from the environment
        return settings, False
    return settings.model_copy(update={"queue_prefix": unique_prefix()}), True


async def _delete_streams(settings: CommonAppSettings) -> None:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    keys = [
        key
        for service in ("inventory", "orders")
        for key in (queues.action_stream(service), queues.dead_letter_stream(service))
    ]
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await redis.delete(*keys)
        # The examples' topic streams (the prefix was generated for this run: all ours).
        topics = [key async for key in redis.scan_iter(match=f"{settings.queue_prefix}:*")]
        if topics:
            await redis.delete(*topics)


def _print_examples(examples: list[ExampleResult], console: Console) -> None:
    for example in examples:
        mark = "[green]ok[/]" if example.ok else "[bold red]FAIL[/]"
        console.print(f"{mark} [bold]{example.name}[/]")
        for line in example.lines:
            console.print(f"    {line}", highlight=False)


async def amain(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    out = Console()
    try:
        settings, generated = demo_settings()
    except ConfigurationError as exc:
        err.print(f"[bold red]{exc}[/]")
        return 2
    options = DemoOptions(
        actions=args.actions, concurrency=args.concurrency, timeout_s=args.timeout
    )
    scenario = Scenario(settings, options)
    where = redact_url(settings.redis_url)
    try:
        if not (args.quiet or args.json):
            err.print(
                f"demo: {options.actions} actions on {where} (prefix {settings.queue_prefix})"
            )
            async with follow(scenario, err):
                result = await scenario.run()
        else:
            result = await scenario.run()
        examples = await run_examples(settings, timeout=options.timeout_s)
    except (RedisError, OSError) as exc:
        err.print(f"[bold red]cannot use Redis at {where}:[/] {exc}", highlight=False)
        return 1
    examples_ok = all(e.ok for e in examples)
    if generated and not args.keep:
        with contextlib.suppress(Exception):
            await _delete_streams(settings)
    if args.json:
        data = summary(result)
        data["examples"] = [{"name": e.name, "ok": e.ok, "lines": e.lines} for e in examples]
        data["ok"] = data["ok"] and examples_ok
        sys.stdout.write(
            orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
        )
        return 0 if data["ok"] else 1
    ok = render(result, out)
    out.print("Declarative examples (services.etl, services.fanout, services.saga):")
    _print_examples(examples, out)
    return 0 if ok and examples_ok else 1


class _HideDeliberateFailures(logging.Filter):
    """The demo makes ``inventory.audit`` fail on purpose (to show retries and dead letters):
    its tracebacks are expected, and shown only with ``--verbose``."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, AuditUnavailableError)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.WARNING if args.verbose else logging.ERROR
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    if not args.verbose:
        handler.addFilter(_HideDeliberateFailures())
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())

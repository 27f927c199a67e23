"""A process running one declarative ``@worker`` (for the crash test): each run of the handler
is recorded in Redis (``<prefix>:runs``, a list of payload ids) before it sleeps 20 ms."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

import redis.asyncio as aioredis

from common.config import CommonAppSettings
from common.messaging import run_workers, worker


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = CommonAppSettings(
        redis_url=args.url,
        queue_prefix=args.prefix,
        service_name="crashy",
        visibility_timeout_s=1.0,
        claim_interval_s=0.2,
    )
    records = aioredis.Redis.from_url(args.url)

    @worker(topic="work.items", group_id="crash-group", concurrency=4)
    async def handle(item: dict[str, Any]) -> None:
        await records.rpush(f"{args.prefix}:runs", item["id"])
        await asyncio.sleep(0.02)

    async def serve() -> None:
        async with run_workers(handle, settings=settings):
            await asyncio.Event().wait()  # until killed

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])

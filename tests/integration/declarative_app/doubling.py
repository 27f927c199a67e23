"""``cli.numbers`` in, ``cli.doubled`` out."""

from __future__ import annotations

from typing import Any

from common.messaging import worker


@worker(topic="cli.numbers", output_topic="cli.doubled")
async def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload["n"], "doubled": payload["n"] * 2}

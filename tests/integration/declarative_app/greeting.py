"""``cli.names`` in, ``cli.greetings`` out (a class-based worker)."""

from __future__ import annotations

from typing import Any

from common.messaging import Worker


class Greeter(Worker):
    input_topic = "cli.names"
    output_topic = "cli.greetings"

    async def process(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"greeting": f"hello {payload['name']}"}

"""The stream keys of a read, found without asking the server (``COMMAND GETKEYS``)."""

from __future__ import annotations

from typing import Any

import pytest

from common.clients.cluster_client import stream_read_keys


@pytest.mark.parametrize(
    ("command", "args", "keys"),
    [
        ("XREADGROUP", ("GROUP", "g", "c", "COUNT", 10, "BLOCK", 5, "STREAMS", "a", ">"), ["a"]),
        ("xreadgroup", ("GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"), ["a", "b"]),
        (b"XREADGROUP", (b"GROUP", b"g", b"c", b"NOACK", b"STREAMS", b"{x}", b">"), [b"{x}"]),
        # a group or consumer named like a keyword is not taken for one
        ("XREADGROUP", ("GROUP", "STREAMS", "COUNT", "STREAMS", "s", ">"), ["s"]),
        ("XREAD", ("COUNT", 2, "STREAMS", "s1", "s2", "0", "0"), ["s1", "s2"]),
    ],
)
def test_the_keys_of_a_read_are_the_first_half_after_streams(
    command: Any, args: tuple[Any, ...], keys: list[Any]
) -> None:
    assert stream_read_keys(command, args) == keys


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("XACK", ("s", "g", "1-0")),  # not a read: redis-py's own way
        ("XREADGROUP", ("GROUP", "g", "c", "STREAMS", "a")),  # odd: malformed
        ("XREADGROUP", ("GROUP", "g", "c", "CLAIM", 5, "STREAMS", "a", ">")),  # unknown option
        ("XREADGROUP", ("GROUP", "g", "c", "COUNT", 1)),  # no STREAMS
    ],
)
def test_other_commands_and_unknown_forms_are_left_to_redis_py(
    command: str, args: tuple[Any, ...]
) -> None:
    assert stream_read_keys(command, args) is None

"""Key naming: one scheme, hash-tagged per service, and strict parsing of keys from messages."""

from __future__ import annotations

import re
import zlib
from collections import Counter

import pytest

from common.clients.queue_manager import MAX_PARTITIONS, KeyKind, QueueManager
from common.config import CommonAppSettings
from common.errors import ConfigurationError, InvalidKeyError

qm = QueueManager("app", "prod")


def test_names() -> None:
    assert qm.action_stream("users") == "app:prod:{users}:actions"
    assert qm.dead_letter_stream("users") == "app:prod:{users}:dlq"
    assert qm.reply_key("api", "abc123") == "app:prod:{api}:reply:abc123"
    assert qm.consumer_group("users") == "users-group"


def test_consumer_names_are_unique_and_follow_the_scheme() -> None:
    a, b = qm.consumer_name("users", "internal-0"), qm.consumer_name("users", "internal-0")
    assert a != b
    assert re.fullmatch(r"users-worker-internal-0-[0-9a-f]{8}", a)


def test_all_keys_of_a_service_share_a_hash_tag() -> None:
    keys = [qm.action_stream("users"), qm.dead_letter_stream("users"), qm.reply_key("users", "c")]
    assert {k[k.index("{") : k.index("}") + 1] for k in keys} == {"{users}"}


def test_parse_round_trips() -> None:
    assert qm.parse(qm.action_stream("users")).kind is KeyKind.ACTIONS
    parsed = qm.parse(qm.reply_key("api", "c1").encode())
    assert (parsed.kind, parsed.service, parsed.client_id) == (KeyKind.REPLY, "api", "c1")
    assert qm.parse(qm.dead_letter_stream("users")).kind is KeyKind.DEAD_LETTER


@pytest.mark.parametrize(
    "key",
    [
        "app:dev:{users}:actions",  # other environment
        "other:prod:{users}:actions",  # other prefix
        "app:prod:users:actions",  # no hash tag
        "app:prod:{users}:actions:extra",
        "app:prod:{users}:reply:",
        "session:secret",
        "app:prod:{Users}:actions",
        "",
        # A key is matched whole: nothing before, after or around it.
        "app:prod:{api}:reply:c1\n",  # trailing newline ('$' alone would accept it)
        "app:prod:{users}:actions\n",
        "\napp:prod:{api}:reply:c1",  # leading newline
        "app:prod:{api}:reply:c1\r\n",
        "app:prod:{api}:reply:c1\r",
        "app:prod:{api}:reply:c1 ",  # other whitespace
        " app:prod:{api}:reply:c1",
        "app:prod:{api}:reply:c1\t",
        "app:prod:{api}:reply:c1\x00",
        "app:prod:{api}:reply:c 1",
        "app:prod:{api}:reply:c1\u2028",
        "app:prod:{api}:reply:c1\u00a0",
        "app:prod:{api}:reply:c1:x",  # extra segment
        "app:prod:{api}:reply",  # no client
        "app:prod:{api}:reply:c.1",  # bad client character
        "app:prod:{api}:reply:" + "c" * 65,  # client id too long
        "app:prod:{users}:other",  # wrong kind
        "app:prod:{users}:Actions",
        "app:prod:{users}:",  # empty segments
        "app:prod:{}:actions",
        "app:prod::actions",
        "::{users}:actions",
        "app::{users}:actions",
        ":prod:{users}:actions",
        "app:prod:{users}",
        "app:prod:{users}:actions:",
        "xapp:prod:{users}:actions",  # prefix not whole
        "app:prodx:{users}:actions",  # environment not whole
        "app:prod:{users }:actions",
        "app:prod:{{users}}:actions",
        "app:prod:{1users}:actions",
        "app:prod:{" + "u" * 64 + "}:actions",  # service name too long
        "APP:PROD:{users}:actions",
    ],
)
def test_foreign_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        qm.parse(key)
    with pytest.raises(InvalidKeyError):
        qm.parse(key.encode())
    assert not qm.is_valid_target(key)


@pytest.mark.parametrize(
    "raw", [b"app:prod:{api}:reply:c1\n", b"app:prod:{api}:reply:c1\xff", b"\xff\xfe"]
)
def test_foreign_byte_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        qm.parse(raw)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t", "\x00"])
def test_names_given_in_code_are_matched_whole(suffix: str) -> None:
    with pytest.raises(InvalidKeyError):
        qm.action_stream("users" + suffix)
    with pytest.raises(InvalidKeyError):
        qm.dead_letter_stream("users" + suffix)
    with pytest.raises(InvalidKeyError):
        qm.reply_key("api", "c1" + suffix)
    with pytest.raises(InvalidKeyError):
        qm.consumer_group("users" + suffix)
    with pytest.raises(InvalidKeyError):
        QueueManager("app" + suffix, "prod")
    with pytest.raises(InvalidKeyError):
        QueueManager("app", "prod" + suffix)


def test_dead_letter_streams_are_not_targets() -> None:
    assert not qm.is_valid_target(qm.dead_letter_stream("users"))
    assert qm.is_valid_target(qm.action_stream("users"))


def test_invalid_names_are_refused() -> None:
    for bad in ("", "has space", "UPPER"):
        with pytest.raises(InvalidKeyError):
            qm.action_stream(bad)
    with pytest.raises(InvalidKeyError):
        QueueManager("bad prefix", "dev")


def test_partition_zero_is_the_action_stream_and_the_others_have_their_own_hash_tags() -> None:
    streams = qm.partition_streams("users", 3)
    assert streams == {
        "app:prod:{users}:actions": "app:prod:{users}:dlq",
        "app:prod:{users:1}:actions": "app:prod:{users:1}:dlq",
        "app:prod:{users:2}:actions": "app:prod:{users:2}:dlq",
    }
    assert qm.partition_streams("users", 1) == {
        qm.action_stream("users"): qm.dead_letter_stream("users")
    }


def test_partition_keys_parse_and_are_valid_targets() -> None:
    parsed = qm.parse("app:prod:{users:5}:actions")
    assert (parsed.kind, parsed.service, parsed.partition) == (KeyKind.ACTIONS, "users", 5)
    assert qm.parse("app:prod:{users:127}:dlq").partition == 127
    assert qm.parse("app:prod:{users}:actions").partition == 0
    assert qm.is_valid_target("app:prod:{users:5}:actions")
    assert not qm.is_valid_target("app:prod:{users:5}:dlq")


@pytest.mark.parametrize(
    "key",
    [
        "app:prod:{users:0}:actions",  # partition 0 has no suffix: one name per stream
        "app:prod:{users:01}:actions",
        "app:prod:{users:128}:actions",  # past MAX_PARTITIONS
        "app:prod:{users:-1}:actions",
        "app:prod:{users:1}:reply:abc",  # reply keys have no partition
        "app:prod:{users:}:actions",
    ],
)
def test_malformed_partition_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        qm.parse(key)
    assert not qm.is_valid_target(key)


def test_partition_numbers_out_of_range_are_refused() -> None:
    with pytest.raises(InvalidKeyError):
        qm.action_stream("users", MAX_PARTITIONS)
    with pytest.raises(InvalidKeyError):
        qm.action_stream("users", -1)


def test_partition_of_is_stable_and_spreads() -> None:
    # CRC-32 (not the salted hash()): the same partition in every process and version.
    assert QueueManager.partition_of("tenant-42", 6) == zlib.crc32(b"tenant-42") % 6
    assert QueueManager.partition_of(b"tenant-42", 6) == QueueManager.partition_of("tenant-42", 6)
    assert QueueManager.partition_of("anything", 1) == 0
    counts = Counter(QueueManager.partition_of(f"key-{i}", 6) for i in range(6000))
    assert set(counts) == set(range(6)) and min(counts.values()) > 800


def test_max_partitions_is_the_settings_bound() -> None:
    CommonAppSettings(stream_partitions=MAX_PARTITIONS)
    with pytest.raises(ConfigurationError):
        CommonAppSettings(stream_partitions=MAX_PARTITIONS + 1)
    with pytest.raises(ConfigurationError):
        CommonAppSettings(stream_partitions=0)

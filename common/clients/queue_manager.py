"""Every Redis key the toolkit uses is named here, and only here.

Scheme (``{service}`` is a Redis Cluster hash tag, so all keys of one service share a slot)::

    {prefix}:{env}:{service}:actions            action stream of a service (partition 0)
    {prefix}:{env}:{service}:dlq                dead-letter stream of a service (partition 0)
    {prefix}:{env}:{service:k}:actions          partition k >= 1 of the action stream
    {prefix}:{env}:{service:k}:dlq              dead letters of partition k
    {prefix}:{env}:{service}:reply:{client}     reply list of one client process
    {prefix}:{env}:{topic}:topic                topic stream (partition 0)
    {prefix}:{env}:{topic}:dlq:{group}          a subscriber group's dead letters on it
    {prefix}:{env}:{topic:k}:topic              partition k >= 1 of a topic (and its dlq:{group})
    {service}-group                             consumer group (not a key)
    {service}-worker-{suffix}-{short uuid}      consumer name (not a key)

Keys that arrive inside messages (``callback_queue_name``) are checked with :meth:`parse`:
a worker writes only to action streams and reply keys of its own prefix and environment.

Partitions (``stream_partitions`` P > 1): partition ``k`` of a service's action stream has the
hash tag ``{service:k}`` (partition 0 keeps ``{service}``, so P = 1 names exactly the keys it
always did), so the partitions spread over a cluster's masters while each partition's own keys
(stream, dead letters, delay and scheduled sets) still share one slot. Reply keys have no
partition. :meth:`QueueManager.partition_of` maps a partition key to its partition. Topics
(``topic_partitions``) follow the same rule: partition k of topic T has the hash tag ``{T:k}``.
"""

from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import dataclass
from enum import StrEnum

from common.errors import InvalidKeyError
from common.naming import (
    SERVICE_NAME,
    is_group_id,
    is_key_segment,
    is_service_name,
    is_topic_name,
)

__all__ = ["MAX_PARTITIONS", "KeyKind", "ParsedKey", "QueueManager"]

_CLIENT = r"[A-Za-z0-9_-]{1,64}"

MAX_PARTITIONS = 128
"""The most partitions a service's action stream may have (``stream_partitions``)."""
_PARTITION = r"[1-9][0-9]{0,2}"  # k >= 1 in a key (partition 0 has no suffix)
_TOPIC_TAG = re.compile(rf"(?P<topic>[a-z0-9._-]+)(?::(?P<partition>{_PARTITION}))?\}}:topic")


class KeyKind(StrEnum):
    ACTIONS = "actions"
    DEAD_LETTER = "dlq"
    REPLY = "reply"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key taken apart: its kind, its service, (for reply keys) its client id, and (for
    action and dead-letter streams) its partition."""

    kind: KeyKind
    service: str
    client_id: str | None = None
    partition: int = 0


class QueueManager:
    """Names keys for one ``prefix`` and ``environment``, and validates keys found in messages."""

    def __init__(self, prefix: str = "app", environment: str = "dev") -> None:
        if not is_key_segment(prefix):
            raise InvalidKeyError(f"invalid queue prefix {prefix!r}")
        if not is_key_segment(environment):
            raise InvalidKeyError(f"invalid environment {environment!r}")
        self.prefix = prefix
        self.environment = environment
        self._base = f"{prefix}:{environment}"
        # Matched whole (fullmatch): with '^...$' and match, a key ending in a newline would pass.
        self._pattern = re.compile(
            rf"{re.escape(self._base)}:\{{(?P<service>{SERVICE_NAME})"
            rf"(?::(?P<partition>{_PARTITION}))?\}}:"
            rf"(?:(?P<kind>actions|dlq)|reply:(?P<client>{_CLIENT}))"
        )

    def __repr__(self) -> str:
        return f"QueueManager(prefix={self.prefix!r}, environment={self.environment!r})"

    @staticmethod
    def _check_service(service: str) -> str:
        if not is_service_name(service):
            raise InvalidKeyError(f"invalid service name {service!r}")
        return service

    def _service_base(self, service: str, partition: int = 0) -> str:
        self._check_service(service)
        if partition == 0:
            return f"{self._base}:{{{service}}}"
        if not 0 < partition < MAX_PARTITIONS:
            raise InvalidKeyError(f"partition must be 0 to {MAX_PARTITIONS - 1}, not {partition}")
        return f"{self._base}:{{{service}:{partition}}}"

    def action_stream(self, service: str, partition: int = 0) -> str:
        """The stream a service's workers consume (partition ``partition`` of it)."""
        return f"{self._service_base(service, partition)}:actions"

    def dead_letter_stream(self, service: str, partition: int = 0) -> str:
        return f"{self._service_base(service, partition)}:dlq"

    def partition_streams(self, service: str, partitions: int) -> dict[str, str]:
        """Partitions ``0 .. partitions - 1`` of a service's action stream, each mapped to
        its dead-letter stream, in partition order."""
        return {
            self.action_stream(service, k): self.dead_letter_stream(service, k)
            for k in range(partitions)
        }

    @staticmethod
    def partition_of(key: str | bytes, partitions: int) -> int:
        """The partition of ``key`` among ``partitions``: CRC-32 of its UTF-8 bytes, modulo
        ``partitions``. Stable across processes and versions (unlike ``hash()``), so every
        sender puts one key on one partition."""
        if partitions <= 1:
            return 0
        raw = key.encode() if isinstance(key, str) else key
        return zlib.crc32(raw) % partitions

    def reply_key(self, service: str, client_id: str) -> str:
        """The list on which one client process of ``service`` collects its replies."""
        if not re.fullmatch(_CLIENT, client_id):
            raise InvalidKeyError(f"invalid client id {client_id!r}")
        return f"{self._service_base(service)}:reply:{client_id}"

    def topic_stream(self, topic: str, partition: int = 0) -> str:
        """The stream of a topic (``orders.created``), or of its partition ``partition``:
        every subscriber group reads it. Its hash tag is the topic (``{topic:k}`` for
        partition k >= 1), so each topic partition's own multi-key steps are legal on a
        cluster."""
        return f"{self._topic_base(topic, partition)}:topic"

    def topic_dead_letter_stream(self, topic: str, group: str, partition: int = 0) -> str:
        """Where a subscriber group's failures on ``topic`` (on its partition ``partition``)
        go (without a ``dlq_topic``)."""
        if not is_group_id(group):
            raise InvalidKeyError(f"invalid group id {group!r}")
        return f"{self._topic_base(topic, partition)}:dlq:{group}"

    def topic_partition_streams(self, topic: str, group: str, partitions: int) -> dict[str, str]:
        """Partitions ``0 .. partitions - 1`` of ``topic``'s stream, each mapped to
        ``group``'s dead-letter stream on it, in partition order."""
        return {
            self.topic_stream(topic, k): self.topic_dead_letter_stream(topic, group, k)
            for k in range(partitions)
        }

    def parse_topic_stream(self, key: str | bytes) -> tuple[str, int]:
        """``(topic, partition)`` of a topic stream's key, or :class:`InvalidKeyError`."""
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        head = f"{self._base}:{{"
        match = _TOPIC_TAG.fullmatch(text.removeprefix(head)) if text.startswith(head) else None
        if match is None or not is_topic_name(match["topic"]):
            raise InvalidKeyError(f"{text[:200]!r} is not a topic stream of {self._base}")
        partition = int(match["partition"] or 0)
        if partition >= MAX_PARTITIONS:
            raise InvalidKeyError(f"{text[:200]!r} is not a topic stream of {self._base}")
        return match["topic"], partition

    def _topic_base(self, topic: str, partition: int = 0) -> str:
        if not is_topic_name(topic):
            raise InvalidKeyError(
                f"invalid topic name {topic!r}: lowercase letters, digits, '.', '_' or '-'"
            )
        if partition == 0:
            return f"{self._base}:{{{topic}}}"
        if not 0 < partition < MAX_PARTITIONS:
            raise InvalidKeyError(f"partition must be 0 to {MAX_PARTITIONS - 1}, not {partition}")
        return f"{self._base}:{{{topic}:{partition}}}"

    def consumer_group(self, service: str) -> str:
        return f"{self._check_service(service)}-group"

    def consumer_name(self, service: str, suffix: str | None = None) -> str:
        """A consumer name unique to this worker instance."""
        tag = re.sub(r"[^A-Za-z0-9_.-]", "-", suffix) if suffix else "0"
        return f"{self._check_service(service)}-worker-{tag}-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def new_client_id() -> str:
        return uuid.uuid4().hex

    def parse(self, key: str | bytes) -> ParsedKey:
        """Take a key apart, or raise :class:`InvalidKeyError` if it is not one of ours."""
        if isinstance(key, bytes):
            try:
                key = key.decode()
            except UnicodeDecodeError:
                raise InvalidKeyError("key is not valid UTF-8") from None
        match = self._pattern.fullmatch(key)
        if match is None:
            raise InvalidKeyError(f"{key[:200]!r} is not a key of {self._base}")
        kind = KeyKind(match["kind"] or "reply")
        partition = int(match["partition"] or 0)
        if partition >= MAX_PARTITIONS or (partition and kind is KeyKind.REPLY):
            raise InvalidKeyError(f"{key[:200]!r} is not a key of {self._base}")
        return ParsedKey(kind, match["service"], match["client"], partition)

    def is_valid_target(self, key: str) -> bool:
        """True for keys a message may ask a worker to write to (action streams, reply keys)."""
        try:
            return self.parse(key).kind is not KeyKind.DEAD_LETTER
        except InvalidKeyError:
            return False

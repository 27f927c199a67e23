"""Operations: stream status, dead-letter repair, health and metrics (``common status``...).

``common.ops.metrics`` and ``common.ops.multiprocess`` need the optional ``prometheus-client``
(the ``metrics`` extra) and are imported only when used; everything else works without it.
"""

from common.ops.deadletters import DeadLetterFilter, DeadLetterRecord, ReplayResult
from common.ops.errors import OpsError, UnknownStreamError
from common.ops.health import ops_router
from common.ops.readiness import Readiness, check_ready
from common.ops.status import ConsumerStatus, GroupStatus, StreamStatus, collect_status
from common.ops.streams import StreamRef, add_stream_source, streams_to_report
from common.ops.topics import find_dead_letters, topic_streams

__all__ = [
    "ConsumerStatus",
    "DeadLetterFilter",
    "DeadLetterRecord",
    "GroupStatus",
    "OpsError",
    "Readiness",
    "ReplayResult",
    "StreamRef",
    "StreamStatus",
    "UnknownStreamError",
    "add_stream_source",
    "check_ready",
    "collect_status",
    "find_dead_letters",
    "ops_router",
    "streams_to_report",
    "topic_streams",
]

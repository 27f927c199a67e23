"""``common status`` and ``common dlq`` over a partitioned service, on a 3-master Redis Cluster
(the partitions' streams on different masters; discovery by SCAN of every master)."""

from __future__ import annotations

from tests.ops.test_partitioned_ops import (
    test_dlq_lists_replays_each_onto_its_partition_and_handles_them,
    test_equal_ids_in_two_partitions_are_told_apart_by_name,
    test_status_shows_each_partition_as_a_row_of_its_service,
)

__all__ = [
    "test_dlq_lists_replays_each_onto_its_partition_and_handles_them",
    "test_equal_ids_in_two_partitions_are_told_apart_by_name",
    "test_status_shows_each_partition_as_a_row_of_its_service",
]

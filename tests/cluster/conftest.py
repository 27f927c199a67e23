"""Fixtures of the cluster suite: a 3-master Redis Cluster and a Sentinel deployment, each
started once per session on ephemeral loopback ports; ``settings`` points at the cluster.

Test modules here re-export tests of the core (``from tests.integration.test_x import ...``):
pytest resolves their fixtures from this directory, so they run unchanged on the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.config import CommonAppSettings
from common.testing import RedisCluster, RedisSentinel, unique_settings
from tests.messaging.conftest import _restore_registry, producer
from tests.ops.conftest import cli

__all__ = ["_restore_registry", "cli", "producer"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A local 3-master Redis Cluster (no replicas) for the whole session."""
    with RedisCluster(masters=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master, a replica and one Sentinel; tests that fail it over leave it failed over."""
    with RedisSentinel(sentinels=1) as deployment:
        yield deployment


def _fast(**overrides: object) -> CommonAppSettings:
    return unique_settings(
        service_name="calc",
        worker_block_ms=50,
        num_internal_workers=2,
        retry_initial_delay_s=0.05,
        retry_max_delay_s=0.2,
        visibility_timeout_s=2.0,
        claim_interval_s=0.2,
        shutdown_grace_s=3.0,
        **overrides,
    )


@pytest.fixture
def settings(redis_cluster: RedisCluster) -> CommonAppSettings:
    """The core's test settings, on the cluster."""
    return _fast(redis_url=redis_cluster.url)


@pytest.fixture
def sentinel_settings(redis_sentinel: RedisSentinel) -> CommonAppSettings:
    return _fast(redis_url=redis_sentinel.url)

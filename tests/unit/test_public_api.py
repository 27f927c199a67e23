"""The public names that DESIGN.md fixes import from where it says."""

from __future__ import annotations

import importlib

import pytest

import common

CONTRACT = {
    "common.config": ["CommonAppSettings"],
    "common.models": ["DomainAction", "DomainActionResponse", "ErrorDetail"],
    "common.models.actions": ["DomainAction", "DomainActionResponse"],
    "common.clients": ["RedisManager", "QueueManager", "BaseRedisClient"],
    "common.clients.redis_manager": ["RedisManager"],
    "common.clients.queue_manager": ["QueueManager"],
    "common.clients.base_redis_client": ["BaseRedisClient"],
    "common.workers": ["BaseWorker", "WorkerPool", "RetryPolicy"],
    "common.workers.base_worker": ["BaseWorker"],
    "common.errors": [
        "NonRetryableError",
        "RetryLaterError",
        "ActionTimeoutError",
        "RemoteActionError",
        "CommonError",
    ],
}


@pytest.mark.parametrize("module", sorted(CONTRACT))
def test_contract_names_import(module: str) -> None:
    mod = importlib.import_module(module)
    for name in CONTRACT[module]:
        assert hasattr(mod, name), f"{module}.{name}"


@pytest.mark.parametrize(
    "module",
    [
        "common",
        "common.models",
        "common.clients",
        "common.workers",
        "common.errors",
        "common.config",
    ],
)
def test_all_lists_only_real_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == sorted(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"


def test_top_level_reexports() -> None:
    assert {
        "BaseWorker",
        "WorkerPool",
        "BaseRedisClient",
        "DomainAction",
        "CommonAppSettings",
        "RedisManager",
        "RetryPolicy",
    } <= set(common.__all__)


def test_errors_share_one_root_and_shadow_no_builtin() -> None:
    import builtins

    from common import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CommonError)
        assert not hasattr(builtins, name)

"""The code examples of seed 004 run with only their imports adjusted to ``common``.

(The seed's mock settings point at redis://localhost; here they point at the test server.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional  # noqa: UP035 - the seed's own spelling

import pytest
from fastapi import FastAPI

from common.clients.base_redis_client import BaseRedisClient
from common.clients.redis_manager import RedisManager
from common.config import CommonAppSettings
from common.models.actions import DomainAction, DomainActionResponse
from common.testing import RedisServer
from common.workers import BaseWorker
from common.workers.base_worker import BaseWorker as BaseWorkerFromModule
from tests.helpers import wait_for

logger = logging.getLogger(__name__)


class UserServiceWorker(BaseWorker):
    async def _handle_action(self, action: DomainAction) -> Optional[Dict[str, Any]]:  # noqa: UP006, UP045
        logger.info(
            f"[{self.service_name} - {self.consumer_name}] Procesando acción: {action.action_type}"
        )
        if action.action_type == "user.create":
            return {"created": action.data["name"]}
        elif action.action_type == "user.update":
            pass
        else:
            logger.warning(f"Handler no implementado para {action.action_type}")
            raise NotImplementedError(f"No handler for {action.action_type}")
        return None


class MiWorkerEspecifico(BaseWorker):
    async def _initialize_components(self) -> None:
        await super()._initialize_components()
        self.componentes_listos = True

    async def _handle_mi_accion_especifica(self, action: DomainAction) -> DomainActionResponse:
        return DomainActionResponse(
            action_type=action.action_type + ".response",
            correlation_id=action.correlation_id,
            trace_id=action.trace_id,
            status_code=200,
            data={"resultado": "éxito"},
        )

    async def _handle_otra_accion(self, action: DomainAction) -> dict:  # type: ignore[type-arg]
        return {"mensaje": "Procesado correctamente"}


def test_module_paths_of_the_seed() -> None:
    assert BaseWorkerFromModule is BaseWorker


async def test_user_service_worker_override(redis_server: RedisServer) -> None:
    settings = CommonAppSettings(
        redis_url=redis_server.url, service_name="user", queue_prefix="seed1", worker_block_ms=50
    )
    async with RedisManager(settings=settings) as manager:
        conn = manager.get_client()
        worker = UserServiceWorker(
            app_settings=settings, async_redis_conn=conn, consumer_id_suffix="internal-0"
        )
        task = asyncio.create_task(worker.run())
        client = BaseRedisClient("api", conn, settings)
        created = await client.send_action_pseudo_sync(
            DomainAction(action_type="user.create", data={"name": "ada"}), timeout=5
        )
        unknown = await client.send_action_pseudo_sync(DomainAction(action_type="user.delete"), 5)
        await worker.stop()
        await task
        await client.close()
    assert created.success and created.data == {"created": "ada"}
    # NotImplementedError from an override means "unknown action": an error reply, not a retry.
    assert not unknown.success and unknown.status_code == 404


async def test_specific_worker_returning_responses(redis_server: RedisServer) -> None:
    settings = CommonAppSettings(
        redis_url=redis_server.url, service_name="mi", queue_prefix="seed2", worker_block_ms=50
    )
    async with RedisManager(settings=settings) as manager:
        conn = manager.get_client()
        worker = MiWorkerEspecifico(app_settings=settings, async_redis_conn=conn)
        task = asyncio.create_task(worker.run())
        client = BaseRedisClient("api", conn, settings)
        first = await client.send_action_pseudo_sync(
            DomainAction(action_type="mi.accion.especifica"), timeout=5
        )
        second = await client.send_action_pseudo_sync(
            DomainAction(action_type="mi.otra_accion"), timeout=5
        )
        await worker.stop()
        await task
        await client.close()
    assert worker.componentes_listos
    assert first.success and first.data == {"resultado": "éxito"}
    assert first.action_id is not None  # filled in from the request
    assert not second.success  # `_handle_mi_otra_accion` does not exist: unknown action


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_startup_shutdown_pattern_with_plain_base_worker(redis_server: RedisServer) -> None:
    """The seed's ``@app.on_event`` pattern, with BaseWorker itself as the worker class."""
    app = FastAPI()
    redis_manager: Optional[RedisManager] = None  # noqa: UP045
    active_worker_tasks: List[asyncio.Task[None]] = []  # noqa: UP006
    active_worker_instances: List[BaseWorker] = []  # noqa: UP006
    NUM_INTERNAL_WORKERS = 4

    class MockServiceSettings:
        service_name = "mock_service"
        common_settings = CommonAppSettings(
            redis_url=redis_server.url,
            environment="dev",
            service_name="mock_service",
            queue_prefix="seed3",
            worker_block_ms=50,
        )

    @app.on_event("startup")
    async def startup_event() -> None:
        nonlocal redis_manager
        app_settings = MockServiceSettings()
        redis_manager = RedisManager(settings=app_settings.common_settings)
        await redis_manager.initialize()
        redis_connection = redis_manager.get_client()
        for i in range(NUM_INTERNAL_WORKERS):
            worker_instance = BaseWorker(
                app_settings=app_settings,
                async_redis_conn=redis_connection,
                consumer_id_suffix=f"internal-{i}",
            )
            active_worker_tasks.append(asyncio.create_task(worker_instance.run()))
            active_worker_instances.append(worker_instance)

    @app.on_event("shutdown")
    async def shutdown_event() -> None:
        for worker_instance in active_worker_instances:
            await worker_instance.stop()
        await asyncio.gather(*active_worker_tasks, return_exceptions=True)
        if redis_manager:
            await redis_manager.close()

    async with app.router.lifespan_context(app):
        assert redis_manager is not None
        await wait_for(lambda: all(w.is_running for w in active_worker_instances))
        client = BaseRedisClient(
            "api", redis_manager.get_client(), MockServiceSettings.common_settings
        )
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="mock_service.ping"), timeout=5
        )
        await client.close()
    # A plain BaseWorker has no handlers: the caller gets an error reply, not a timeout.
    assert not reply.success and reply.status_code == 404
    assert not any(w.is_running for w in active_worker_instances)

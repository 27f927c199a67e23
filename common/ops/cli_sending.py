"""``common send``, ``common call`` and ``common publish``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from common.ops.cli_support import (
    OPS_TIMEOUT_S,
    EnvOption,
    PrefixOption,
    RedisUrlOption,
    TimeoutOption,
    dumps,
    run_op,
)

__all__ = ["call", "publish", "register", "send"]


def send(
    action_type: Annotated[str, typer.Argument(help="action type, e.g. user.create")],
    data: Annotated[str, typer.Argument(help="the action's data: a JSON object")] = "{}",
    target: Annotated[
        str | None, typer.Option("--target", help="target service (default: from the type)")
    ] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Fire an action (no response awaited); prints its stream, entry id and action id."""
    from common.ops.connection import ops_connection
    from common.ops.sending import build_action, parse_data, send_action

    async def op(settings: Any) -> int:
        action = build_action(action_type, parse_data(data), target)
        async with ops_connection(settings, connect_timeout) as redis:
            sent = await send_action(redis, settings, action)
        typer.echo(dumps(sent))
        return 0

    run_op(op, redis_url, prefix, env)


def call(
    action_type: Annotated[str, typer.Argument(help="action type, e.g. user.get")],
    data: Annotated[str, typer.Argument(help="the action's data: a JSON object")] = "{}",
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=0.001, help="seconds to wait for the response")
    ] = 30.0,
    target: Annotated[
        str | None, typer.Option("--target", help="target service (default: from the type)")
    ] = None,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Call an action and print its response as JSON (exit 1 if it did not succeed)."""
    from common.ops.connection import ops_connection
    from common.ops.sending import build_action, call_action, parse_data

    async def op(settings: Any) -> int:
        action = build_action(action_type, parse_data(data), target)
        async with ops_connection(settings, connect_timeout) as redis:
            response = await call_action(redis, settings, action, timeout)
        typer.echo(dumps(response.model_dump(mode="json")))
        return 0 if response.success else 1

    run_op(op, redis_url, prefix, env)


def publish(
    topic: Annotated[str, typer.Argument(help="topic, e.g. orders.created")],
    data: Annotated[str, typer.Argument(help="the event's data: any JSON value")] = "{}",
    event: Annotated[
        str | None, typer.Option("--event", help="event name (default: the topic)")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="the event's key")] = None,
    create: Annotated[
        bool, typer.Option("--create", help="publish even if the topic has no stream yet")
    ] = False,
    redis_url: RedisUrlOption = None,
    prefix: PrefixOption = None,
    env: EnvOption = None,
    connect_timeout: TimeoutOption = OPS_TIMEOUT_S,
) -> None:
    """Publish an event on a topic (every subscriber group gets it); prints its stream, entry
    id and event id."""
    from common.ops.connection import ops_connection
    from common.ops.publishing import parse_event_data, publish_event

    async def op(settings: Any) -> int:
        value = parse_event_data(data)
        async with ops_connection(settings, connect_timeout) as redis:
            sent = await publish_event(
                redis, settings, topic, value, event=event, key=key, create=create
            )
        typer.echo(dumps(sent))
        return 0

    run_op(op, redis_url, prefix, env)


def register(app: typer.Typer) -> None:
    app.command()(send)
    app.command()(call)
    app.command()(publish)

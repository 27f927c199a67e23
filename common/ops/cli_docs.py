"""``common docs [PACKAGE] [--service NAME=module:Class] [--out FILE]``: AsyncAPI 3.0."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer

from common.ops.cli_support import EnvOption, PrefixOption, dumps, run_op

__all__ = ["docs", "register"]


def _service(spec: str) -> tuple[str, type]:
    from common.naming import is_service_name
    from common.ops.errors import OpsError
    from common.workers.base_worker import BaseWorker

    name, _, target = spec.partition("=")
    module, _, attr = target.partition(":")
    if not (name and module and attr) or not is_service_name(name):
        raise OpsError(f"--service {spec!r}: expected NAME=package.module:WorkerClass")
    try:
        found = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        raise OpsError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseWorker)):
        raise OpsError(f"{target!r} is not a BaseWorker class")
    return name, found


def docs(
    package: Annotated[
        str | None,
        typer.Argument(help="a module or package of declarative workers to import"),
    ] = None,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="NAME=module:WorkerClass (a BaseWorker), repeatable"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write to FILE (default: stdout)")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="default: SERVICE_NAME")] = None,
    version: Annotated[str, typer.Option("--version", help="the API's version")] = "1.0.0",
    prefix: PrefixOption = None,
    env: EnvOption = None,
) -> None:
    """An AsyncAPI 3.0 document (JSON) of the topics and action types, with their schemas."""
    from common.ops.asyncapi import asyncapi_document
    from common.ops.catalog import find_targets

    async def op(settings: Any) -> int:
        subscriptions = find_targets(package)
        services = [_service(spec) for spec in service or []]
        document = asyncapi_document(subscriptions, settings, services, title, version)
        text = dumps(document)
        if out is None:
            typer.echo(text)
        else:
            try:
                out.write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                from common.ops.errors import OpsError

                raise OpsError(f"cannot write {out}: {exc.strerror or exc}") from None
            channels, operations = len(document["channels"]), len(document["operations"])
            typer.echo(f"wrote {out}: {channels} channels, {operations} operations")
        return 0

    run_op(op, None, prefix, env)


def register(app: typer.Typer) -> None:
    app.command()(docs)

"""What the operations commands share: their options, settings, and one-line errors.

Every command runs its operation through :func:`run_op`: any failure is one line on stderr
(``error: ...``, never a password from ``REDIS_URL``) and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn

import typer

from common.config import load_settings
from common.errors import ConfigurationError, RedisUnavailableError
from common.secrets import redact_url

__all__ = [
    "OPS_TIMEOUT_S",
    "EnvOption",
    "IdsArgument",
    "JsonOption",
    "PrefixOption",
    "ReasonOption",
    "RedisUrlOption",
    "SinceOption",
    "TimeoutOption",
    "TypeOption",
    "dumps",
    "fail",
    "ops_settings",
    "progress_bar",
    "run_op",
]


RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: REDIS_URL)", show_default=False),
]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="key prefix (default: QUEUE_PREFIX)")
]
EnvOption = Annotated[str | None, typer.Option("--env", help="environment (default: ENVIRONMENT)")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON output, for scripts")]
TimeoutOption = Annotated[
    float, typer.Option("--connect-timeout", min=0.1, help="seconds to wait for Redis")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="only this reason (e.g. max_retries)")
]
TypeOption = Annotated[str | None, typer.Option("--type", help="only this action type")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="dead-lettered since: ISO time, or an age (1h)")
]
IdsArgument = Annotated[
    list[str] | None, typer.Argument(help="dead-letter ids (default: all that match)")
]

OPS_TIMEOUT_S = 5.0
_PROGRESS_FROM = 200  # records: a progress bar for runs at least this long (on a terminal)


def ops_settings(redis_url: str | None, prefix: str | None, env: str | None) -> Any:
    overrides = {
        name: value
        for name, value in (
            ("redis_url", redis_url),
            ("queue_prefix", prefix),
            ("environment", env),
        )
        if value
    }
    return load_settings(**overrides)


def _scrub(message: str, redis_url: str | None) -> str:
    """Defence in depth: whatever a message holds, the URL's password is never printed."""
    from urllib.parse import unquote, urlsplit

    if redis_url:
        try:
            password = urlsplit(redis_url).password
        except ValueError:
            password = None
        for secret in {password, unquote(password or "")} - {None, ""}:
            message = message.replace(str(secret), "***")
    return " ".join(message.split())  # one line


def fail(message: str, code: int, redis_url: str | None) -> NoReturn:
    typer.echo(f"error: {_scrub(message, redis_url)}", err=True)
    raise typer.Exit(code)


def run_op(
    op: Callable[[Any], Coroutine[Any, Any, int]],
    redis_url: str | None,
    prefix: str | None,
    env: str | None,
) -> None:
    """Run one operation with its settings; every failure is one line and a non-zero exit."""
    from redis.exceptions import RedisError

    from common.errors import ActionTimeoutError, CommonError
    from common.ops.errors import OpsError

    url = redis_url or os.environ.get("REDIS_URL")
    try:
        settings = ops_settings(redis_url, prefix, env)
    except ConfigurationError as exc:
        fail(str(exc), 2, url)
    url = settings.redis_url
    quiet = logging.getLogger("common")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the connection's warnings would add lines to the one error
    try:
        code = asyncio.run(op(settings))
    except (OpsError, RedisUnavailableError, ActionTimeoutError) as exc:
        fail(str(exc), 1, url)
    except RedisError as exc:
        fail(f"Redis at {redact_url(url)}: {type(exc).__name__}: {exc}", 1, url)
    except CommonError as exc:
        fail(f"{type(exc).__name__}: {exc}", 1, url)
    except KeyboardInterrupt:
        fail("interrupted", 130, url)
    finally:
        quiet.setLevel(level)
    if code:
        raise typer.Exit(code)


def dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def progress_bar(total: int) -> Any:
    """A progress bar on stderr, shown for runs of at least 200 records on a terminal."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(
        *Progress.get_default_columns(),
        console=console,
        transient=True,
        disable=total < _PROGRESS_FROM or not console.is_terminal,
    )

"""Process-wide defaults of the declarative layer: ``configure_messaging(...)``.

``configure_messaging(redis_url=..., service_name=..., ...)`` sets defaults for every
declarative worker, producer and runner of the process. Values given in code win over the
environment (``REDIS_URL``, ``SERVICE_NAME``...), which wins over the built-in defaults; any
:class:`~common.config.CommonAppSettings` field may be given. ``broker="redis"`` is accepted
(seed compatibility); any other broker is refused: this toolkit runs on Redis Streams only.
"""

from __future__ import annotations

from typing import Any

from common.config import CommonAppSettings
from common.errors import ConfigurationError

__all__ = ["configure_messaging", "messaging_settings", "reset_messaging"]

_overrides: dict[str, Any] = {}
_settings: CommonAppSettings | None = None


def configure_messaging(*, broker: str = "redis", **settings: Any) -> CommonAppSettings:
    """Set the process defaults (see the module docstring); returns the resulting settings.

    Raises :class:`ConfigurationError` for another broker, an unknown setting or a bad value.
    """
    global _settings
    if broker != "redis":
        raise ConfigurationError(
            f"broker {broker!r} is not supported: this toolkit runs on Redis Streams only "
            "(use broker='redis', or leave it out)"
        )
    unknown = sorted(set(settings) - set(CommonAppSettings.model_fields))
    if unknown:
        raise ConfigurationError(f"unknown messaging settings: {', '.join(unknown)}")
    merged = {**_overrides, **settings}
    resolved = CommonAppSettings(**merged)  # raises ConfigurationError naming the setting
    _overrides.clear()
    _overrides.update(merged)
    _settings = resolved
    return resolved


def messaging_settings(settings: CommonAppSettings | None = None) -> CommonAppSettings:
    """``settings`` if given, else the configured process defaults (read once)."""
    global _settings
    if settings is not None:
        return settings
    if _settings is None:
        _settings = CommonAppSettings(**_overrides)
    return _settings


def reset_messaging() -> None:
    """Forget :func:`configure_messaging`'s defaults (for tests)."""
    global _settings
    _overrides.clear()
    _settings = None

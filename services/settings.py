"""Settings of an example service: the environment, with only ``service_name`` set in code."""

from __future__ import annotations

from common.config import CommonAppSettings, load_settings

__all__ = ["service_settings"]


def service_settings(service_name: str, base: CommonAppSettings | None = None) -> CommonAppSettings:
    """``base`` (default: read from the environment) with ``service_name`` set.

    Invalid environment values raise :class:`common.ConfigurationError` naming the setting.
    """
    if base is None:
        return load_settings(service_name=service_name)
    if base.service_name == service_name:
        return base
    return base.model_copy(update={"service_name": service_name})

"""Errors of the operations tooling: each is one clear line for a person at a terminal."""

from __future__ import annotations

from common.errors import CommonError

__all__ = ["OpsError", "UnknownStreamError"]


class OpsError(CommonError):
    """An operation cannot be done as asked (bad input, nothing to act on); the message says why."""


class UnknownStreamError(OpsError):
    """No stream of that service (or topic) exists in this prefix and environment."""

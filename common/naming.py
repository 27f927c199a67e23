"""The naming rules that settings, keys and envelopes share (regular expressions, unanchored)."""

from __future__ import annotations

__all__ = ["KEY_SEGMENT", "SERVICE_NAME"]

SERVICE_NAME = r"[a-z][a-z0-9_-]{0,62}"  # a service: also the hash tag of its keys
KEY_SEGMENT = r"[A-Za-z0-9_-]{1,32}"  # a key prefix or an environment

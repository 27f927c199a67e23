"""The naming rules that settings, keys and envelopes share.

The patterns are unanchored regular expressions. Check a name with :func:`is_service_name` or
:func:`is_key_segment` (or ``re.fullmatch``), never with ``^...$`` and ``re.match``: in Python,
``$`` also matches before a final newline, so ``"users\\n"`` would pass.
"""

from __future__ import annotations

import re

__all__ = ["KEY_SEGMENT", "SERVICE_NAME", "is_key_segment", "is_service_name"]

SERVICE_NAME = r"[a-z][a-z0-9_-]{0,62}"  # a service: also the hash tag of its keys
KEY_SEGMENT = r"[A-Za-z0-9_-]{1,32}"  # a key prefix or an environment

_SERVICE_NAME_RE = re.compile(SERVICE_NAME)
_KEY_SEGMENT_RE = re.compile(KEY_SEGMENT)


def is_service_name(value: str) -> bool:
    """True if the whole of ``value`` is a service name."""
    return _SERVICE_NAME_RE.fullmatch(value) is not None


def is_key_segment(value: str) -> bool:
    """True if the whole of ``value`` is a key prefix or an environment."""
    return _KEY_SEGMENT_RE.fullmatch(value) is not None

"""The naming rules that settings, keys and envelopes share.

The patterns are unanchored regular expressions. Check a name with :func:`is_service_name` or
:func:`is_key_segment` (or ``re.fullmatch``), never with ``^...$`` and ``re.match``: in Python,
``$`` also matches before a final newline, so ``"users\\n"`` would pass.
"""

from __future__ import annotations

import re

__all__ = [
    "GROUP_ID",
    "KEY_SEGMENT",
    "SERVICE_NAME",
    "TOPIC_NAME",
    "is_group_id",
    "is_key_segment",
    "is_service_name",
    "is_topic_name",
]

SERVICE_NAME = r"[a-z][a-z0-9_-]{0,62}"  # a service: also the hash tag of its keys
KEY_SEGMENT = r"[A-Za-z0-9_-]{1,32}"  # a key prefix or an environment
TOPIC_NAME = r"[a-z0-9][a-z0-9._-]{0,126}"  # a topic (``orders.created``): its keys' hash tag
GROUP_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,126}"  # a subscriber group of a topic

_SERVICE_NAME_RE = re.compile(SERVICE_NAME)
_KEY_SEGMENT_RE = re.compile(KEY_SEGMENT)
_TOPIC_NAME_RE = re.compile(TOPIC_NAME)
_GROUP_ID_RE = re.compile(GROUP_ID)


def is_topic_name(value: str) -> bool:
    """True if the whole of ``value`` is a topic name (lowercase, digits, ``.``, ``_``, ``-``)."""
    return _TOPIC_NAME_RE.fullmatch(value) is not None


def is_group_id(value: str) -> bool:
    """True if the whole of ``value`` is a subscriber group id."""
    return _GROUP_ID_RE.fullmatch(value) is not None


def is_service_name(value: str) -> bool:
    """True if the whole of ``value`` is a service name."""
    return _SERVICE_NAME_RE.fullmatch(value) is not None


def is_key_segment(value: str) -> bool:
    """True if the whole of ``value`` is a key prefix or an environment."""
    return _KEY_SEGMENT_RE.fullmatch(value) is not None

"""``--since``: an ISO time (``2024-05-01T12:00``, UTC unless it says otherwise) or a relative
one (``30s``, ``15m``, ``1h``, ``2d``, ``1w``: that long ago)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from common.ops.errors import OpsError

__all__ = ["parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_since(text: str, now: float | None = None) -> int:
    """Epoch milliseconds of ``text``; :class:`OpsError` naming the accepted forms otherwise."""
    now = time.time() if now is None else now
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return int((now - float(relative[1]) * _UNITS[relative[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(
            f"--since {text!r}: give an ISO time (2024-05-01T12:00Z) or an age (30s, 15m, 1h, "
            "2d, 1w)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)

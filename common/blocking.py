"""How long the toolkit's blocking reads wait, for settings to check the socket timeout against.

A socket timeout shorter than a blocking read (plus the time its answer takes to arrive) cuts
every idle read with a timeout error: :mod:`common.config` refuses such settings at start-up.
"""

from __future__ import annotations

__all__ = ["REPLY_LISTENER_BLOCK_S", "SOCKET_TIMEOUT_MARGIN_S"]

# The longest a pseudo-sync client's reply listener blocks in one BLPOP (ReplyListener's
# default ``block_s``); the worker's XREADGROUP blocks ``worker_block_ms``.
REPLY_LISTENER_BLOCK_S = 5.0
# Time a blocking read's answer may take on top of its block.
SOCKET_TIMEOUT_MARGIN_S = 1.0

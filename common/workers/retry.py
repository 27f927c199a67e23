"""How long to wait before the next delivery of a failed action."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from common.config import CommonAppSettings

__all__ = ["RetryPolicy"]

Backoff = Literal["exponential", "linear", "fixed"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff schedule and delivery budget.

    ``max_retries`` counts deliveries: an action that fails on its ``max_retries``-th delivery is
    dead-lettered. ``get_delay(attempt)`` is the wait after the ``attempt``-th failed delivery:
    ``initial_delay`` doubling (exponential), growing by ``initial_delay`` (linear) or constant
    (fixed), capped at ``max_delay``, then spread by ``± jitter`` (a fraction) so that failures
    of many actions do not retry in lock-step.
    """

    max_retries: int = 5
    backoff: Backoff = "exponential"
    initial_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.0  # built by hand: exact delays; the engine's default takes retry_jitter

    def __post_init__(self) -> None:
        if self.max_retries < 1:
            raise ValueError("max_retries must be >= 1")
        if self.backoff not in ("exponential", "linear", "fixed"):
            raise ValueError(f"unknown backoff {self.backoff!r}")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: CommonAppSettings) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            backoff=settings.retry_backoff,
            initial_delay=settings.retry_initial_delay_s,
            max_delay=settings.retry_max_delay_s,
            jitter=settings.retry_jitter,
        )

    def base_delay(self, attempt: int) -> float:
        """The delay after the ``attempt``-th failure (1-based), before jitter."""
        n = max(attempt, 1)
        if self.backoff == "exponential":
            delay = self.initial_delay * (2.0 ** min(n - 1, 62))
        elif self.backoff == "linear":
            delay = self.initial_delay * n
        else:
            delay = self.initial_delay
        return min(delay, self.max_delay)

    def get_delay(self, attempt: int) -> float:
        """The delay after the ``attempt``-th failure, with jitter, never above ``max_delay``."""
        delay = self.base_delay(attempt)
        if self.jitter and delay > 0:
            delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(delay, self.max_delay))

    def should_retry(self, attempt: int) -> bool:
        """True if a failure on delivery ``attempt`` leaves deliveries in the budget."""
        return attempt < self.max_retries

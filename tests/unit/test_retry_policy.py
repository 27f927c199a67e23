"""RetryPolicy: the three schedules, the cap, the jitter bounds and the delivery budget."""

from __future__ import annotations

import pytest

from common.config import CommonAppSettings
from common.workers import RetryPolicy


def test_exponential_doubles_up_to_the_cap() -> None:
    p = RetryPolicy(backoff="exponential", initial_delay=1, max_delay=10, jitter=0)
    assert [p.get_delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_linear_and_fixed() -> None:
    lin = RetryPolicy(backoff="linear", initial_delay=0.5, max_delay=2, jitter=0)
    fixed = RetryPolicy(backoff="fixed", initial_delay=3, max_delay=3, jitter=0)
    assert [lin.get_delay(n) for n in range(1, 6)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    assert {fixed.get_delay(n) for n in range(1, 6)} == {3}


def test_jitter_stays_within_bounds_and_cap() -> None:
    p = RetryPolicy(initial_delay=1, max_delay=4, jitter=0.2)
    delays = [p.get_delay(2) for _ in range(500)]
    assert min(delays) >= 1.6 and max(delays) <= 2.4
    assert len(set(delays)) > 100  # actually spread
    assert max(p.get_delay(10) for _ in range(200)) <= 4


def test_budget_counts_deliveries() -> None:
    p = RetryPolicy(max_retries=3)
    assert [p.should_retry(n) for n in (1, 2, 3)] == [True, True, False]


def test_from_settings() -> None:
    p = RetryPolicy.from_settings(
        CommonAppSettings(
            max_retries=7, retry_backoff="linear", retry_initial_delay_s=2, retry_max_delay_s=9
        )
    )
    assert (p.max_retries, p.backoff, p.initial_delay, p.max_delay) == (7, "linear", 2, 9)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": 0}, {"backoff": "cubic"}, {"initial_delay": 5, "max_delay": 1}, {"jitter": 2}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_policy_built_by_hand_is_exact_as_seed_002_shows_it() -> None:
    policy = RetryPolicy(max_retries=5, backoff="exponential", initial_delay=1.0, max_delay=60.0)
    assert policy.get_delay(attempt=3) == 4.0

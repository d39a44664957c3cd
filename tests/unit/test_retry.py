from __future__ import annotations

import pytest

from coditect_tasks.resilience.retry import RetryPolicy


def test_attempts_count_the_first_try() -> None:
    policy = RetryPolicy.retries(2)
    assert [policy.should_retry(n) for n in (1, 2, 3)] == [True, True, False]
    assert not RetryPolicy().should_retry(1)


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, backoff=0.5, backoff_max=3.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_equal_jitter_stays_within_half_and_full_delay() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=2.0, backoff_max=60.0)
    assert policy.delay(3, rand=lambda: 0.0) == 4.0
    assert policy.delay(3, rand=lambda: 1.0) == 8.0
    assert 4.0 <= policy.delay(3) <= 8.0


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"backoff": -1.0}, {"backoff_max": -1.0}])
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]

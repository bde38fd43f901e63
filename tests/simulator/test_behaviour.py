"""The simulator's pure decisions: ids, outcomes, throttling and injected errors."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmesh.model import ReceiptState
from smsmesh.simulator.behaviour import ErrorInjector, MessageIds, TokenBucket, choose_outcome
from smsmesh.smpp.receipt import id_candidates


def test_decimal_ids_are_consecutive_and_equal_in_receipt() -> None:
    ids = MessageIds("decimal", first=41)
    assert [ids.next() for _ in range(3)] == [("41", "41"), ("42", "42"), ("43", "43")]


def test_hex_ids_are_hex_everywhere() -> None:
    ids = MessageIds("hex", first=0xABC)
    assert ids.next() == ("abc", "abc")


@given(st.integers(min_value=0, max_value=2**63))
def test_hex_receipt_quotes_the_same_number_in_hex(first: int) -> None:
    resp_id, receipt_id = MessageIds("hex-receipt", first=first).next()
    assert int(resp_id, 10) == int(receipt_id, 16) == first
    # The gateway's correlation must be able to join the two forms.
    assert set(id_candidates(resp_id)) & set(id_candidates(receipt_id))


def test_default_ids_start_from_the_clock_so_restarts_do_not_reuse_them() -> None:
    first = int(MessageIds().next()[0])
    second_run = int(MessageIds().next()[0])
    assert first > 10**14
    assert second_run >= first


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        ("delivered", ReceiptState.DELIVERED),
        ("undeliverable", ReceiptState.UNDELIVERABLE),
        ("expired", ReceiptState.EXPIRED),
        ("rejected", ReceiptState.REJECTED),
    ],
)
def test_fixed_outcomes(outcome: str, state: ReceiptState) -> None:
    assert choose_outcome(outcome, "123") is state


def test_mixed_is_mostly_delivered_with_every_failure_and_deterministic() -> None:
    ids = [str(n) for n in range(10_000)]
    states = Counter(choose_outcome("mixed", i) for i in ids)
    assert 0.75 < states[ReceiptState.DELIVERED] / len(ids) < 0.85
    for failure in (ReceiptState.UNDELIVERABLE, ReceiptState.EXPIRED, ReceiptState.REJECTED):
        assert states[failure] > 100
    assert [choose_outcome("mixed", i) for i in ids[:200]] == [
        choose_outcome("mixed", i) for i in ids[:200]
    ]


def test_unknown_outcome_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown receipt outcome"):
        choose_outcome("lost", "1")


def test_token_bucket_allows_a_second_of_burst_then_the_rate() -> None:
    bucket = TokenBucket(8, now=100.0)  # times below are exact binary fractions
    assert sum(bucket.take(100.0) for _ in range(50)) == 8
    assert not bucket.take(100.0625)  # half a token refilled
    assert bucket.take(100.125)  # one token
    assert not bucket.take(100.125)
    # a long pause refills only up to the burst
    assert sum(bucket.take(1000.0) for _ in range(50)) == 8


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_token_bucket_never_exceeds_burst_plus_rate_times_time(
    rate: float, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    taken = 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= max(1.0, rate) + rate * now + 1e-6


def test_token_bucket_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_error_injector_honours_the_rate_and_is_reproducible_by_seed() -> None:
    first = [ErrorInjector(0.2, seed=7).fails() for _ in range(1)]
    injector = ErrorInjector(0.2, seed=7)
    pattern = [injector.fails() for _ in range(5000)]
    again = ErrorInjector(0.2, seed=7)
    assert pattern == [again.fails() for _ in range(5000)]
    assert first == pattern[:1]
    assert 0.17 < sum(pattern) / len(pattern) < 0.23
    other = ErrorInjector(0.2, seed=8)
    assert pattern != [other.fails() for _ in range(5000)]


def test_error_injector_with_rate_zero_never_fails_and_one_always() -> None:
    assert not any(ErrorInjector(0.0, seed=1).fails() for _ in range(1000))
    assert all(ErrorInjector(1.0, seed=1).fails() for _ in range(1000))

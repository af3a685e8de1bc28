"""Checkpoint schedules against closed forms, a brute-force optimum and a legality stub."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffsim.checkpoint import (
    Advance,
    Binomial,
    Budget,
    Restore,
    Reverse,
    Save,
    StoreAll,
    Uniform,
    binomial_forward_steps,
    brute_force_forward_steps,
    simulate,
)


@pytest.mark.parametrize(
    ("n", "s", "expected"),
    [(1000, 10, 3637), (10000, 20, 37977), (100, 5, 317), (1000, 5, 6285), (100000, 100, 294748)],
)
def test_binomial_matches_closed_form_examples(n: int, s: int, expected: int) -> None:
    assert binomial_forward_steps(n, s) == expected
    cost = Binomial(slots=s).cost(n)
    assert cost.forward_steps == expected
    assert cost.peak_states == s
    assert cost.reverse_steps == n


def test_binomial_closed_form_is_p_plus_one() -> None:
    # p(n, s) = r n - C(s + r, r - 1), r the smallest with C(s + r, s) >= n.
    for n, s in [(1000, 10), (10000, 20), (5000, 7)]:
        r = next(r for r in range(1, 100) if math.comb(s + r, s) >= n)
        assert binomial_forward_steps(n, s) == r * n - math.comb(s + r, r - 1) + 1


@pytest.mark.parametrize("s", range(1, 9))
def test_binomial_is_optimal_against_brute_force(s: int) -> None:
    for n in range(1, 70):
        cost = Binomial(slots=s).cost(n)
        assert cost.forward_steps == brute_force_forward_steps(n, s), (n, s)
        assert cost.peak_states <= s
        assert cost.slots == cost.peak_states


def test_store_all_counts() -> None:
    for n in (1, 2, 3, 10, 257):
        cost = StoreAll().cost(n)
        assert cost.forward_steps == n
        assert cost.recompute_steps == 0
        assert cost.peak_states == max(n - 1, 0)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 100, 101])
def test_uniform_counts_match_closed_form(n: int) -> None:
    for k in range(1, n + 1):
        cost = Uniform(every=k).cost(n)
        forward, peak = Uniform.predicted(n, k)
        assert (cost.forward_steps, cost.peak_states) == (forward, peak), (n, k)
        m = -(-n // k)
        assert forward == 2 * n - (n - (m - 1) * k) - m + 1


def test_uniform_every_one_is_store_all() -> None:
    assert Uniform(every=1).cost(50)[1:] == StoreAll().cost(50)[1:]


def test_uniform_two_level_recompute_is_about_two() -> None:
    cost = Uniform(every=100).cost(10000)
    assert 1.9 < cost.recompute_factor < 2.0
    assert cost.peak_states == 100 + 100 - 2


def test_generation_of_long_schedules() -> None:
    # Functional check that 100,000-step schedules are generated and legal; the
    # generation time is measured by benchmarks/schedules.py.
    cost = Binomial(slots=20).cost(100_000)
    assert cost.forward_steps == binomial_forward_steps(100_000, 20)
    assert Uniform(every=316).cost(100_000).peak_states <= 2 * 317


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300), s=st.integers(1, 40), k=st.integers(1, 300))
def test_every_schedule_is_legal(n: int, s: int, k: int) -> None:
    # simulate() raises on any illegal action: reverse order, missing state, slot reuse.
    for sched in (StoreAll(), Uniform(every=k), Binomial(slots=s)):
        cost = simulate(sched.actions(n), n)
        assert cost.reverse_steps == n
        assert cost.forward_steps >= n
    assert Binomial(slots=s).cost(n).peak_states <= s


def test_budget_picks_store_all_uniform_binomial() -> None:
    n, nbytes = 10000, 1000
    assert Budget(bytes=n * nbytes).resolve(n, state_nbytes=nbytes) == StoreAll()
    uniform = Budget(bytes=300 * nbytes).resolve(n, state_nbytes=nbytes)
    assert isinstance(uniform, Uniform)
    assert uniform.cost(n).peak_states <= 300
    binomial = Budget(bytes=50 * nbytes).resolve(n, state_nbytes=nbytes)
    assert binomial == Binomial(slots=50)
    cost = Budget(bytes="50kB").cost(n, state_nbytes=nbytes)
    assert cost.forward_steps == binomial_forward_steps(n, 50)


def test_budget_parses_units_and_rejects_nonsense() -> None:
    assert Budget(bytes="2GiB").bytes == 2 * 2**30
    assert Budget(bytes="512 MiB").bytes == 512 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        Budget(bytes="lots")
    with pytest.raises(ValueError, match="cannot hold one state of 4096 bytes"):
        Budget(bytes=1000).resolve(10, state_nbytes=4096)
    with pytest.raises(TypeError, match="state_nbytes"):
        Budget(bytes=1000).cost(10)


def test_schedule_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"Binomial\(slots=...\) must be >= 1, got 0"):
        Binomial(slots=0)
    with pytest.raises(TypeError, match="must be an int"):
        Uniform(every=2.5)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        StoreAll().actions(0)


def test_simulate_rejects_illegal_streams() -> None:
    with pytest.raises(ValueError, match="expected reverse of step 1"):
        simulate([Advance(0, 2), Reverse(0, None)], 2)
    with pytest.raises(ValueError, match="after x\\[n\\] is computed"):
        simulate([Advance(0, 1), Reverse(1, None)], 2)
    with pytest.raises(ValueError, match="live buffers hold"):
        simulate([Save(0, 0), Advance(0, 3), Reverse(2, None), Reverse(1, None)], 3)
    with pytest.raises(ValueError, match="slot holds None"):
        simulate([Advance(0, 1), Reverse(0, None), Restore(0, 0)], 1)
    with pytest.raises(ValueError, match="not reversed"):
        simulate([Advance(0, 2), Reverse(1, None)], 2)

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
    TwoLevel,
    Uniform,
    binomial_forward_steps,
    brute_force_forward_steps,
    brute_force_two_level_forward_steps,
    parse_schedule,
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


# --- two levels: disk states between segments, binomial in memory within them ---------


@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_two_level_is_optimal_against_brute_force(s: int) -> None:
    # Every placement of at most d write-once disk states, by a dynamic programme over the
    # Griewank-Walther recursion: the planned segmentation reaches its optimum.
    for n in range(1, 61):
        for d in (0, 1, 2, 3, 5, 8):
            cost = TwoLevel(slots=s, disk_slots=d).cost(n)
            assert cost.forward_steps == brute_force_two_level_forward_steps(n, s, d), (n, s, d)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), s=st.integers(1, 12), d=st.integers(0, 60),
       host=st.integers(0, 11))
def test_two_level_tiers_hold_their_limits(n: int, s: int, d: int, host: int) -> None:
    host = min(host, s - 1)
    plan = TwoLevel(slots=s, disk_slots=d, host_slots=host)
    cost = plan.cost(n)   # simulate checks legality and that every slot is inside a tier
    disk = cost.tier("disk")
    used = min(d, n - 1)
    assert disk.peak_states == disk.saves == disk.loads == used     # written once, read once
    memory, on_host = cost.tier("memory"), cost.tier("host")
    assert memory.peak_states <= s - host and on_host.peak_states <= host
    assert plan.tier_slots(n) == {k: v for k, v in
                                  {"memory": s - host, "host": host, "disk": used}.items() if v}
    # host slots only renumber: the counts are the memory-only plan's
    plain = TwoLevel(slots=s, disk_slots=d).cost(n)
    assert cost.forward_steps == plain.forward_steps
    assert memory.saves + on_host.saves == plain.tier("memory").saves
    assert plan.traffic(n) == (cost.forward_steps, {t.name: t.saves + t.loads
                                                    for t in cost.tiers if t.saves + t.loads})
    if host:   # the busiest slots stay in the memory tier
        use = [0] * s
        for act in plan.actions(n):
            if type(act) in (Save, Restore, Reverse) and act.slot is not None and act.slot < s:
                use[act.slot] += 1
        assert min(use[: s - host]) >= max(use[s - host:])


def test_two_level_examples_and_periodic_form() -> None:
    assert TwoLevel(slots=8, disk_slots=40).cost(2000).forward_steps == 5581
    assert Binomial(slots=8).cost(2000).forward_steps == 9999
    # d = 0 is plain binomial; d = n - 1 is store-all on disk
    assert TwoLevel(slots=5, disk_slots=0).cost(300).forward_steps == binomial_forward_steps(300, 5)
    assert TwoLevel(slots=1, disk_slots=99).cost(100).forward_steps == 100
    periodic = TwoLevel(slots=4, every=25)
    assert periodic.segments(110) == [25, 25, 25, 25, 10]
    cost = periodic.cost(110)
    p = [binomial_forward_steps(k, 4) - 1 for k in (25, 10)]
    assert cost.forward_steps == 4 * (25 + p[0]) + p[1] + 1
    assert cost.tier("disk").saves == 4
    with pytest.raises(ValueError, match="exactly one of disk_slots"):
        TwoLevel(slots=4)
    with pytest.raises(ValueError, match="host_slots=4"):
        TwoLevel(slots=4, disk_slots=2, host_slots=4)
    with pytest.raises(ValueError, match="outside the tiers"):
        simulate(TwoLevel(slots=2, disk_slots=3).actions(20), 20, tiers={"memory": 2, "disk": 2})


def _expected(plan, n: int, nbytes: int, step: float, rate: dict[str, float]) -> float:
    if isinstance(plan, TwoLevel) and plan.disk_slots and plan.disk_slots > 50:
        forward, use = plan.traffic(n)   # (equal to the stub's counts: tested above)
        return forward * step + sum(k * nbytes / rate[t] for t, k in use.items())
    cost = plan.cost(n)
    return cost.forward_steps * step + sum((t.saves + t.loads) * nbytes / rate[t.name]
                                           for t in cost.tiers)


def test_budget_picks_the_fastest_two_level_plan(tmp_path) -> None:
    n, nbytes, step = 600, 1000, 1e-3
    for disk_rate in (1e3, 1e5, 1e8):
        rate = {"memory": 20e9, "host": 2e9, "disk": disk_rate}
        budget = Budget(bytes=4 * nbytes, disk=50 * nbytes, directory=tmp_path,
                        bandwidth={"disk": disk_rate}, step_seconds=step)
        pick = budget.resolve(n, state_nbytes=nbytes)
        options = [Binomial(slots=4)] + [TwoLevel(slots=4, disk_slots=d) for d in range(51)]
        best = min(_expected(p, n, nbytes, step, rate) for p in options)
        assert _expected(pick, n, nbytes, step, rate) == pytest.approx(best, rel=1e-12)
        if disk_rate == 1e3:    # a slow disk is not worth its writes
            assert pick == Binomial(slots=4)
        if disk_rate == 1e8:    # a fast one is used to its budget
            assert pick == TwoLevel(slots=4, disk_slots=50)
    # many disk states: the planner tries a grid, within 1 % of the best over every count
    budget = Budget(bytes=4 * nbytes, disk=400 * nbytes, directory=tmp_path,
                    bandwidth={"disk": 2e6}, step_seconds=step)
    rate = {"memory": 20e9, "host": 2e9, "disk": 2e6}
    n = 3000
    pick = budget.resolve(n, state_nbytes=nbytes)
    best = min(_expected(TwoLevel(slots=4, disk_slots=d), n, nbytes, step, rate)
               for d in range(0, 401))
    assert _expected(pick, n, nbytes, step, rate) <= 1.01 * best
    # store-all when memory holds everything, whatever the other tiers
    assert Budget(bytes=n * nbytes, disk="1GB", directory=tmp_path).resolve(
        n, state_nbytes=nbytes) == StoreAll()
    # host RAM joins the binomial level, busiest slots in memory
    hosted = Budget(bytes=2 * nbytes, host=6 * nbytes, bandwidth={"disk": 1.0},
                    disk=10 * nbytes, directory=tmp_path, step_seconds=step)
    assert hosted.resolve(n, state_nbytes=nbytes) == TwoLevel(slots=8, disk_slots=0,
                                                             host_slots=6)
    assert hosted.tier_slots(n, state_nbytes=nbytes) == {"memory": 2, "host": 6}


def test_budget_caps_the_disk_at_its_free_space(tmp_path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    budget = Budget(bytes=2**30, disk=10 * free, directory=tmp_path,
                    bandwidth={"disk": 1e12}, step_seconds=1.0)
    with pytest.warns(UserWarning, match="exceeds the free space"):
        pick = budget.resolve(20000, state_nbytes=2**30)
    assert isinstance(pick, TwoLevel) and pick.disk_slots is not None
    assert pick.disk_slots * 2**30 <= free


def test_parse_schedule_forms() -> None:
    assert parse_schedule("twolevel:8,40") == TwoLevel(slots=8, disk_slots=40)
    budget = parse_schedule("budget:4GiB,disk:50GiB,host:1GiB,dir:/tmp")
    assert isinstance(budget, Budget)
    assert (budget.bytes, budget.disk, budget.host, budget.directory) == (
        4 * 2**30, 50 * 2**30, 2**30, "/tmp")
    assert parse_schedule("Binomial:4") == Binomial(slots=4)
    for bad in ("budget:4GiB,tape:1GB", "budget:4GiB,disk:lots", "twolevel:8", "revolve:3"):
        with pytest.raises(ValueError, match="checkpoint"):
            parse_schedule(bad)

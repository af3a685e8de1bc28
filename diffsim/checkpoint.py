"""Checkpoint schedules for the reverse sweep: pure Python, no Taichi.

A schedule decides which states of a rollout ``x[t+1] = f(x[t])``, ``t = 0 … n-1``,
are kept while the forward sweep runs, and which are recomputed during the reverse
sweep. It emits a stream of actions; the tape (:class:`diffsim.Tape`) applies them to
Taichi fields, and :func:`simulate` applies them to a counting stub.

Model and counting convention (stated once, used everywhere):

* One *live* state is being advanced. After an :class:`Advance` the live buffers also
  keep the last input (``x[stop-1]``), so the reverse step of the final step needs no
  extra storage.
* The reverse step for step ``i`` needs only ``x[i]`` (the adjoint kernel recomputes a
  step's internals from its input: Taichi ``kernel.grad`` and hand-written adjoints both
  work this way).
* ``forward_steps`` counts every execution of the forward step during one gradient
  evaluation: the forward sweep plus all recomputation. Store-all gives ``n``.
* ``peak_states`` counts stored states (checkpoint slots in use at once), the initial
  state ``x[0]`` included, as revolve does. The live buffers come on top.

Schedules (``Budget`` picks one of the others from the bytes one state costs):

===================================  ======================================  =============================
schedule                             forward_steps                           peak_states
===================================  ======================================  =============================
``StoreAll()``                       ``n``                                   ``n - 1``
``Uniform(every=k)``                 ``n + (m - 1)(k - 1)``, m segments      about ``n/k + k``
``Binomial(slots=s)``                ``p(n, s) + 1`` (optimal)               ``s``
``TwoLevel(slots=s, disk_slots=d)``  per segment ``L + p(L, s)``, the last   ``s`` in memory, ``d`` on disk
                                     ``p(L, s) + 1`` (placed optimally)
``Budget(bytes=b)``                  that of the schedule it picks           that of the schedule it picks
===================================  ======================================  =============================

Tiers: a schedule's slots are numbered through its tiers, fastest first (``memory``:
the tape's store, by default the stepper's device pool; ``host``: host RAM; ``disk``:
files). :meth:`Schedule.tier_slots` gives the layout and :class:`ScheduleCost` counts
each tier's peak, saves and loads. Only :class:`TwoLevel` (and :class:`Budget` when it
picks one) uses more than the memory tier.

``p(n, s) = r n - C(s + r, r - 1)`` with ``r`` the smallest integer such that
``C(s + r, s) >= n`` (Griewank and Walther, ACM TOMS 26(1), 2000). For example
``Binomial(slots=10).cost(1000).forward_steps == 3637``.
"""

from __future__ import annotations

import abc
import functools
import math
import os
import pathlib
import shutil
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, final

__all__ = [
    "Action",
    "Advance",
    "Binomial",
    "Budget",
    "Free",
    "Restore",
    "Reverse",
    "Save",
    "Schedule",
    "ScheduleCost",
    "StoreAll",
    "TierCost",
    "TwoLevel",
    "Uniform",
    "binomial_forward_steps",
    "brute_force_two_level_forward_steps",
    "parse_schedule",
    "simulate",
    "tradeoff",
]


@final
class Advance(NamedTuple):
    """Run forward steps ``start … stop-1``: the live state goes from ``x[start]`` to ``x[stop]``."""

    start: int
    stop: int


@final
class Save(NamedTuple):
    """Copy the live state ``x[step]`` into checkpoint slot ``slot``."""

    step: int
    slot: int


@final
class Restore(NamedTuple):
    """Copy checkpoint slot ``slot`` (holding ``x[step]``) into the live state."""

    step: int
    slot: int


@final
class Reverse(NamedTuple):
    """Run the reverse step of step ``step``.

    ``x[step]`` is read from checkpoint slot ``slot``, or from the live buffers when
    ``slot`` is ``None`` (the live state or the last input). Afterwards the live
    buffers hold nothing a later action may rely on.
    """

    step: int
    slot: int | None


@final
class Free(NamedTuple):
    """Release checkpoint slot ``slot`` (holding ``x[step]``)."""

    step: int
    slot: int


Action = Advance | Save | Restore | Reverse | Free

#: Tier names, fastest first: the tape's store (``memory``), host RAM, files.
TIERS = ("memory", "host", "disk")


class TierCost(NamedTuple):
    """One tier's share of a schedule's checkpoint traffic.

    Attributes:
        name: ``"memory"``, ``"host"`` or ``"disk"``.
        slots: slots of this tier the executor allocates.
        peak_states: most of them in use at once.
        saves: states written to the tier.
        loads: states read back (restores and reverse steps reading a slot).
    """

    name: str
    slots: int
    peak_states: int
    saves: int
    loads: int


class ScheduleCost(NamedTuple):
    """What a schedule costs for ``n`` steps, counted on a stub (see :func:`simulate`).

    Attributes:
        steps: number of steps ``n`` of the rollout.
        forward_steps: executions of the forward step (forward sweep plus recomputation).
        recompute_steps: the part of ``forward_steps`` run after the first reverse step.
        reverse_steps: executions of a reverse step (always ``n``).
        peak_states: most checkpoint slots in use at once (``x[0]``'s included).
        slots: checkpoint slots the executor must allocate (largest slot index + 1).
        saves: number of :class:`Save` actions.
        restores: number of :class:`Restore` actions plus reverse steps read from a slot.
        tiers: each tier's slots, peak, saves and loads (see :class:`TierCost`), fastest
            first; one ``memory`` tier for single-level schedules.
    """

    steps: int
    forward_steps: int
    recompute_steps: int
    reverse_steps: int
    peak_states: int
    slots: int
    saves: int
    restores: int
    tiers: tuple[TierCost, ...] = ()

    def tier(self, name: str) -> TierCost:
        """The :class:`TierCost` of tier ``name`` (zeros when the schedule does not use it)."""
        for t in self.tiers:
            if t.name == name:
                return t
        return TierCost(name, 0, 0, 0, 0)

    @property
    def recompute_factor(self) -> float:
        """``forward_steps / steps``: 1.0 for store-all, about 2 for a two-level scheme."""
        return self.forward_steps / self.steps


def _check_steps(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"steps must be an int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}; a rollout needs at least one step")
    return n


def _check_positive_int(name: str, value: object, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}; {fix}")
    return value


class Schedule(abc.ABC):
    """A checkpoint schedule: an action stream for ``n`` steps.

    Subclasses implement :meth:`actions`. :meth:`cost` runs that stream against the
    counting stub :func:`simulate`, so reported costs are what an executor will do.
    """

    @abc.abstractmethod
    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """The action stream for ``n`` steps.

        Args:
            n: number of steps, >= 1.
            state_nbytes: bytes one stored state costs; only :class:`Budget` needs it.

        Returns:
            The actions, in execution order.
        """

    def resolve(self, n: int, *, state_nbytes: int | None = None,  # noqa: ARG002
                step_seconds: float | None = None) -> Schedule:  # noqa: ARG002
        """The concrete schedule used for ``n`` steps (itself, except for :class:`Budget`)."""
        return self

    def tier_slots(self, n: int, *, state_nbytes: int | None = None  # noqa: ARG002
                   ) -> dict[str, int] | None:
        """Slots per tier for ``n`` steps, fastest first, or ``None`` for one memory tier.

        Slot numbers run through the tiers in this order: with ``{"memory": 4, "disk":
        10}`` slots 0-3 are in memory and 4-13 on disk.
        """
        return None

    def cost(self, n: int, *, state_nbytes: int | None = None) -> ScheduleCost:
        """Count forward steps and stored states by running the actions on a stub.

        Args:
            n: number of steps, >= 1.
            state_nbytes: bytes one stored state costs; only :class:`Budget` needs it.

        Returns:
            The counts, see :class:`ScheduleCost`.
        """
        return simulate(self.actions(n, state_nbytes=state_nbytes), n,
                        tiers=self.tier_slots(n, state_nbytes=state_nbytes))

    def plot(self, n: int, path: str | os.PathLike[str], *, state_nbytes: int | None = None,
             title: str | None = None) -> None:
        """Draw the schedule's actions for ``n`` steps (PNG or SVG by ``path``'s suffix).

        Time steps across, execution order down the page: forward advances, reverse
        steps, restores and the stored states (see
        :func:`diffsim.diagnostics.plot_schedule`). Needs matplotlib.
        """
        from diffsim.diagnostics.schedules import plot_schedule

        plot_schedule(self, n, pathlib.Path(path), state_nbytes=state_nbytes, title=title)


def tradeoff(state_nbytes: int, n: int, path: str | os.PathLike[str] | None = None, *,
             budgets: Sequence[int | str] = (), measured: Sequence[Any] = ()) -> Any:
    """Forward steps against checkpoint memory for StoreAll, Uniform and Binomial.

    ``budgets`` marks the schedule :class:`Budget` picks for each budget; ``measured``
    overlays real runs (:class:`~diffsim.TapeReport` objects or ``(label, bytes,
    forward steps)``). Draws a figure when ``path`` is given (needs matplotlib) and
    returns a :class:`diffsim.diagnostics.Tradeoff` with the points. See
    :func:`diffsim.diagnostics.tradeoff`.
    """
    from diffsim.diagnostics.schedules import tradeoff as _tradeoff

    return _tradeoff(state_nbytes, n, None if path is None else pathlib.Path(path),
                     budgets=budgets, measured=measured)


class StoreAll(Schedule):
    """Keep every state: ``n`` forward steps, ``n - 1`` stored states, no recomputation."""

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`."""
        n = _check_steps(n)
        out: list[Action] = []
        for t in range(n - 1):
            out.append(Save(t, t))
            out.append(Advance(t, t + 1))
        out.append(Advance(n - 1, n))
        out.append(Reverse(n - 1, None))
        for t in range(n - 2, -1, -1):
            out.append(Reverse(t, t))
            out.append(Free(t, t))
        return out

    def __repr__(self) -> str:
        return "StoreAll()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreAll)

    def __hash__(self) -> int:
        return hash("StoreAll")


class _SlotPool:
    """Lowest-free-index slot allocator, so that ``slots == peak_states``."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0

    def take(self) -> int:
        if self._free:
            self._free.sort()
            return self._free.pop(0)
        self._next += 1
        return self._next - 1

    def give(self, slot: int) -> None:
        self._free.append(slot)


class Uniform(Schedule):
    """Store every ``every``-th state; reverse one segment at a time.

    The forward sweep saves ``x[0], x[k], x[2k], …`` and every state of the last
    segment. In the reverse sweep each earlier segment is recomputed once from its
    checkpoint and its states are kept until the segment is reversed (the two-level
    "sqrt(n)" scheme of Warp, Deepwave and DiffTaichi examples). With ``k ≈ sqrt(n)``
    the peak is about ``2 sqrt(n)`` states and the forward count about ``2n``.

    Args:
        every: segment length ``k`` >= 1. ``every=1`` is store-all.
    """

    def __init__(self, *, every: int) -> None:
        self.every = _check_positive_int(
            "Uniform(every=...)", every, "pass the number of steps between checkpoints"
        )

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`."""
        n = _check_steps(n)
        k = self.every
        starts = list(range(0, n, k))
        pool = _SlotPool()
        out: list[Action] = []
        ckpt: dict[int, int] = {}
        last = starts[-1]
        # Forward sweep: checkpoints at segment starts, every state of the last segment.
        for c in starts[:-1]:
            ckpt[c] = pool.take()
            out.append(Save(c, ckpt[c]))
            out.append(Advance(c, c + k))
        kept: dict[int, int] = {}
        for t in range(last, n - 1):
            kept[t] = pool.take()
            out.append(Save(t, kept[t]))
            out.append(Advance(t, t + 1))
        out.append(Advance(n - 1, n))
        out.append(Reverse(n - 1, None))
        for t in range(n - 2, last - 1, -1):
            out.append(Reverse(t, kept[t]))
            out.append(Free(t, kept[t]))
            pool.give(kept.pop(t))
        # Reverse sweep over the earlier segments, last first.
        for c in reversed(starts[:-1]):
            e = c + k
            slot_c = ckpt.pop(c)
            if e - 1 > c:
                out.append(Restore(c, slot_c))
                for t in range(c + 1, e - 1):
                    out.append(Advance(t - 1, t))
                    kept[t] = pool.take()
                    out.append(Save(t, kept[t]))
                out.append(Advance(e - 2, e - 1))
                out.append(Reverse(e - 1, None))
                for t in range(e - 2, c, -1):
                    out.append(Reverse(t, kept[t]))
                    out.append(Free(t, kept[t]))
                    pool.give(kept.pop(t))
            out.append(Reverse(c, slot_c))
            out.append(Free(c, slot_c))
            pool.give(slot_c)
        return out

    @staticmethod
    def predicted(n: int, every: int) -> tuple[int, int]:
        """Closed-form ``(forward_steps, peak_states)`` for ``n`` steps (tested against the stub)."""
        m = -(-n // every)
        last_len = n - (m - 1) * every
        forward = n + (m - 1) * (every - 1)
        peak = max(m + last_len - 2, m + every - 3 if m >= 2 else 0, 0)
        return forward, peak

    def __repr__(self) -> str:
        return f"Uniform(every={self.every})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Uniform) and other.every == self.every

    def __hash__(self) -> int:
        return hash(("Uniform", self.every))


def _repetition_number(n: int, s: int) -> int:
    """Smallest ``r`` with ``C(s + r, s) >= n``."""
    r = 0
    while math.comb(s + r, s) < n:
        r += 1
    return r


def binomial_forward_steps(n: int, s: int) -> int:
    """Optimal forward count ``p(n, s) + 1`` for ``n`` steps and ``s`` slots (closed form).

    Args:
        n: number of steps, >= 1.
        s: checkpoint slots, >= 1, the one holding ``x[0]`` included.

    Returns:
        The number of forward-step executions of an optimal (revolve) schedule.
    """
    if s == 1:
        return n * (n - 1) // 2 + 1
    r = _repetition_number(n, s)
    if r == 0:
        return 1
    return r * n - math.comb(s + r, r - 1) + 1


def _binomial_split(n: int, s: int) -> int:
    """Optimal number of steps to advance before the next checkpoint (n >= 2, s >= 2)."""
    r = _repetition_number(n, s)
    if r <= 1:
        return 1
    beta = math.comb
    lo = max(beta(s + r - 2, s), n - beta(s - 1 + r, s - 1))
    hi = min(beta(s + r - 1, s), n - beta(s - 1 + r - 1, s - 1))
    return max(1, min(lo, hi, n - 1))


def _binomial_actions(out: list[Action], start: int, stop: int, slots: int, pool: _SlotPool,
                      *, last: bool) -> None:
    """Emit a binomial reversal of steps ``start … stop-1`` into ``out``.

    On entry the live state is ``x[start]``; it is saved into a slot from ``pool`` first
    (so ``slots`` counts it). ``last``: the segment ends the rollout, so its first
    reverse step also computes ``x[stop]`` (the outputs); otherwise ``x[stop]`` exists
    already and the segment costs ``p(stop - start, slots)`` forward steps.
    """
    s = min(slots, max(stop - start - 1, 1))
    live = [start]  # the live state, -1 when unknown
    first = [last]

    def goto(a: int, slot_a: int, t: int) -> None:
        """Make x[t] live, starting from the checkpoint x[a]."""
        if live[0] != a or t < a:
            out.append(Restore(a, slot_a))
            live[0] = a
        if t > a:
            out.append(Advance(a, t))
            live[0] = t

    def leaf(t: int, slot_t: int | None) -> None:
        if first[0]:
            first[0] = False
            out.append(Advance(t, t + 1))
            out.append(Reverse(t, None))
        elif slot_t is None:
            out.append(Reverse(t, None))
        else:
            out.append(Reverse(t, slot_t))
        live[0] = -1

    def rev(a: int, b: int, s: int, slot_a: int) -> None:
        # Precondition: x[a] is stored in slot_a; s slots are available, slot_a's included.
        while True:
            n_ab = b - a
            if n_ab == 1:
                leaf(a, slot_a)
                return
            if s == 1:
                for t in range(b - 1, a, -1):
                    goto(a, slot_a, t)
                    leaf(t, None)
                leaf(a, slot_a)
                return
            m = a + _binomial_split(n_ab, s)
            goto(a, slot_a, m)
            slot_m = pool.take()
            out.append(Save(m, slot_m))
            rev(m, b, s - 1, slot_m)
            out.append(Free(m, slot_m))
            pool.give(slot_m)
            b = m  # tail call: reverse [a, m) with the same s slots

    slot0 = pool.take()
    out.append(Save(start, slot0))
    rev(start, stop, s, slot0)
    out.append(Free(start, slot0))
    pool.give(slot0)


class Binomial(Schedule):
    """Griewank-Walther binomial checkpointing (revolve), optimal for ``slots``.

    Reverses ``n`` steps with at most ``slots`` stored states (``x[0]``'s included) and
    the fewest forward steps possible, ``p(n, slots) + 1``; the recompute factor grows
    like ``n**(1/slots)``. Memory ``slots * state_bytes``; use it when a two-level
    :class:`Uniform` scheme (about ``2 sqrt(n)`` states) does not fit.

    Args:
        slots: checkpoint slots >= 1.
    """

    def __init__(self, *, slots: int) -> None:
        self.slots = _check_positive_int(
            "Binomial(slots=...)", slots, "at least one slot is needed to hold the initial state"
        )

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`."""
        n = _check_steps(n)
        out: list[Action] = []
        _binomial_actions(out, 0, n, self.slots, _SlotPool(), last=True)
        return out

    def __repr__(self) -> str:
        return f"Binomial(slots={self.slots})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Binomial) and other.slots == self.slots

    def __hash__(self) -> int:
        return hash(("Binomial", self.slots))


@functools.lru_cache(maxsize=64)
def _binomial_costs(n: int, s: int) -> tuple[int, ...]:
    """``p(L, s)`` for ``L = 0 … n`` (``p(0, s) = 0``): recomputation of a segment of ``L``."""
    return (0, *(binomial_forward_steps(length, s) - 1 for length in range(1, n + 1)))


def _two_level_lengths(n: int, s: int, d: int) -> list[int]:
    """Segment lengths minimising the forward count with ``d`` disk states and ``s`` slots.

    A segment that is not the last costs its sweep plus its binomial reversal,
    ``L + p(L, s)``; the last one ``p(L, s) + 1``. Both are convex in ``L``, so some
    optimum has the earlier segments within one step of each other: ``q`` of length
    ``k + 1`` and ``d - q`` of length ``k``, then the last. Every ``(k, q)`` is tried.
    """
    d = min(d, n - 1)
    if d <= 0:
        return [n]
    p = _binomial_costs(n, s)
    best: tuple[int, int, int] | None = None
    for k in range(1, (n - 1) // d + 1):
        g0, g1 = k + p[k], k + 1 + p[min(k + 1, n)]
        for q in range(0, min(d - 1, n - d * k - 1) + 1):
            rest = n - d * k - q
            total = (d - q) * g0 + q * g1 + p[rest] + 1
            if best is None or total < best[0]:
                best = (total, k, q)
    assert best is not None
    _, k, q = best
    return [k + 1] * q + [k] * (d - q) + [n - d * k - q]


@functools.lru_cache(maxsize=256)
def _segment_use(length: int, slots: int, last: bool) -> tuple[int, tuple[int, ...]]:
    """A segment's binomial reversal: forward steps and the uses of each memory slot.

    Uses are saves, restores and reverse steps reading the slot. Every segment starts
    from the same pool state (the one before returns all its slots), so the counts of
    a plan are sums over its segments' lengths.
    """
    out: list[Action] = []
    _binomial_actions(out, 0, length, slots, _SlotPool(), last=last)
    use = [0] * slots
    forward = 0
    for act in out:
        if type(act) is Advance:
            forward += act.stop - act.start
        elif type(act) is not Free and act.slot is not None:
            use[act.slot] += 1
    return forward, tuple(use)


class TwoLevel(Schedule):
    """Disk checkpoints between segments, binomial checkpointing in memory within each.

    The forward sweep writes the state at the start of every segment but the last to the
    disk tier (each disk state is written once and read once, the access pattern files
    serve well); the last segment is reversed with :class:`Binomial` in memory while the
    forward sweep ends, then each earlier segment is read back from disk, re-run and
    reversed the same way. ``disk_slots=d`` places the ``d`` disk states where they make
    the fewest forward steps (the optimum over all placements, tested against a dynamic
    programme); ``every=K`` writes one every ``K`` steps instead (the periodic two-level
    scheme, which needs no plan of the whole rollout). ``host_slots`` of the memory slots
    go to host RAM: the ones the binomial reversal touches least.

    Example: ``TwoLevel(slots=8, disk_slots=40).cost(2000).forward_steps == 5581``, with
    40 disk writes; ``Binomial(slots=8)`` alone needs 9,999 forward steps, and
    ``Binomial(slots=48)`` with the same 48 states 4,726 but 1,615 saves spread over all
    its slots (a disk would take most of them).

    Args:
        slots: memory slots (the segment start's copy included), >= 1.
        disk_slots: disk states, >= 0 (0: plain binomial in memory).
        every: segment length instead of ``disk_slots``.
        host_slots: how many of ``slots`` are in host RAM, 0 … ``slots - 1``.
    """

    def __init__(self, *, slots: int, disk_slots: int | None = None, every: int | None = None,
                 host_slots: int = 0) -> None:
        self.slots = _check_positive_int(
            "TwoLevel(slots=...)", slots, "at least one memory slot holds each segment's start")
        if (disk_slots is None) == (every is None):
            raise ValueError("TwoLevel needs exactly one of disk_slots=D (disk states, placed "
                             "optimally) or every=K (a disk state every K steps)")
        if disk_slots is not None and (isinstance(disk_slots, bool)
                                       or not isinstance(disk_slots, int) or disk_slots < 0):
            raise ValueError(f"TwoLevel(disk_slots={disk_slots!r}) must be an int >= 0")
        if every is not None:
            _check_positive_int("TwoLevel(every=...)", every,
                                "pass the number of steps between disk checkpoints")
        if (isinstance(host_slots, bool) or not isinstance(host_slots, int)
                or not 0 <= host_slots < self.slots):
            raise ValueError(f"TwoLevel(host_slots={host_slots!r}) must be an int in 0 … "
                             f"{self.slots - 1} (slots={self.slots} includes them, and one "
                             "stays in the memory tier)")
        self.disk_slots = disk_slots
        self.every = every
        self.host_slots = host_slots

    def segments(self, n: int) -> list[int]:
        """Segment lengths for ``n`` steps, the last segment's included."""
        n = _check_steps(n)
        if self.every is not None:
            cuts = list(range(0, n, self.every)) + [n]
            return [b - a for a, b in zip(cuts, cuts[1:], strict=False)]
        assert self.disk_slots is not None
        return _two_level_lengths(n, self.slots, self.disk_slots)

    def traffic(self, n: int) -> tuple[int, dict[str, int]]:
        """``(forward_steps, {tier: saves + loads})`` for ``n`` steps, without the actions.

        Counted per distinct segment length (a plan has two or three), so a planner can
        compare many plans quickly; equal to what :meth:`cost` counts on the stub.
        """
        lengths = self.segments(n)
        forward = sum(lengths[:-1])
        use = [0] * self.slots
        for k, length in enumerate(lengths):
            steps, seg = _segment_use(length, self.slots, k == len(lengths) - 1)
            forward += steps
            use = [a + b for a, b in zip(use, seg, strict=True)]
        use.sort(reverse=True)
        memory = self.slots - self.host_slots
        out = {"memory": sum(use[:memory]), "host": sum(use[memory:]),
               "disk": 2 * (len(lengths) - 1)}
        return forward, {name: k for name, k in out.items() if k}

    def tier_slots(self, n: int, *, state_nbytes: int | None = None) -> dict[str, int] | None:
        """``{"memory": …, "host": …, "disk": …}`` (tiers without slots left out)."""
        layout = {"memory": self.slots - self.host_slots, "host": self.host_slots,
                  "disk": len(self.segments(n)) - 1}
        return {name: k for name, k in layout.items() if k}

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`: memory slots first, then the disk's."""
        lengths = self.segments(n)
        starts = [sum(lengths[:j]) for j in range(len(lengths))]
        s = self.slots
        out: list[Action] = []
        for j, (c, length) in enumerate(zip(starts[:-1], lengths[:-1], strict=True)):
            out.append(Save(c, s + j))
            out.append(Advance(c, c + length))
        pool = _SlotPool()
        _binomial_actions(out, starts[-1], n, s, pool, last=True)
        for j in range(len(lengths) - 2, -1, -1):
            c = starts[j]
            out.append(Restore(c, s + j))
            out.append(Free(c, s + j))
            _binomial_actions(out, c, c + lengths[j], s, pool, last=False)
        if self.host_slots:
            out = _busiest_first(out, s)
        return out

    def __repr__(self) -> str:
        level = (f"disk_slots={self.disk_slots}" if self.every is None
                 else f"every={self.every}")
        host = f", host_slots={self.host_slots}" if self.host_slots else ""
        return f"TwoLevel(slots={self.slots}, {level}{host})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TwoLevel) and other.slots == self.slots
                and other.disk_slots == self.disk_slots and other.every == self.every
                and other.host_slots == self.host_slots)

    def __hash__(self) -> int:
        return hash(("TwoLevel", self.slots, self.disk_slots, self.every, self.host_slots))


def _busiest_first(actions: list[Action], memory: int) -> list[Action]:
    """Renumber slots ``0 … memory-1`` so the most-used have the lowest numbers.

    A permutation of slot numbers keeps a stream legal and its counts; with the fastest
    tier first in the layout, the slots read and written most land there (the placement
    rule of multistage checkpointing, Stumm and Walther 2009).
    """
    use = [0] * memory
    for act in actions:
        slot = getattr(act, "slot", None)
        if type(act) is not Free and slot is not None and slot < memory:
            use[slot] += 1
    order = sorted(range(memory), key=lambda k: (-use[k], k))
    rank = {old: new for new, old in enumerate(order)}
    out: list[Action] = []
    for act in actions:
        if type(act) is not Advance and act.slot is not None and act.slot < memory:
            act = type(act)(act.step, rank[act.slot])
        out.append(act)
    return out


def _parse_bytes(value: int | str, name: str = "bytes") -> int:
    units = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
             "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    if isinstance(value, bool):
        raise TypeError(f"Budget({name}=...) must be an int or a string like '2GiB', "
                        f"got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number):]
        try:
            scale = units[unit]
            return int(float(number) * scale)
        except (KeyError, ValueError):
            pass
    raise ValueError(
        f"Budget({name}={value!r}) is not a size; pass an int number of bytes or a string "
        "such as '512MiB' or '2GiB'"
    )


#: Bytes per second the planner assumes for a tier when none is measured or given: the
#: memory tier is the stepper's device pool (in-place copies), host RAM is a NumPy copy
#: through the stepper's export and import. The disk's is measured (see
#: :func:`diffsim.stores.disk_bandwidth`).
TIER_BANDWIDTH = {"memory": 20e9, "host": 2e9, "disk": 0.3e9}
#: Bytes of state one forward step advances per second, for the planner's first estimate
#: of a step's time before the tape has timed the stepper (measured: 3D acoustic order 8
#: on this project's 2-core reference machine, about 1.3 GB/s).
STEP_STATE_RATE = 1.3e9


def _size(name: str, value: int | str | None) -> int | None:
    if value is None:
        return None
    size = _parse_bytes(value, name)
    if size < 0:
        raise ValueError(f"Budget({name}={value!r}) must be >= 0 bytes")
    return size


def _disk_candidates(limit: int) -> list[int]:
    """Disk-state counts the planner compares: all up to 64, then about 10 % apart."""
    if limit <= 64:
        return list(range(limit + 1))
    out = set(range(65))
    d = 64.0
    while d < limit:
        d *= 1.1
        out.add(min(limit, round(d)))
    return sorted(out)


class Budget(Schedule):
    """Pick a schedule from byte budgets per tier: the one expected to run fastest.

    With only ``bytes`` (the memory tier: the stepper's device pool): ``slots = bytes //
    state_nbytes``; store-all when ``n - 1`` states fit; else :class:`Uniform` with the
    segment length that needs the fewest forward steps among those that fit (about ``2
    sqrt(n)`` states are needed); else :class:`Binomial` with ``slots``.

    With ``host`` and/or ``disk`` too: store-all in memory when it fits; else every
    :class:`TwoLevel` split (memory and host slots for the binomial level, 0 … the disk's
    capacity of disk states) and the memory-only pick are costed as ``forward_steps x
    step time + sum over tiers of (saves + loads) x state bytes / bandwidth`` and the
    cheapest wins. The step time is ``step_seconds`` when given, else the tape's measure
    of the stepper from an earlier run, else ``state_nbytes / STEP_STATE_RATE``; the
    disk's bandwidth is measured once per process in ``directory`` (see
    :func:`diffsim.stores.disk_bandwidth`) unless ``bandwidth`` gives it. The disk
    budget is capped by the free space there (with a warning).

    The budgets cover checkpoints only; the stepper's live buffers come on top.

    Args:
        bytes: the memory tier's budget, an int or a string such as ``"2GiB"``.
        host: host RAM for checkpoints (a :class:`~diffsim.stores.HostStore` tier).
        disk: disk space for checkpoints (a :class:`~diffsim.stores.DiskStore` tier).
        directory: where disk checkpoints go (default ``$DIFFSIM_CHECKPOINT_DIR`` or the
            system's temporary directory).
        bandwidth: bytes per second per tier name, overriding the planner's figures.
        step_seconds: seconds one forward step takes, overriding the estimate.
    """

    def __init__(self, *, bytes: int | str, host: int | str | None = None,  # noqa: A002
                 disk: int | str | None = None,
                 directory: str | os.PathLike[str] | None = None,
                 bandwidth: dict[str, float] | None = None,
                 step_seconds: float | None = None) -> None:
        self.bytes = _parse_bytes(bytes, "bytes")
        if self.bytes < 1:
            raise ValueError(f"Budget(bytes={bytes!r}) must be positive")
        self.host = _size("host", host)
        self.disk = _size("disk", disk)
        self.directory = None if directory is None else os.fspath(directory)
        self.bandwidth = dict(bandwidth or {})
        for name, value in self.bandwidth.items():
            if name not in TIERS or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"Budget(bandwidth={bandwidth!r}): keys are {TIERS}, values "
                                 "positive bytes per second")
        if step_seconds is not None and not (isinstance(step_seconds, int | float)
                                             and step_seconds > 0):
            raise ValueError(f"Budget(step_seconds={step_seconds!r}) must be a positive number")
        self.step_seconds = step_seconds

    def resolve(self, n: int, *, state_nbytes: int | None = None,
                step_seconds: float | None = None) -> Schedule:
        """The concrete schedule for ``n`` steps of states of ``state_nbytes`` bytes each.

        Args:
            n: number of steps.
            state_nbytes: bytes of one stored state (the tape passes it).
            step_seconds: a measured step time (the tape passes one when it has it);
                ``Budget(step_seconds=...)`` takes precedence.

        Raises:
            ValueError: when the memory budget cannot hold one state.
        """
        n = _check_steps(n)
        if state_nbytes is None:
            raise TypeError(
                "Budget needs the size of one state: call resolve/cost/actions with "
                "state_nbytes=... (the tape passes it for you)"
            )
        slots = self.bytes // state_nbytes
        if slots < 1:
            raise ValueError(
                f"checkpoint budget of {self.bytes} bytes cannot hold one state of "
                f"{state_nbytes} bytes; raise the budget to at least {state_nbytes} bytes "
                "(more slots recompute less)"
            )
        if slots >= n - 1:
            return StoreAll()
        memory_only = self._memory_pick(n, slots)
        if not self.host and not self.disk:
            return memory_only
        host_slots = (self.host or 0) // state_nbytes
        disk_slots = min(self._disk_capacity(state_nbytes), n - 1)
        seconds = self.step_seconds or step_seconds or state_nbytes / STEP_STATE_RATE
        rate = dict(TIER_BANDWIDTH)
        if disk_slots and "disk" not in self.bandwidth:
            from diffsim.stores import disk_bandwidth

            rate["disk"] = disk_bandwidth(self.directory)
        rate.update(self.bandwidth)

        def expected(schedule: Schedule) -> float:
            if isinstance(schedule, TwoLevel):
                forward, use = schedule.traffic(n)
            else:
                cost = schedule.cost(n)
                forward, use = cost.forward_steps, {t.name: t.saves + t.loads for t in cost.tiers}
            return forward * seconds + sum(k * state_nbytes / rate[t] for t, k in use.items())

        best, best_time = memory_only, expected(memory_only)
        for d in _disk_candidates(disk_slots):
            if d == 0 and not host_slots:
                continue  # the memory-only pick covers it
            plan = TwoLevel(slots=slots + host_slots, disk_slots=d, host_slots=host_slots)
            t = expected(plan)
            if t < best_time:
                best, best_time = plan, t
        return best

    def _memory_pick(self, n: int, slots: int) -> Schedule:
        best: tuple[int, int] | None = None
        k0 = max(1, math.isqrt(n))
        for k in range(max(1, k0 // 4), min(n, 4 * k0 + 2) + 1):
            forward, peak = Uniform.predicted(n, k)
            if peak <= slots and (best is None or forward < best[0]):
                best = (forward, k)
        if best is not None:
            return Uniform(every=best[1])
        return Binomial(slots=slots)

    def _disk_capacity(self, state_nbytes: int) -> int:
        """Disk states the budget allows, capped by the free space (warning when it is)."""
        if not self.disk:
            return 0
        want = self.disk // state_nbytes
        from diffsim.stores import checkpoint_directory

        where = checkpoint_directory(self.directory)
        free = shutil.disk_usage(where).free - 2**30  # leave 1 GiB to the file system
        fits = max(0, free // state_nbytes)
        if fits < want:
            warnings.warn(f"checkpoint disk budget {self.disk} bytes exceeds the free space in "
                          f"{where} ({max(free, 0)} bytes above a 1 GiB reserve); using "
                          f"{fits} disk states of {state_nbytes} bytes instead of {want}",
                          stacklevel=3)
        return int(min(want, fits))

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`; needs ``state_nbytes``."""
        return self.resolve(n, state_nbytes=state_nbytes).actions(n)

    def tier_slots(self, n: int, *, state_nbytes: int | None = None) -> dict[str, int] | None:
        """The layout of the schedule it picks."""
        return self.resolve(n, state_nbytes=state_nbytes).tier_slots(n)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in (("host", self.host), ("disk", self.disk))
                        if v is not None)
        return f"Budget(bytes={self.bytes}{extra})"


def simulate(actions: Iterable[Action], n: int, *,
             tiers: dict[str, int] | None = None) -> ScheduleCost:
    """Run an action stream against a counting stub and check that it is legal.

    Legal means: each :class:`Advance` starts from the live state and never passes a
    step that is already reversed; each :class:`Save`/:class:`Free` refers to the live
    state/a held slot; reverse steps come in order ``n-1 … 0``, each with its state
    available, after ``x[n]`` was computed; every step is reversed exactly once.

    Args:
        actions: the stream, e.g. ``Binomial(slots=4).actions(100)``.
        n: number of steps.
        tiers: slots per tier, fastest first (:meth:`Schedule.tier_slots`); ``None``: one
            memory tier. A slot beyond the layout is illegal.

    Returns:
        The counts; see :class:`ScheduleCost`.

    Raises:
        ValueError: naming the first illegal action and why.
    """
    live: int | None = 0
    last: int | None = None
    held: dict[int, int] = {}
    pending = n - 1  # next step to reverse
    reached_end = False
    forward = recompute = saves = restores = peak = max_slot = 0
    bounds: list[tuple[str, int, int]] = []  # (tier, first slot, end)
    for name, count in (tiers or {}).items():
        start = bounds[-1][2] if bounds else 0
        bounds.append((name, start, start + count))
    # per tier: slots (highest local slot + 1), in use, peak, saves, loads, first slot
    per = {name: [0, 0, 0, 0, 0, lo] for name, lo, _ in bounds}

    def tier_of(index: int, act: Action, slot: int) -> list[int] | None:
        if not bounds:
            return None
        for name, lo, hi in bounds:
            if lo <= slot < hi:
                return per[name]
        raise ValueError(f"action {index} {act}: slot {slot} is outside the tiers {tiers}")

    for index, act in enumerate(actions):
        if type(act) is Advance:
            if live != act.start or act.stop <= act.start or act.stop > pending + 1:
                raise ValueError(f"action {index} {act}: live state is x[{live}], "
                                 f"next reverse step is {pending}")
            forward += act.stop - act.start
            if pending < n - 1:
                recompute += act.stop - act.start
            live, last = act.stop, act.stop - 1
            reached_end = reached_end or act.stop == n
        elif type(act) is Save:
            if live != act.step or act.slot in held or act.slot < 0:
                raise ValueError(f"action {index} {act}: live state is x[{live}], "
                                 f"slot {act.slot} holds {held.get(act.slot)}")
            held[act.slot] = act.step
            saves += 1
            peak = max(peak, len(held))
            max_slot = max(max_slot, act.slot + 1)
            if (tc := tier_of(index, act, act.slot)) is not None:
                tc[1] += 1
                tc[2] = max(tc[2], tc[1])
                tc[3] += 1
                tc[0] = max(tc[0], act.slot + 1 - tc[5])
        elif type(act) is Restore:
            if held.get(act.slot) != act.step:
                raise ValueError(f"action {index} {act}: slot holds {held.get(act.slot)}")
            live, last = act.step, None
            restores += 1
            if (tc := tier_of(index, act, act.slot)) is not None:
                tc[4] += 1
        elif type(act) is Free:
            if held.get(act.slot) != act.step:
                raise ValueError(f"action {index} {act}: slot holds {held.get(act.slot)}")
            del held[act.slot]
            if (tc := tier_of(index, act, act.slot)) is not None:
                tc[1] -= 1
        elif type(act) is Reverse:
            if act.step != pending or not reached_end:
                raise ValueError(f"action {index} {act}: expected reverse of step {pending}"
                                 f"{'' if reached_end else ' after x[n] is computed'}")
            if act.slot is None:
                if act.step not in (live, last):
                    raise ValueError(f"action {index} {act}: live buffers hold x[{live}] "
                                     f"and x[{last}]")
            elif held.get(act.slot) != act.step:
                raise ValueError(f"action {index} {act}: slot holds {held.get(act.slot)}")
            else:
                restores += 1
                if (tc := tier_of(index, act, act.slot)) is not None:
                    tc[4] += 1
            live = last = None
            pending -= 1
        else:
            raise TypeError(f"action {index} is not a checkpoint action: {act!r}")
    if pending != -1:
        raise ValueError(f"the stream ended with step {pending} not reversed")
    layout = (tuple(TierCost(name, c[0], c[2], c[3], c[4]) for name, c in per.items())
              if bounds else (TierCost("memory", max_slot, peak, saves, restores),))
    return ScheduleCost(steps=n, forward_steps=forward, recompute_steps=recompute,
                        reverse_steps=n, peak_states=peak, slots=max_slot, saves=saves,
                        restores=restores, tiers=layout)


def brute_force_forward_steps(n: int, s: int) -> int:
    """Minimal forward count by the Griewank-Walther dynamic programme (small n only).

    ``p(n, s) = min_{1<=i<n} i + p(n-i, s-1) + p(i, s)``, ``p(1, s) = 0``,
    ``p(n, 1) = n(n-1)/2``; the result is ``p(n, s) + 1`` in this module's convention.
    Used by the tests as an independent oracle.
    """
    s = min(s, max(n - 1, 1))
    table: dict[tuple[int, int], int] = {}

    def p(m: int, c: int) -> int:
        if m == 1:
            return 0
        if c == 1:
            return m * (m - 1) // 2
        key = (m, c)
        if key not in table:
            table[key] = min(i + p(m - i, c - 1) + p(i, c) for i in range(1, m))
        return table[key]

    return p(n, s) + 1


def brute_force_two_level_forward_steps(n: int, s: int, d: int) -> int:
    """Fewest forward steps with ``d`` write-once disk states and ``s`` memory slots.

    Dynamic programme over every placement of at most ``d`` disk states (small n only):
    ``f(m, 0) = p(m, s) + 1`` and ``f(m, d) = min(f(m, d-1), min_k k + p(k, s) + f(m-k,
    d-1))``, the first segment ``[0, k)`` starting from a disk state, with ``p`` from the
    Griewank-Walther recursion (:func:`brute_force_forward_steps`). Used by the tests
    as an independent oracle for :class:`TwoLevel`.
    """
    table: dict[tuple[int, int], int] = {}
    inner: dict[int, int] = {}

    def p(m: int) -> int:
        if m not in inner:
            inner[m] = brute_force_forward_steps(m, s) - 1
        return inner[m]

    def f(m: int, disks: int) -> int:
        if disks == 0 or m == 1:
            return p(m) + 1
        key = (m, disks)
        if key not in table:
            table[key] = min(f(m, disks - 1),
                             min(k + p(k) + f(m - k, disks - 1) for k in range(1, m)))
        return table[key]

    return f(n, d)


def parse_schedule(spec: str) -> Schedule:
    """A schedule from a short text form, as the CLI takes it.

    Forms: ``all`` (:class:`StoreAll`), ``uniform:K``, ``binomial:S``, ``twolevel:S,D``
    (:class:`TwoLevel` with ``S`` memory slots and ``D`` disk states), ``budget:SIZE``
    with optional ``,host:SIZE``, ``,disk:SIZE`` and ``,dir:PATH`` (e.g.
    ``budget:4GiB,disk:50GiB``).

    Raises:
        ValueError: an unknown form, naming the allowed ones.
    """
    text = spec.strip()
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    try:
        if kind == "all" and not arg:
            return StoreAll()
        if kind == "uniform" and arg:
            return Uniform(every=int(arg))
        if kind == "binomial" and arg:
            return Binomial(slots=int(arg))
        if kind == "twolevel" and arg:
            slots, _, disk = arg.partition(",")
            return TwoLevel(slots=int(slots), disk_slots=int(disk))
        if kind == "budget" and arg:
            size, *extras = arg.split(",")
            options: dict[str, str] = {}
            for item in extras:
                key, sep, value = item.partition(":")
                key = key.strip().lower()
                if not sep or key not in ("host", "disk", "dir") or key in options:
                    raise ValueError(f"{item!r} is not host:SIZE, disk:SIZE or dir:PATH")
                options[key] = value.strip()
            return Budget(bytes=size.strip(), host=options.get("host"),
                          disk=options.get("disk"), directory=options.get("dir"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {spec!r}: {exc}") from exc
    raise ValueError(
        f"checkpoint {spec!r} is not a schedule; use all, uniform:K, binomial:S, twolevel:S,D "
        "or budget:SIZE[,host:SIZE][,disk:SIZE][,dir:PATH] (for example binomial:16 or "
        "budget:4GiB,disk:50GiB)"
    )

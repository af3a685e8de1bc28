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

======================  ==================================  ===================================
schedule                forward_steps                       peak_states
======================  ==================================  ===================================
``StoreAll()``          ``n``                               ``n - 1``
``Uniform(every=k)``    ``n + (m - 1)(k - 1)``, m segments  about ``n/k + k``
``Binomial(slots=s)``   ``p(n, s) + 1`` (optimal)           ``s``
``Budget(bytes=b)``     that of the schedule it picks       that of the schedule it picks
======================  ==================================  ===================================

``p(n, s) = r n - C(s + r, r - 1)`` with ``r`` the smallest integer such that
``C(s + r, s) >= n`` (Griewank and Walther, ACM TOMS 26(1), 2000). For example
``Binomial(slots=10).cost(1000).forward_steps == 3637``.
"""

from __future__ import annotations

import abc
import math
import os
import pathlib
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
    "Uniform",
    "binomial_forward_steps",
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
    """

    steps: int
    forward_steps: int
    recompute_steps: int
    reverse_steps: int
    peak_states: int
    slots: int
    saves: int
    restores: int

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

    def resolve(self, n: int, *, state_nbytes: int | None = None) -> Schedule:  # noqa: ARG002
        """The concrete schedule used for ``n`` steps (itself, except for :class:`Budget`)."""
        return self

    def cost(self, n: int, *, state_nbytes: int | None = None) -> ScheduleCost:
        """Count forward steps and stored states by running the actions on a stub.

        Args:
            n: number of steps, >= 1.
            state_nbytes: bytes one stored state costs; only :class:`Budget` needs it.

        Returns:
            The counts, see :class:`ScheduleCost`.
        """
        return simulate(self.actions(n, state_nbytes=state_nbytes), n)

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
        s = min(self.slots, max(n - 1, 1))
        out: list[Action] = []
        pool = _SlotPool()
        live = [0]  # index of the live state, -1 when unknown
        first = [True]  # the first reverse step also computes x[n] (the outputs)

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
        out.append(Save(0, slot0))
        rev(0, n, s, slot0)
        out.append(Free(0, slot0))
        return out

    def __repr__(self) -> str:
        return f"Binomial(slots={self.slots})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Binomial) and other.slots == self.slots

    def __hash__(self) -> int:
        return hash(("Binomial", self.slots))


def _parse_bytes(value: int | str) -> int:
    units = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
             "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    if isinstance(value, bool):
        raise TypeError(f"Budget(bytes=...) must be an int or a string like '2GiB', got {value!r}")
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
        f"Budget(bytes={value!r}) is not a size; pass an int number of bytes or a string "
        "such as '512MiB' or '2GiB'"
    )


class Budget(Schedule):
    """Pick a schedule from a memory budget for checkpoints, in bytes.

    With ``slots = bytes // state_nbytes`` stored states affordable: store-all when
    ``n - 1`` states fit; else :class:`Uniform` with the segment length that needs the
    fewest forward steps among those that fit (about ``2 sqrt(n)`` states are needed);
    else :class:`Binomial` with ``slots``. The budget covers checkpoints only; the
    stepper's live buffers (two states) come on top.

    Args:
        bytes: the budget, an int or a string such as ``"2GiB"`` or ``"512MiB"``.
    """

    def __init__(self, *, bytes: int | str) -> None:  # noqa: A002
        self.bytes = _parse_bytes(bytes)
        if self.bytes < 1:
            raise ValueError(f"Budget(bytes={bytes!r}) must be positive")

    def resolve(self, n: int, *, state_nbytes: int | None = None) -> Schedule:
        """The concrete schedule for ``n`` steps of states of ``state_nbytes`` bytes each.

        Raises:
            ValueError: when the budget cannot hold one state.
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
        best: tuple[int, int] | None = None
        k0 = max(1, math.isqrt(n))
        for k in range(max(1, k0 // 4), min(n, 4 * k0 + 2) + 1):
            forward, peak = Uniform.predicted(n, k)
            if peak <= slots and (best is None or forward < best[0]):
                best = (forward, k)
        if best is not None:
            return Uniform(every=best[1])
        return Binomial(slots=slots)

    def actions(self, n: int, *, state_nbytes: int | None = None) -> list[Action]:
        """See :meth:`Schedule.actions`; needs ``state_nbytes``."""
        return self.resolve(n, state_nbytes=state_nbytes).actions(n)

    def __repr__(self) -> str:
        return f"Budget(bytes={self.bytes})"


def simulate(actions: Iterable[Action], n: int) -> ScheduleCost:
    """Run an action stream against a counting stub and check that it is legal.

    Legal means: each :class:`Advance` starts from the live state and never passes a
    step that is already reversed; each :class:`Save`/:class:`Free` refers to the live
    state/a held slot; reverse steps come in order ``n-1 … 0``, each with its state
    available, after ``x[n]`` was computed; every step is reversed exactly once.

    Args:
        actions: the stream, e.g. ``Binomial(slots=4).actions(100)``.
        n: number of steps.

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
        elif type(act) is Restore:
            if held.get(act.slot) != act.step:
                raise ValueError(f"action {index} {act}: slot holds {held.get(act.slot)}")
            live, last = act.step, None
            restores += 1
        elif type(act) is Free:
            if held.get(act.slot) != act.step:
                raise ValueError(f"action {index} {act}: slot holds {held.get(act.slot)}")
            del held[act.slot]
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
            live = last = None
            pending -= 1
        else:
            raise TypeError(f"action {index} is not a checkpoint action: {act!r}")
    if pending != -1:
        raise ValueError(f"the stream ended with step {pending} not reversed")
    return ScheduleCost(steps=n, forward_steps=forward, recompute_steps=recompute,
                        reverse_steps=n, peak_states=peak, slots=max_slot, saves=saves,
                        restores=restores)


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


def parse_schedule(spec: str) -> Schedule:
    """A schedule from a short text form, as the CLI takes it.

    Forms: ``all`` (:class:`StoreAll`), ``uniform:K``, ``binomial:S``, ``budget:SIZE``
    (e.g. ``budget:2GiB``).

    Raises:
        ValueError: an unknown form, naming the allowed ones.
    """
    text = spec.strip().lower()
    kind, _, arg = text.partition(":")
    try:
        if kind == "all" and not arg:
            return StoreAll()
        if kind == "uniform" and arg:
            return Uniform(every=int(arg))
        if kind == "binomial" and arg:
            return Binomial(slots=int(arg))
        if kind == "budget" and arg:
            return Budget(bytes=spec.strip().partition(":")[2])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {spec!r}: {exc}") from exc
    raise ValueError(
        f"checkpoint {spec!r} is not a schedule; use all, uniform:K, binomial:S or budget:SIZE "
        "(for example binomial:16 or budget:2GiB)"
    )

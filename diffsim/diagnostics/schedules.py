"""Pictures of checkpoint schedules: the action diagram and the memory/recompute trade-off."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffsim.checkpoint import (
    Advance,
    Binomial,
    Budget,
    Free,
    Restore,
    Reverse,
    Save,
    Schedule,
    StoreAll,
    Uniform,
    binomial_forward_steps,
)

__all__ = ["Tradeoff", "draw_tradeoff", "plot_schedule", "tradeoff"]


def plot_schedule(schedule: Schedule, n: int, path: str | pathlib.Path, *,
                  state_nbytes: int | None = None, title: str | None = None) -> None:
    """Draw a schedule's actions for ``n`` steps (PNG or SVG by the suffix of ``path``).

    Time steps run across, wall-clock order down the page: a forward advance is a line
    going right (one row per step executed), a reverse step a line going left, a restore
    a dashed jump back to the checkpoint, and each stored state a grey bar from its save
    to its release, its save marked with a square.
    """
    from diffsim._plot import pyplot, save_figure

    actions = schedule.actions(n, state_nbytes=state_nbytes)
    cost = schedule.cost(n, state_nbytes=state_nbytes)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6.0))
    clock, pos = 0, 0
    held: dict[int, tuple[int, int]] = {}   # slot -> (step, save time)
    bars: list[tuple[int, int, int]] = []
    fwd: list[tuple[list[int], list[int]]] = []
    rev: list[tuple[list[int], list[int]]] = []
    jumps: list[tuple[list[int], list[int]]] = []
    saves: list[tuple[int, int]] = []
    for act in actions:
        if type(act) is Advance:
            if act.start != pos:
                jumps.append(([pos, act.start], [clock, clock]))
            fwd.append(([act.start, act.stop], [clock, clock + act.stop - act.start]))
            clock += act.stop - act.start
            pos = act.stop
        elif type(act) is Save:
            held[act.slot] = (act.step, clock)
            saves.append((act.step, clock))
        elif type(act) is Restore:
            jumps.append(([pos, act.step], [clock, clock]))
            pos = act.step
        elif type(act) is Free:
            step, since = held.pop(act.slot)
            bars.append((step, since, clock))
        elif type(act) is Reverse:
            if act.slot is not None:
                jumps.append(([pos, act.step + 1], [clock, clock]))
            rev.append(([act.step + 1, act.step], [clock, clock + 1]))
            clock += 1
            pos = act.step
    for step, since in held.values():
        bars.append((step, since, clock))
    for step, since, until in bars:
        ax.plot([step, step], [since, until], color="0.8", lw=2.5, zorder=1)
    for i, (xs, ys) in enumerate(fwd):
        ax.plot(xs, ys, color="C0", lw=1.4, zorder=3, label="forward" if i == 0 else None)
    for i, (xs, ys) in enumerate(rev):
        ax.plot(xs, ys, color="C3", lw=1.4, zorder=3, label="reverse" if i == 0 else None)
    for i, (xs, ys) in enumerate(jumps):
        ax.plot(xs, ys, color="C2", lw=0.8, ls="--", zorder=2,
                label="restore" if i == 0 else None)
    if saves:
        sx, sy = zip(*saves, strict=True)
        ax.plot(sx, sy, "s", color="k", ms=3.5, zorder=4, label="save")
    ax.plot([], [], color="0.8", lw=2.5, label="stored state")
    ax.set_xlim(-0.5, n + 0.5)
    ax.set_ylim(clock + 0.5, -0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("execution order (forward and reverse steps)")
    ax.set_title(title or f"{schedule!r}, n = {n}: {cost.forward_steps} forward steps, "
                          f"{cost.peak_states} stored states")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, pathlib.Path(path))


@dataclass(frozen=True)
class Tradeoff:
    """Forward steps against checkpoint memory for one rollout (see :func:`tradeoff`).

    Attributes:
        steps: the rollout length ``n``.
        state_nbytes: bytes of one stored state.
        rows: ``(schedule, peak stored states, bytes, forward steps)`` for every schedule
            evaluated.
        budgets: ``(budget bytes, the schedule it picks, bytes, forward steps)``.
        measured: ``(label, bytes, forward steps)`` from real runs.
    """

    steps: int
    state_nbytes: int
    rows: tuple[tuple[str, int, int, int], ...]
    budgets: tuple[tuple[int, str, int, int], ...]
    measured: tuple[tuple[str, int, int], ...]

    def table(self) -> str:
        """The points as text."""
        lines = [f"{'schedule':<22} {'states':>7} {'MiB':>10} {'forward':>9} {'x n':>6}"]
        for name, states, nbytes, fwd in self.rows:
            lines.append(f"{name:<22} {states:>7} {nbytes / 2**20:>10.1f} {fwd:>9} "
                         f"{fwd / self.steps:>6.2f}")
        return "\n".join(lines)


def _uniform_points(n: int) -> list[int]:
    ks = sorted({max(2, int(round(k))) for k in np.geomspace(2, max(2, n // 2), 12)})
    return [k for k in ks if k < n]


def _binomial_points(n: int) -> list[int]:
    top = max(1, min(n - 2, 4 * math.isqrt(n)))
    return sorted({max(1, int(round(s))) for s in np.geomspace(1, top, 14)})


def tradeoff(state_nbytes: int, n: int, path: str | pathlib.Path | None = None, *,
             budgets: Sequence[int | str] = (), measured: Sequence[Any] = ()) -> Tradeoff:
    """Forward steps against checkpoint memory for StoreAll, Uniform and Binomial.

    Args:
        state_nbytes: bytes of one stored state (``stepper.state_nbytes``).
        n: rollout length.
        path: where to draw the figure (PNG or SVG); ``None`` draws nothing.
        budgets: memory budgets (bytes or strings like ``"1GiB"``) to mark with the
            schedule :class:`Budget` picks for each.
        measured: real runs to overlay: :class:`~diffsim.TapeReport` objects (their
            peak checkpoint bytes and forward steps) or ``(label, bytes, forward steps)``.

    Returns:
        :class:`Tradeoff`, the points drawn.
    """
    if isinstance(state_nbytes, bool) or not isinstance(state_nbytes, int) or state_nbytes < 1:
        raise ValueError(f"state_nbytes={state_nbytes!r} must be a positive int of bytes "
                         "(e.g. stepper.state_nbytes)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n={n!r} must be an int >= 2 steps")
    rows: list[tuple[str, int, int, int]] = []
    rows.append((repr(StoreAll()), n - 1, (n - 1) * state_nbytes, n))
    for k in _uniform_points(n):
        forward, peak = Uniform.predicted(n, k)
        rows.append((repr(Uniform(every=k)), peak, peak * state_nbytes, forward))
    for s in _binomial_points(n):
        rows.append((repr(Binomial(slots=s)), s, s * state_nbytes,
                     binomial_forward_steps(n, s)))
    marks = []
    for b in budgets:
        sched = Budget(bytes=b).resolve(n, state_nbytes=state_nbytes)
        cost = sched.cost(n)
        marks.append((Budget(bytes=b).bytes, repr(sched), cost.peak_states * state_nbytes,
                      cost.forward_steps))
    points = []
    for m in measured:
        if hasattr(m, "peak_checkpoint_bytes"):
            points.append((repr(m.schedule), int(m.peak_checkpoint_bytes), int(m.forward_steps)))
        else:
            label, nbytes, forward = m
            points.append((str(label), int(nbytes), int(forward)))
    result = Tradeoff(n, state_nbytes, tuple(rows), tuple(marks), tuple(points))
    if path is not None:
        draw_tradeoff(result, pathlib.Path(path))
    return result


def draw_tradeoff(t: Tradeoff, path: pathlib.Path) -> None:
    """Draw a :class:`Tradeoff` (PNG or SVG by ``path``'s suffix)."""
    from diffsim._plot import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    mib = 2.0**20
    for prefix, style, label in (("Uniform", "o", "Uniform(every=k)"),
                                 ("Binomial", "s-", "Binomial(slots=s), optimal")):
        pts = sorted((b, f) for name, _, b, f in t.rows if name.startswith(prefix))
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(np.array(xs) / mib, np.array(ys) / t.steps, style, ms=4, label=label)
    store = next(r for r in t.rows if r[0].startswith("StoreAll"))
    ax.plot([store[2] / mib], [1.0], "*", ms=12, color="k", label="StoreAll")
    for nbytes, name, _used, forward in t.budgets:
        ax.axvline(nbytes / mib, color="0.6", lw=0.8, ls=":")
        ax.annotate(f"budget {nbytes / mib:.3g} MiB:\n{name}", (nbytes / mib, forward / t.steps),
                    fontsize=7, xytext=(4, 6), textcoords="offset points")
    for i, (label, nbytes, forward) in enumerate(t.measured):
        ax.plot([max(nbytes, 1) / mib], [forward / t.steps], "D", color="C3", ms=7, mfc="none",
                label="measured" if i == 0 else None)
        ax.annotate(label, (max(nbytes, 1) / mib, forward / t.steps), fontsize=7,
                    xytext=(4, -10), textcoords="offset points", color="C3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"checkpoint memory (MiB; one state = {t.state_nbytes / mib:.3g} MiB)")
    ax.set_ylabel("forward steps / n")
    ax.set_title(f"Recomputation against memory, n = {t.steps}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)

"""Worker tasks on the CPU: how many a wave kernel runs, and the barrier they share.

A worker kernel runs a whole range of time steps in one launch as ``workers`` tasks of
one parallel loop (one task per thread of Taichi's pool, see :func:`barrier_field`).
Shots are dealt out whole, round-robin, while every worker gets one (each shot's
wavefield stays in its core's cache, no synchronisation); the shots left over (all of
them for a single shot) are split into bands of rows, one band per worker, with a
barrier between the passes of each step. Every cell is computed by the same arithmetic
in the same order whatever the number of workers, so results are bitwise identical
(tested); only the costate norms (diagnostics, summed per band) may differ in the last
bits.

Why not Taichi's own parallel loops: each launch and each parallel loop costs the
thread pool's hand-off (tens of microseconds a step), and Taichi's CPU pass that hands
each thread at least 512 iterations left every loop of up to 512 rows on one thread
(:func:`diffsim._runtime.init` turns that pass off).
"""

from __future__ import annotations

from typing import Any

import taichi as ti

from diffsim._runtime import ensure_init

__all__ = ["BAND_CELLS", "Split", "barrier_field", "split"]

#: Cells of one shot (padded, all lanes) from which a shot left over after the
#: round-robin deal is split into bands between the workers rather than run by one.
#: Measured on 2 cores (``benchmarks/wave_threads.py``): banded steps pay two or three
#: barriers each, about a microsecond apiece.
BAND_CELLS = 20_000

_BARRIER: list[Any] = []


class Split(tuple):
    """How a launch shares its shots: ``(workers, alone)``.

    ``workers`` tasks; shots ``0 … alone-1`` are dealt whole (shot ``s`` to worker
    ``s % workers``); shots ``alone … shots-1`` are split into row bands.
    """

    def __new__(cls, workers: int, alone: int) -> Split:
        """The pair ``(workers, alone)``."""
        return super().__new__(cls, (workers, alone))

    @property
    def workers(self) -> int:
        """Tasks of the launch (1: the launching thread's loop alone)."""
        return int(self[0])

    @property
    def alone(self) -> int:
        """Shots dealt whole to the workers; the rest are banded."""
        return int(self[1])


def threads() -> int:
    """Threads a worker kernel may use: Taichi's CPU pool, 1 on a GPU backend."""
    rt = ensure_init()
    if rt.arch != "cpu" or ti.lang.impl.current_cfg().make_cpu_multithreading_loop:
        # with Taichi's chunking pass on, a loop over a few tasks runs on one thread,
        # and a barrier between its tasks would wait for ever
        return 1
    return max(1, int(rt.threads or 1))


def split(shots: int, cells: int, *, band_cells: int = BAND_CELLS) -> Split:
    """The workers and the shots dealt whole for ``shots`` shots of ``cells`` cells each.

    Every thread works when there are at least as many shots as threads, or when a
    shot has ``band_cells`` cells or more (then the shots beyond the last full round go
    in bands); smaller single shots run on one thread (barriers would cost more than
    the second core gives).
    """
    t = threads()
    if t == 1 or shots < 1:
        return Split(1, shots)
    if cells >= band_cells:
        return Split(t, shots - shots % t if shots >= t else 0)
    if shots >= t:
        return Split(t, shots)
    return Split(1, shots)


def barrier_field() -> Any:
    """The process's barrier counter, an ``i32`` field of one element (made on first use).

    Kernel launches on the CPU run one at a time, and each worker launch zeroes it first.
    """
    if not _BARRIER:
        ensure_init()
        _BARRIER.append(ti.field(ti.i32, shape=(1,)))
    return _BARRIER[0]

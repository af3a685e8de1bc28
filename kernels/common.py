"""Slot utilities shared by every stepper: copy, zero and reduce one slot of a field.

A slot-indexed field has the slot on its leading axis: ``f[slot, ...]``.
"""

import functools
from typing import Any

import taichi as ti
from taichi.lang import impl


@ti.kernel
def zero_slot(f: ti.template(), s: ti.i32):
    """``f[s, ...] = 0``."""
    for idx in ti.grouped(ti.ndrange(*f.shape[1:])):
        f[(s, *idx)] = ti.zero(f[(s, *idx)])


@ti.kernel
def sumsq_slot(f: ti.template(), s: ti.i32) -> ti.f64:
    """Sum of squares of ``f[s, ...]`` (scalar fields), accumulated in f64."""
    acc = ti.cast(0.0, ti.f64)
    for idx in ti.grouped(ti.ndrange(*f.shape[1:])):
        v = ti.cast(f[(s, *idx)], ti.f64)
        acc += v * v
    return acc


@ti.kernel
def sumsq_slot_vec(f: ti.template(), s: ti.i32) -> ti.f64:
    """Sum of squares of ``f[s, ...]`` (vector fields), accumulated in f64."""
    acc = ti.cast(0.0, ti.f64)
    for idx in ti.grouped(ti.ndrange(*f.shape[1:])):
        v = ti.cast(f[(s, *idx)], ti.f64)
        acc += v.dot(v)
    return acc


@ti.kernel
def store_level(ring: ti.template(), level: ti.i32, pool: ti.template(), slot: ti.i32,
                j: ti.i32):
    """``pool[slot, j, ...] = ring[level, ...]`` (save one time level of a state field)."""
    for idx in ti.grouped(ti.ndrange(*ring.shape[1:])):
        pool[(slot, j, *idx)] = ring[(level, *idx)]


@ti.kernel
def load_level(pool: ti.template(), slot: ti.i32, j: ti.i32, ring: ti.template(),
               level: ti.i32):
    """``ring[level, ...] = pool[slot, j, ...]`` (restore one time level of a state field)."""
    for idx in ti.grouped(ti.ndrange(*ring.shape[1:])):
        ring[(level, *idx)] = pool[(slot, j, *idx)]


def lean(kernel: Any) -> Any:
    """``kernel`` compiled without Taichi's advanced IR optimisation (LLVM still optimises).

    For the large stencil kernels of the elastic and cell engines (measured, f32, cold
    cache, one thread): the elastic engine's first forward and gradient at order 4 took
    15.6 s instead of 77 s (order 8: 28 s instead of about 330 s) at the same speed after
    (forward 0.092 / 0.094 s, reverse 0.47 / 0.49 s at 200^2 x 500 steps); the cell
    engine's first variable-density forward and gradient 12.1 s instead of 38 s (then
    0.23 / 0.33 s forward, 1.99 / 2.31 s gradient at 300^2 x 600). The constant-density
    arena engine's gradient ran 1.5x slower this way, so it keeps the optimisation. The
    setting is read when a kernel compiles, so it is switched off around each call.
    """
    @functools.wraps(kernel)
    def call(*args: Any) -> Any:
        cfg = impl.current_cfg()
        before = cfg.advanced_optimization
        cfg.advanced_optimization = False
        try:
            return kernel(*args)
        finally:
            cfg.advanced_optimization = before
    return call


@ti.func
def sync(bar: ti.template(), group: ti.i32, passed: ti.i32) -> ti.i32:
    """The barrier of a group of ``group`` worker tasks; returns the barriers passed.

    Each task waits until all have arrived at barrier ``passed + 1`` (``bar[0]`` counts
    arrivals since the launch zeroed it); nothing for a group of one. Only for the tasks
    of one parallel loop that the thread pool runs at once (no more tasks than threads;
    :mod:`diffsim._parallel`): a task waiting here keeps its thread.
    """
    n = passed
    if group > 1:
        n += 1
        ti.atomic_add(bar[0], 1)
        while ti.atomic_add(bar[0], 0) < n * group:
            pass
    return n


@ti.func
def cut(n: ti.i32, part: ti.i32, parts: ti.i32) -> ti.i32:
    """Where part ``part`` of ``parts`` nearly equal parts of ``0 … n-1`` begins."""
    return (n * part) // parts


@ti.func
def units(shots: ti.i32, w: ti.i32, workers: ti.i32, alone: ti.i32) -> ti.i32:
    """Work units of worker ``w`` of ``workers``.

    Its whole shots (``s % workers == w``, ``s < alone``), then one band of each of the
    shots from ``alone`` on.
    """
    return (alone + workers - 1 - w) // workers + shots - alone


@ti.func
def unit(k: ti.i32, w: ti.i32, workers: ti.i32, alone: ti.i32):
    """Unit ``k`` of worker ``w`` (:func:`units`) as ``(shot, rank in its group, group size)``."""
    mine = (alone + workers - 1 - w) // workers
    s, rank, group = k * workers + w, 0, 1
    if k >= mine:
        s, rank, group = alone + k - mine, w, workers
    return s, rank, group


def band(f: Any, s: Any, rank: Any, group: Any, **extra: Any) -> Any:
    """Bundle ``f`` on shot ``s`` and band ``rank`` of ``group`` of its rows (plain Python).

    For the cell-style bundles (``shots``, ``all_rows``, ``in_rows``: row ranges with
    and without the frame): the first row axis is cut into ``group`` parts, each range
    kept inside the band, which is also set as ``band`` (rows a worker's sources inject
    into). ``extra`` items replace others. Run while a kernel compiles.
    """
    n = f.all_rows[0][1]
    lo, hi = cut(n, rank, group), cut(n, rank + 1, group)
    i0, i1 = f.in_rows[0]
    return type(f)(**{**f.__dict__, "shots": (s, s + 1), "band": (lo, hi),
                      "all_rows": ((lo, hi), *f.all_rows[1:]),
                      "in_rows": ((ti.max(lo, i0), ti.min(hi, i1)), *f.in_rows[1:]), **extra})

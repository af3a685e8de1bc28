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

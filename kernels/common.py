"""Slot utilities shared by every stepper: copy, zero and reduce one slot of a field.

A slot-indexed field has the slot on its leading axis: ``f[slot, ...]``.
"""

import taichi as ti


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

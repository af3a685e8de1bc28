"""Whole ranges of steps in one launch on NumPy arrays: the CPU path of the spring steppers."""

from typing import Any, TypeAlias

import taichi as ti

from diffsim.kernels.common import cut, sync
from diffsim.kernels.springs.adjoint import (
    _adjoint_channel,
    _adjoint_gather,
    _adjoint_particle,
    _adjoint_spring,
)
from diffsim.kernels.springs.forward import _spring_force, _step_particle, _sum_force


def spring_fused(dim: int, dtype: Any) -> tuple[Any, Any]:
    """The whole-range forward and reverse kernels for ``dim``-vectors of ``dtype``.

    Built once per pair and shared by every system: all arguments are arrays (NumPy
    arrays on the CPU, used in place), so a new topology, size or checkpoint pool needs
    no recompilation. Each kernel runs many steps in one launch as ``workers`` tasks
    (each owning a range of the springs, the particles and the actuation channels, with
    the barrier counter ``bar`` between passes; :mod:`diffsim._parallel`), so the
    per-launch cost of passing some thirty arrays is paid once per run of steps, not once
    per step, and every thread works. The
    arithmetic is that of :func:`spring_step` and :func:`spring_adjoint` (the same
    functions), so results are identical to the per-step kernels bit for bit.

    ``forward(x, v, px, pv, out, <system>, fs, saves, rows, start, stop, period, dt,
    ground, use_ground, friction, outv, record_v, bar, workers)`` runs steps
    ``start … stop-1`` on the states ``x, v`` (time ``t`` at level ``t % period``:
    ``period = 2`` for the tape's ring, more than the step count for a whole trajectory):
    before step ``t`` (and after the last, for
    ``t = stop``) it stores ``x[t], v[t]`` in checkpoint ``px, pv[saves[t - start]]`` when
    that is ``>= 0``; after step ``t`` it writes ``x[t+1]`` into ``out[rows[t+1]]`` when
    that is ``>= 0`` (and ``v[t+1]`` into ``outv[rows[t+1]]`` when ``record_v``).

    ``reverse(x, v, px, pv, xg, vg, cot, <system>, chan_offsets, chan_springs, <scratch>,
    <gradients>, norms, slots, rows, top, count, spare, measure, dt, …, cotv, seed_v, bar,
    workers)``
    reverses steps ``top, top-1, … top-count+1`` (the squared costate norm of step ``t``
    summed over ``norms[(t + 1) * workers + w]``): step ``top - j`` reads its state from
    checkpoint ``slots[j]`` (``< 0``: from the ring, copied to slot ``spare`` first), adds
    the output cotangent ``cot[rows[t+1]]`` into ``λ_x[t+1]`` (and ``cotv[rows[t+1]]``
    into ``λ_v[t+1]`` when ``seed_v``), then runs the adjoint.
    """
    key = (dim, dtype)
    if key not in _FUSED_KERNELS:
        _FUSED_KERNELS[key] = _build_fused(ti.types.vector(dim, dtype), dtype)
    return _FUSED_KERNELS[key]


def _build_fused(vec: Any, dtype: Any) -> tuple[Any, Any]:
    # Taichi types of the kernels' arguments; as TypeAliases they are Any to a type checker
    v1: TypeAlias = ti.types.ndarray(dtype=vec, ndim=1)
    v2: TypeAlias = ti.types.ndarray(dtype=vec, ndim=2)
    s1: TypeAlias = ti.types.ndarray(dtype=dtype, ndim=1)
    s2: TypeAlias = ti.types.ndarray(dtype=dtype, ndim=2)
    i1: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1: TypeAlias = ti.types.ndarray(dtype=ti.f64, ndim=1)

    @ti.kernel
    def forward(x: v2, v: v2, px: v2, pv: v2, out: v2, stiffness: s1, rest: s1, damping: s1,
                mass: s1, act: s2, channel: i1, sa: i1, sb: i1, offsets: i1, adj: i1, sign: s1,
                fixed: i1, gravity: v1, fs: v1, saves: i1, rows: i1, start: ti.i32,
                stop: ti.i32, period: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                friction: ti.f64, outv: v2, record_v: ti.i32, bar: ti.template(),
                workers: ti.i32):
        h = ti.cast(dt, dtype)
        gnd = ti.cast(ground, dtype)
        mu = ti.cast(friction, dtype)
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            # worker w owns springs [s0, s1) and particles [i0, i1); a barrier after
            # each pass that reads what others wrote
            s0, s1_ = cut(sa.shape[0], w, workers), cut(sa.shape[0], w + 1, workers)
            i0, i1 = cut(x.shape[1], w, workers), cut(x.shape[1], w + 1, workers)
            nb = 0
            for t in range(start, stop + 1):
                src = t % period
                slot = saves[t - start]
                if t < stop:
                    dst = (t + 1) % period
                    for s in range(s0, s1_):
                        fs[s] = _spring_force(x, v, stiffness, rest, damping, act, channel, sa,
                                              sb, src, t, s)
                    nb = sync(bar, workers, nb)
                    for i in range(i0, i1):
                        if slot >= 0:  # the checkpoint, in the pass that reads the state
                            px[slot, i] = x[src, i]
                            pv[slot, i] = v[src, i]
                        f = _sum_force(fs, offsets, adj, sign, i)
                        _step_particle(x, v, mass, fixed, gravity, f, src, dst, h, gnd,
                                       use_ground, mu, i, True)
                    row = rows[t + 1]
                    if row >= 0:
                        for i in range(i0, i1):
                            out[row, i] = x[dst, i]
                        if record_v:
                            for i in range(i0, i1):
                                outv[row, i] = v[dst, i]
                    nb = sync(bar, workers, nb)
                elif slot >= 0:
                    for i in range(i0, i1):
                        px[slot, i] = x[src, i]
                        pv[slot, i] = v[src, i]

    @ti.kernel
    def reverse(x: v2, v: v2, px: v2, pv: v2, xg: v2, vg: v2, cot: v2, stiffness: s1,
                rest: s1, damping: s1, mass: s1, act: s2, channel: i1, sa: i1, sb: i1,
                offsets: i1, adj: i1, sign: s1, fixed: i1, gravity: v1, chan_offsets: i1,
                chan_springs: i1, fs: v1, pbar: v1, fbar: v1, ebar: v1, rbar: v1, lbar: s1,
                k_grad: s1, rest_grad: s1, damping_grad: s1, mass_grad: s1, act_grad: s2,
                norms: f1, slots: i1, rows: i1, top: ti.i32, count: ti.i32, spare: ti.i32,
                measure: ti.i32, dt: ti.f64, ground: ti.f64, use_ground: ti.i32,
                friction: ti.f64, cotv: v2, seed_v: ti.i32, bar: ti.template(),
                workers: ti.i32):
        h = ti.cast(dt, dtype)
        gnd = ti.cast(ground, dtype)
        mu = ti.cast(friction, dtype)
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            s0, s1_ = cut(sa.shape[0], w, workers), cut(sa.shape[0], w + 1, workers)
            i0, i1 = cut(x.shape[1], w, workers), cut(x.shape[1], w + 1, workers)
            nch = chan_offsets.shape[0] - 1
            c0, c1 = cut(nch, w, workers), cut(nch, w + 1, workers)
            nb = 0
            for j in range(count):
                step = top - j
                slot = slots[j]
                if slot < 0:
                    for i in range(i0, i1):
                        px[spare, i] = x[step % 2, i]
                        pv[spare, i] = v[step % 2, i]
                    slot = spare
                dst = (step + 1) % 2
                row = rows[step + 1]
                if row >= 0:
                    for i in range(i0, i1):
                        xg[dst, i] += cot[row, i]
                    if seed_v:
                        for i in range(i0, i1):
                            vg[dst, i] += cotv[row, i]
                nb = sync(bar, workers, nb)
                for s in range(s0, s1_):
                    fs[s] = _spring_force(px, pv, stiffness, rest, damping, act, channel, sa,
                                          sb, slot, step, s)
                nb = sync(bar, workers, nb)
                for i in range(i0, i1):
                    # each worker its own norm entry: one shared entry cost a contended
                    # atomic a particle
                    _adjoint_particle(px, pv, xg, vg, mass, mass_grad, fixed, gravity, fs,
                                      offsets, adj, sign, pbar, fbar, norms,
                                      (step + 1) * workers + w, slot, dst, step, h, gnd,
                                      use_ground, mu, measure, i)
                nb = sync(bar, workers, nb)
                for s in range(s0, s1_):
                    _adjoint_spring(px, pv, stiffness, rest, damping, act, channel, sa, sb,
                                    fbar, k_grad, rest_grad, damping_grad, lbar, ebar, rbar,
                                    slot, step, s)
                nb = sync(bar, workers, nb)
                for i in range(i0, i1):
                    _adjoint_gather(xg, vg, fixed, offsets, adj, sign, ebar, rbar, pbar, dst,
                                    step % 2, i)
                for c in range(c0, c1):
                    _adjoint_channel(lbar, chan_offsets, chan_springs, act_grad, step, c,
                                     ti.cast(0.0, dtype))
                nb = sync(bar, workers, nb)

    return forward, reverse


#: Compiled (forward, reverse) kernels by (dimension, dtype); see :func:`spring_fused`.
_FUSED_KERNELS: dict[tuple[int, Any], tuple[Any, Any]] = {}

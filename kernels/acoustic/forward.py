"""The forward step: PML memory, the stencil update, sources and receivers, state copies.

Also the field engine's forward kernels (``wave_steps``, ``wave_step``, ``record_traces``,
``copy_state``).
"""

import taichi as ti

from diffsim.kernels.acoustic._blocks import (
    _at,
    _d1r,
    _d1s,
    _d1x,
    _d2r,
    _d2x,
    _row_in,
    _rstrip,
    _sp,
    _xblock,
    _xget,
    _xstrip,
)
from diffsim.kernels.common import cut


# -- forward -------------------------------------------------------------------------------
@ti.func
def _psi_rows(f: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32, J: ti.template(),
              xb: ti.i32):
    """``psi_d[dst] = b_d psi_d[src] + a_d D1_d u[cur] / h_d`` on one block, row axes ``d``."""
    u, psi, pa, pb, inv_h, c1, pm = ti.static((f.u, f.psi, f.pa, f.pb, f.inv_h, f.c1, f.pm))
    for d in ti.static(range(len(psi) - 1)):
        i = J[d + 1]
        if pa[d, i] != 0.0:
            S = _at(_rstrip(J, d, pm), xb)
            psi[d][(dst, *S)] = (pb[d, i] * psi[d][(src, *S)]
                                 + (pa[d, i] * inv_h[d]) * _d1r(u, cur, J, xb, d, c1))


@ti.func
def _psi_x(f: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32, J: ti.template(), j: ti.i32):
    """The x part of :func:`_psi_rows` on x-strip block ``j``."""
    u, psi, pax, pbx, inv_h, c1 = ti.static((f.u, f.psi, f.pax, f.pbx, f.inv_h, f.c1))
    nx = ti.static(len(psi) - 1)
    xb = _xblock(j, f.xs)
    S = _at(J, j)
    d1 = _d1x(u[(cur, *_at(J, xb - 1))], u[(cur, *_at(J, xb))], u[(cur, *_at(J, xb + 1))], c1)
    psi[nx][(dst, *S)] = pbx[xb] * psi[nx][(src, *S)] + pax[xb] * (inv_h[nx] * d1)


@ti.func
def _update_block(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                  dst: ti.i32, J: ti.template(), xb: ti.i32, rowpml: ti.template(),
                  xpml: ti.template()):
    """Leapfrog update of one block of ``u[nxt]``; writes ``zeta[dst]`` in the PML.

    With ``f.sponge`` the Cerjan damping ``g = sg``: ``u+ = g (2 u - g u- + kc lap)``.

    ``rowpml``: the row lies in the PML of a row axis; ``xpml``: the block is an
    x-strip block.
    """
    u, psi, zeta, kc = ti.static((f.u, f.psi, f.zeta, f.kc))
    pa, pb, pax, pbx, mx = ti.static((f.pa, f.pb, f.pax, f.pbx, f.mx))
    inv_h, c1, c2, pm = ti.static((f.inv_h, f.c1, f.c2, f.pm))
    nx = ti.static(len(zeta) - 1)
    mid = u[(cur, *_at(J, xb))]
    lap = ti.zero(mid)
    for d in ti.static(range(nx)):
        q = _d2r(u, cur, J, xb, d, c2) * (inv_h[d] * inv_h[d])
        if ti.static(rowpml):
            # Branch-free (masks) but for the store: a branch only guards writes.
            i = J[d + 1]
            a = pa[d, i]
            S = _at(_rstrip(J, d, pm), xb)
            qp = q + ti.cast(a != 0.0, f.dtype) * (_d1s(f, psi[d], dst, J, xb, d) * inv_h[d])
            z = pb[d, i] * zeta[d][(src, *S)] + a * qp
            if a != 0.0:
                zeta[d][(dst, *S)] = z
            q = qp + z
        lap += q
    q = _d2x(u[(cur, *_at(J, xb - 1))], mid, u[(cur, *_at(J, xb + 1))], c2) * (inv_h[nx] * inv_h[nx])
    if ti.static(xpml):
        S = _at(J, _xstrip(xb, f.xs))
        d1 = _d1x(_xget(f, psi[nx], dst, J, xb - 1), psi[nx][(dst, *S)],
                  _xget(f, psi[nx], dst, J, xb + 1), c1)
        q += mx[xb] * (inv_h[nx] * d1)
        z = pbx[xb] * zeta[nx][(src, *S)] + pax[xb] * q
        zeta[nx][(dst, *S)] = z
        q += z
    lap += q
    if ti.static(f.sponge):
        g = f.sg[_sp(J, xb)]
        u[(nxt, *_at(J, xb))] = ((2.0 * g) * mid - (g * g) * u[(prv, *_at(J, xb))]
                                 + (g * kc[_sp(J, xb)]) * lap)
    else:
        u[(nxt, *_at(J, xb))] = 2.0 * mid - u[(prv, *_at(J, xb))] + kc[_sp(J, xb)] * lap


@ti.func
def _lane_elem(cell: ti.template(), w: ti.template()):
    """Element index of cell ``(shot, z[, y], x)``; its lane is ``(x + w) % w``."""
    return ti.Vector([cell[k] for k in ti.static(range(cell.n - 1))]
                     + [(cell[cell.n - 1] + w) // w])


@ti.func
def _cell(pos: ti.template(), P: ti.template()):
    """Cell ``(shot, z[, y], x)`` of stencil point ``P = (shot, point, offset per axis)``."""
    base = pos[P[0], P[1]]
    return ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(P.n - 2))])


@ti.func
def _inject(f: ti.template(), nxt: ti.i32, step: ti.i32, P: ti.template()):
    """``u[nxt] += scale * amp[shot, source, step] * w`` at one cell of a source's stencil."""
    W, weight = ti.static((f.W, f.src_w))
    w = ti.cast(f.scale, f.dtype) * f.amp[P[0], P[1], step]
    cell = _cell(f.src_pos, P)
    for d in ti.static(range(f.ndim)):
        w *= weight[P[0], P[1], d, P[d + 2]]
    f.u[(nxt, *_lane_elem(cell, W))][(cell[cell.n - 1] + W) % W] += w


@ti.func
def _sample(f: ti.template(), lvl: ti.i32, t: ti.i32, P: ti.template()):
    """``traces[t, shot, receiver] += w u[lvl]`` at one cell of a receiver's stencil."""
    W, weight = ti.static((f.W, f.rec_w))
    w = ti.cast(1.0, f.dtype)
    cell = _cell(f.rec_pos, P)
    for d in ti.static(range(f.ndim)):
        w *= weight[P[0], P[1], d, P[d + 2]]
    f.traces[t, P[0], P[1]] += w * f.u[(lvl, *_lane_elem(cell, W))][(cell[cell.n - 1] + W) % W]


@ti.func
def _record(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """``traces[t] = sum_k w_k u[lvl]`` over each receiver's stencil (serial: a few cells)."""
    ti.loop_config(serialize=True)
    for s, r in ti.ndrange(f.shots, f.traces.shape[2]):
        f.traces[t, s, r] = 0.0
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.rec_pos.shape[1],
                                   *([f.rec_w.shape[3]] * f.ndim))):
        _sample(f, lvl, t, P)


@ti.func
def _psi_pass(f: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32):
    """The PML memory ``psi[dst]`` of every row of ``f.rows`` (:func:`_psi_rows`, :func:`_psi_x`)."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(f.pa, J):
            for xb in range(1, f.xs[2] - 1):
                _psi_rows(f, cur, src, dst, J, xb)
        for j in range(f.xs[3]):
            _psi_x(f, cur, src, dst, J, j)


@ti.func
def _update_pass(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                 dst: ti.i32, step: ti.i32):
    """:func:`_update_block` on every row of ``f.rows`` (the sources are the caller's)."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(f.pa, J):
            for j in range(f.xs[3]):
                _update_block(f, prv, cur, nxt, src, dst, J, _xblock(j, f.xs), True, True)
            for xb in range(f.xs[0], f.xs[1]):
                _update_block(f, prv, cur, nxt, src, dst, J, xb, True, False)
        else:
            for j in range(f.xs[3]):
                _update_block(f, prv, cur, nxt, src, dst, J, _xblock(j, f.xs), False, True)
            for xb in range(f.xs[0], f.xs[1]):
                _update_block(f, prv, cur, nxt, src, dst, J, xb, False, False)


@ti.func
def _fused_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                dst: ti.i32, step: ti.i32):
    """One fused step: PML memory, update, sources, and the receivers at ``step + 1``.

    Its loops are parallel at a kernel's top level (unless ``f.serial``) and serial
    inside a kernel's time loop.
    """
    _psi_pass(f, cur, src, dst)
    _update_pass(f, prv, cur, nxt, src, dst, step)
    ti.loop_config(serialize=True)  # a few cells: cheaper than a parallel task
    for P in ti.grouped(ti.ndrange(f.shots, f.src_pos.shape[1],
                                   *([f.src_w.shape[3]] * f.ndim))):
        _inject(f, nxt, step, P)
    _record(f, nxt, step + 1)


@ti.func
def _copy_state(f: ti.template(), slot: ti.i32, u0: ti.i32, u1: ti.i32, lvl: ti.i32,
                save: ti.template(), part: ti.i32, parts: ti.i32):
    """Save (``save=True``) or restore one state: ``u`` levels ``u0, u1``, ``psi, zeta[lvl]``.

    The checkpoint pools ``f.pool_u [slot, 2, ...]``, ``f.pool_psi``, ``f.pool_zeta
    [slot, 1, ...]``. Only part ``part`` of ``parts`` along each array's first spatial
    axis (a worker's share; ``0, 1`` for all of it).
    """
    u, pu = ti.static((f.u, f.pool_u))
    ti.loop_config(serialize=f.serial)
    for K in ti.grouped(ti.ndrange(f.shots, (cut(u.shape[2], part, parts),
                                             cut(u.shape[2], part + 1, parts)), *u.shape[3:])):
        if ti.static(save):
            pu[(slot, 0, *K)] = u[(u0, *K)]
            pu[(slot, 1, *K)] = u[(u1, *K)]
        else:
            u[(u0, *K)] = pu[(slot, 0, *K)]
            u[(u1, *K)] = pu[(slot, 1, *K)]
    for d in ti.static(range(f.ndim)):
        psi, zeta, pp, pz = ti.static((f.psi[d], f.zeta[d], f.pool_psi[d], f.pool_zeta[d]))
        ti.loop_config(serialize=f.serial)
        for K in ti.grouped(ti.ndrange(f.shots, (cut(psi.shape[2], part, parts),
                                                 cut(psi.shape[2], part + 1, parts)),
                                       *psi.shape[3:])):
            if ti.static(save):
                pp[(slot, 0, *K)] = psi[(lvl, *K)]
                pz[(slot, 0, *K)] = zeta[(lvl, *K)]
            else:
                psi[(lvl, *K)] = pp[(slot, 0, *K)]
                zeta[(lvl, *K)] = pz[(slot, 0, *K)]


# -- the field engine: kernels over Taichi fields (autodiff oracle, GPUs) ------------------
# ``f`` is a template: an object with the attributes of :class:`Arrays` whose arrays are
# Taichi fields (``ug`` is ``u.grad`` and so on). A new set of fields compiles new
# kernel instances.
@ti.kernel
def wave_steps(f: ti.template(), start: ti.i32, stop: ti.i32):
    """Steps ``start … stop-1`` of :func:`_fused_step` in one launch (serial time loop).

    Time levels: ``u`` a ring of 3, ``psi, zeta`` of 2 (``AcousticStepper.level``).
    """
    ti.loop_config(serialize=True)
    for t in range(start, stop):
        _fused_step(f, (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2, t)


@ti.kernel
def wave_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32,
              step: ti.i32, part: ti.template()):
    """One leapfrog step: ``part`` 0 fused (:func:`_fused_step`); 1 and 2 flat.

    Part 1: the PML memory; part 2: update and sources; each one parallel loop over
    (row, block), the loop shape whose Taichi autodiff is exact (the autodiff reverse).
    """
    if ti.static(part == 0):
        _fused_step(f, prv, cur, nxt, src, dst, step)
    # Flat variants (one parallel loop over (row, block), no serial inner loop, written
    # in the kernel itself: a ti.func call adds top-level statements, which Taichi's
    # autodiff rejects): the same block functions in a loop shape whose autodiff is exact.
    if ti.static(part == 1):
        for K in ti.grouped(ti.ndrange(*f.rows, (1, f.xs[2] - 1))):
            J = ti.Vector([K[k] for k in ti.static(range(K.n - 1))])
            xb = K[K.n - 1]
            if _row_in(f.pa, J):
                _psi_rows(f, cur, src, dst, J, xb)
            if xb < f.xs[0] or xb >= f.xs[1]:
                _psi_x(f, cur, src, dst, J, _xstrip(xb, f.xs))
    if ti.static(part == 2):
        for K in ti.grouped(ti.ndrange(*f.rows, (1, f.xs[2] - 1))):
            J = ti.Vector([K[k] for k in ti.static(range(K.n - 1))])
            xb = K[K.n - 1]
            if _row_in(f.pa, J):
                if xb < f.xs[0] or xb >= f.xs[1]:
                    _update_block(f, prv, cur, nxt, src, dst, J, xb, True, True)
                else:
                    _update_block(f, prv, cur, nxt, src, dst, J, xb, True, False)
            else:
                if xb < f.xs[0] or xb >= f.xs[1]:
                    _update_block(f, prv, cur, nxt, src, dst, J, xb, False, True)
                else:
                    _update_block(f, prv, cur, nxt, src, dst, J, xb, False, False)
        for P in ti.grouped(ti.ndrange(f.src_pos.shape[0], f.src_pos.shape[1],
                                       *([f.src_w.shape[3]] * f.ndim))):
            _inject(f, nxt, step, P)


@ti.kernel
def record_traces(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """``traces[t, shot, receiver] = sum_k w_k u[lvl, shot, rec_pos + k]`` (``w = rec_w``)."""
    for s, r in ti.ndrange(f.traces.shape[1], f.traces.shape[2]):
        f.traces[t, s, r] = 0.0
    for P in ti.grouped(ti.ndrange(f.rec_pos.shape[0], f.rec_pos.shape[1],
                                   *([f.rec_w.shape[3]] * f.ndim))):
        _sample(f, lvl, t, P)


@ti.kernel
def copy_state(f: ti.template(), slot: ti.i32, u0: ti.i32, u1: ti.i32, lvl: ti.i32,
               save: ti.template()):
    """Save (``save=True``) or restore one state (see :func:`_copy_state`)."""
    _copy_state(f, slot, u0, u1, lvl, save, 0, 1)



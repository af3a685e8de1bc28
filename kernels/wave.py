"""Kernels of the constant-density acoustic wave equation, 2D and 3D, any even order.

Equation: ``u_tt = c^2 lap(u) + s(t) delta(x - x_s)``, leapfrog in time. Fields are
indexed ``u[level, shot, z, x]`` (2D) or ``u[level, shot, z, y, x]`` (3D); ``J`` below
is the index without the level, ``(shot, *space)``. Stencil coefficients arrive as
compile-time tuples (``ti.template()``), so one kernel serves every order and dimension.

Absorbing boundary: convolutional PML (Pasalic and McGarry 2010 form). Per axis ``d``
with profiles ``a_d, b_d`` (zero/one outside the layer)::

    psi_d^n  = b_d psi_d^{n-1} + a_d  D1_d u^n
    q_d      = D2_d u^n + D1_d psi_d^n
    zeta_d^n = b_d zeta_d^{n-1} + a_d q_d
    u^{n+1}  = 2 u^n - u^{n-1} + dt^2 c^2 sum_d (q_d + zeta_d^n) + dt^2 s^n w / cell

Cells within the stencil radius of the outer edge stay zero (a rigid frame behind the
PML, or the free surface when that face has no PML).
"""

import taichi as ti


@ti.func
def _spatial(J: ti.template()):
    """The spatial part of ``J = (shot, *space)``."""
    return ti.Vector([J[k + 1] for k in ti.static(range(J.n - 1))])


@ti.func
def _d1(f: ti.template(), lvl: ti.i32, J: ti.template(), d: ti.template(), c1: ti.template()):
    """Central first difference along spatial axis ``d`` (no 1/h)."""
    e = ti.Vector.unit(J.n, d + 1, ti.i32)
    acc = ti.cast(0.0, f.dtype)
    for k in ti.static(range(len(c1))):
        acc += c1[k] * (f[(lvl, *(J + (k + 1) * e))] - f[(lvl, *(J - (k + 1) * e))])
    return acc


@ti.func
def _d2(f: ti.template(), lvl: ti.i32, J: ti.template(), d: ti.template(), c2: ti.template()):
    """Central second difference along spatial axis ``d`` (no 1/h^2)."""
    e = ti.Vector.unit(J.n, d + 1, ti.i32)
    acc = c2[0] * f[(lvl, *J)]
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (f[(lvl, *(J + k * e))] + f[(lvl, *(J - k * e))])
    return acc


@ti.kernel
def pml_psi(u: ti.template(), psi: ti.template(), pa: ti.template(), pb: ti.template(),
            cur: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
            bounds: ti.template()):
    """``psi_d[dst] = b_d psi_d[src] + a_d D1_d u[cur] / h_d`` inside the PML of axis ``d``.

    Outside the PML ``psi_d`` is never written and stays zero.
    """
    for J in ti.grouped(ti.ndrange(*bounds)):
        for d in ti.static(range(len(psi))):
            i = J[d + 1]
            if pa[d, i] != 0.0:
                psi[d][(dst, *J)] = pb[d, i] * psi[d][(src, *J)] + pa[d, i] * inv_h[d] * _d1(
                    u, cur, J, d, c1)


@ti.kernel
def wave_update(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                pa: ti.template(), pb: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                src: ti.i32, dst: ti.i32, dt: ti.f64, inv_h: ti.template(), c1: ti.template(),
                c2: ti.template(), bounds: ti.template()):
    """Leapfrog update of ``u[nxt]`` with the PML terms; writes ``zeta[dst]`` in the PML."""
    for J in ti.grouped(ti.ndrange(*bounds)):
        lap = ti.cast(0.0, u.dtype)
        for d in ti.static(range(len(zeta))):
            i = J[d + 1]
            q = _d2(u, cur, J, d, c2) * (inv_h[d] * inv_h[d])
            if pa[d, i] != 0.0:
                q += _d1(psi[d], dst, J, d, c1) * inv_h[d]
                z = pb[d, i] * zeta[d][(src, *J)] + pa[d, i] * q
                zeta[d][(dst, *J)] = z
                q += z
            lap += q
        v = c[_spatial(J)]
        h = ti.cast(dt, u.dtype)
        u[(nxt, *J)] = 2.0 * u[(cur, *J)] - u[(prv, *J)] + h * h * v * v * lap


@ti.kernel
def inject(u: ti.template(), amp: ti.template(), pos: ti.template(), weight: ti.template(),
           nxt: ti.i32, step: ti.i32, scale: ti.f64):
    """``u[nxt] += scale * amp[shot, source, step] * w`` over each source's stencil.

    ``pos[shot, source]`` is the stencil's first cell (a vector of ints), ``weight[shot,
    source, axis, k]`` its separable weights; ``scale = dt^2 / cell volume``.
    """
    for J in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
        w = ti.cast(scale, u.dtype) * amp[J[0], J[1], step]
        base = pos[J[0], J[1]]
        cell = ti.Vector([J[0]] + [base[d] + J[d + 2] for d in ti.static(range(pos.n))])
        for d in ti.static(range(pos.n)):
            w *= weight[J[0], J[1], d, J[d + 2]]
        u[(nxt, *cell)] += w


@ti.kernel
def clear_traces(traces: ti.template(), t: ti.i32):
    """``traces[t, ...] = 0`` (before :func:`sample` accumulates into it)."""
    for s, rcv in ti.ndrange(traces.shape[1], traces.shape[2]):
        traces[t, s, rcv] = 0.0


@ti.kernel
def sample(u: ti.template(), lvl: ti.i32, traces: ti.template(), t: ti.i32, pos: ti.template(),
           weight: ti.template()):
    """``traces[t, shot, receiver] += sum_k w_k u[lvl, shot, pos + k]`` (cleared first)."""
    for J in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
        w = ti.cast(1.0, u.dtype)
        base = pos[J[0], J[1]]
        cell = ti.Vector([J[0]] + [base[d] + J[d + 2] for d in ti.static(range(pos.n))])
        for d in ti.static(range(pos.n)):
            w *= weight[J[0], J[1], d, J[d + 2]]
        traces[t, J[0], J[1]] += w * u[(lvl, *cell)]


# ---------------------------------------------------------------------------------------
# Hand-written adjoint of pml_psi + wave_update, in gather form (three passes).
#
# Forward, per axis d (M = PML mask of axis d, B = M b, K = dt^2 c^2):
#   psi'_d = B psi_d + a D1_d u;  q_d = D2_d u + M D1_d psi'_d;  zeta'_d = B zeta_d + a q_d
#   u+ = 2u - u- + K sum_d (q_d + zeta'_d)
# Adjoint, with lu, lup, lpsi'_d, lzeta'_d the adjoints of (u, u+, psi'_d, zeta'_d):
#   Z_d = lzeta'_d + K lup;  qb_d = K lup + a Z_d;  lzeta_d = B Z_d                 (pass 1)
#   P_d = lpsi'_d - D1_d (M qb_d);  lpsi_d = B P_d                                  (pass 2)
#   lu <- lu + 2 lup + sum_d (D2_d qb_d - D1_d (a P_d));  lu- = -lup               (pass 3)
#   dL/dc += 2 c dt^2 sum_shots lup * sum_d (q_d + zeta'_d)
# (D2 is symmetric and D1 antisymmetric; frame cells hold zeros, so plain gathers are exact.)
# ---------------------------------------------------------------------------------------


@ti.kernel
def adjoint_pass1(u: ti.template(), zeta: ti.template(), c: ti.template(), pa: ti.template(),
                  pb: ti.template(), qb: ti.template(), zb: ti.template(), nxt: ti.i32,
                  src: ti.i32, dst: ti.i32, dt: ti.f64, bounds: ti.template()):
    """``qb_d``, ``Z_d`` from ``lup = u.grad[nxt]`` and ``lzeta' = zeta.grad[dst]``.

    Writes ``zeta.grad[src] = B Z``.
    """
    for J in ti.grouped(ti.ndrange(*bounds)):
        v = c[_spatial(J)]
        h = ti.cast(dt, u.dtype)
        k_lup = h * h * v * v * u.grad[(nxt, *J)]
        for d in ti.static(range(len(zeta))):
            i = J[d + 1]
            qbar = k_lup
            zbar = ti.cast(0.0, u.dtype)
            if pa[d, i] != 0.0:
                z_total = zeta[d].grad[(dst, *J)] + k_lup
                qbar += pa[d, i] * z_total
                zbar = pb[d, i] * z_total
            qb[d][(0, *J)] = qbar
            zb[d][(0, *J)] = zbar
            zeta[d].grad[(src, *J)] = zbar


@ti.kernel
def adjoint_pass2(u: ti.template(), psi: ti.template(), pa: ti.template(), pb: ti.template(),
                  qb: ti.template(), pbar: ti.template(), src: ti.i32, dst: ti.i32,
                  inv_h: ti.template(), c1: ti.template(), bounds: ti.template()):
    """``P_d = lpsi'_d - D1_d (M qb_d)`` (stored in ``pbar``); ``psi.grad[src] = B P``."""
    for J in ti.grouped(ti.ndrange(*bounds)):
        for d in ti.static(range(len(psi))):
            i = J[d + 1]
            p = ti.cast(0.0, u.dtype)
            if pa[d, i] != 0.0:
                e = ti.Vector.unit(J.n, d + 1, ti.i32)
                acc = ti.cast(0.0, u.dtype)
                for k in ti.static(range(len(c1))):
                    jp = J + (k + 1) * e
                    jm = J - (k + 1) * e
                    mp = ti.cast(pa[d, jp[d + 1]] != 0.0, u.dtype)
                    mm = ti.cast(pa[d, jm[d + 1]] != 0.0, u.dtype)
                    acc += c1[k] * (mp * qb[d][(0, *jp)] - mm * qb[d][(0, *jm)])
                p = psi[d].grad[(dst, *J)] - acc * inv_h[d]
            pbar[d][(0, *J)] = p
            psi[d].grad[(src, *J)] = pb[d, i] * p


@ti.kernel
def adjoint_pass3(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                  pa: ti.template(), pb: ti.template(), qb: ti.template(), pbar: ti.template(),
                  prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32, dt: ti.f64,
                  inv_h: ti.template(), c1: ti.template(), c2: ti.template(),
                  space: ti.template()):
    """``lu += 2 lup + sum_d (D2 qb_d - D1 (a P_d))``, ``lu- = -lup``, and ``dL/dc``.

    Loops over space with the shots inside, so the velocity gradient needs no atomics.
    ``psi[dst]`` must hold the forward ``psi'`` (rerun ``pml_psi`` first).
    """
    for cell in ti.grouped(ti.ndrange(*space)):
        v = c[cell]
        h = ti.cast(dt, u.dtype)
        gc = ti.cast(0.0, u.dtype)
        for s in range(u.shape[1]):
            J = ti.Vector([s] + [cell[d] for d in ti.static(range(cell.n))])
            lup = u.grad[(nxt, *J)]
            acc = 2.0 * lup
            lap = ti.cast(0.0, u.dtype)
            for d in ti.static(range(cell.n)):
                e = ti.Vector.unit(J.n, d + 1, ti.i32)
                acc += _d2(qb[d], 0, J, d, c2) * (inv_h[d] * inv_h[d])
                # - D1 (a P): gather a P at the neighbours (zero outside the PML).
                g1 = ti.cast(0.0, u.dtype)
                for k in ti.static(range(len(c1))):
                    jp = J + (k + 1) * e
                    jm = J - (k + 1) * e
                    g1 += c1[k] * (pa[d, jp[d + 1]] * pbar[d][(0, *jp)]
                                   - pa[d, jm[d + 1]] * pbar[d][(0, *jm)])
                acc -= g1 * inv_h[d]
                # Forward q_d + zeta'_d for the velocity gradient.
                q = _d2(u, cur, J, d, c2) * (inv_h[d] * inv_h[d])
                if pa[d, cell[d]] != 0.0:
                    q += _d1(psi[d], dst, J, d, c1) * inv_h[d]
                    lap += pb[d, cell[d]] * zeta[d][(src, *J)] + pa[d, cell[d]] * q
                lap += q
            u.grad[(cur, *J)] += acc
            u.grad[(prv, *J)] = -lup
            gc += lup * lap
        c.grad[cell] += 2.0 * v * h * h * gc

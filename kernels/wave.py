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

Loop shape: the stencil kernels run in parallel over rows ``rows = (shot, z[, y])`` and
serially along ``x``, which lets LLVM vectorise and strength-reduce the inner loop
(about 2.7x faster than one parallel loop over every cell). ``xs = (lo, a, b, hi)``
splits a row into the low x-PML ``[lo, a)``, the interior ``[a, b)`` and the high
x-PML ``[b, hi)``; rows inside the PML of another axis take the PML path throughout,
other rows take a specialised PML-free path on ``[a, b)``.
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


@ti.func
def _strip(K: ti.template(), d: ti.template(), pm: ti.template()):
    """Index of cell ``K`` in the PML-strip storage of axis ``d``.

    A strip field keeps only the PML cells of its axis: along ``d`` its index runs over
    the low layer ``[pm[d][0], pm[d][0] + pm[d][1])`` then the high layer from
    ``pm[d][2]`` (``pm[d][3]`` cells). Cells outside the layers are clamped into it; every
    caller masks them with the PML profile, so their value never counts.
    """
    i = K[d + 1]
    j = i - pm[d][0]
    if i >= pm[d][2]:
        j = i - pm[d][2] + pm[d][1]
    j = ti.max(0, ti.min(j, ti.max(pm[d][1] + pm[d][3] - 1, 0)))
    return K + (j - i) * ti.Vector.unit(K.n, d + 1, ti.i32)


@ti.func
def _d1_masked(f: ti.template(), lvl: ti.i32, K: ti.template(), d: ti.template(),
               c1: ti.template(), pa: ti.template(), pm: ti.template(), strip: ti.template()):
    """Central first difference along ``d`` of ``f`` restricted to the PML of axis ``d``.

    ``strip`` says whether ``f`` is stored in PML strips (see :func:`_strip`) or on the
    full grid.
    """
    e = ti.Vector.unit(K.n, d + 1, ti.i32)
    acc = ti.cast(0.0, f.dtype)
    for k in ti.static(range(len(c1))):
        jp = K + (k + 1) * e
        jm = K - (k + 1) * e
        mp = ti.cast(pa[d, jp[d + 1]] != 0.0, f.dtype)
        mm = ti.cast(pa[d, jm[d + 1]] != 0.0, f.dtype)
        if ti.static(strip):
            jp = _strip(jp, d, pm)
            jm = _strip(jm, d, pm)
        acc += c1[k] * (mp * f[(lvl, *jp)] - mm * f[(lvl, *jm)])
    return acc


@ti.func
def _d2_strip(f: ti.template(), lvl: ti.i32, K: ti.template(), d: ti.template(),
              c2: ti.template(), pa: ti.template(), pm: ti.template()):
    """Central second difference along ``d`` of a strip field (zero outside the PML)."""
    e = ti.Vector.unit(K.n, d + 1, ti.i32)
    m0 = ti.cast(pa[d, K[d + 1]] != 0.0, f.dtype)
    acc = c2[0] * m0 * f[(lvl, *_strip(K, d, pm))]
    for k in ti.static(range(1, len(c2))):
        jp = K + k * e
        jm = K - k * e
        mp = ti.cast(pa[d, jp[d + 1]] != 0.0, f.dtype)
        mm = ti.cast(pa[d, jm[d + 1]] != 0.0, f.dtype)
        acc += c2[k] * (mp * f[(lvl, *_strip(jp, d, pm))] + mm * f[(lvl, *_strip(jm, d, pm))])
    return acc


@ti.func
def _cell(J: ti.template(), x: ti.i32):
    """Full index ``(shot, z[, y], x)`` from a row index ``J = (shot, z[, y])``."""
    return ti.Vector([J[k] for k in ti.static(range(J.n))] + [x])


@ti.func
def _row_in_pml(pa: ti.template(), J: ti.template()):
    """Whether row ``J`` is where ``pa`` (a profile or mask) is nonzero on a non-x axis."""
    inside = False
    for d in ti.static(range(J.n - 1)):
        if pa[d, J[d + 1]] != 0.0:
            inside = True
    return inside


@ti.func
def _psi_cell(u: ti.template(), psi: ti.template(), pa: ti.template(), pb: ti.template(),
              cur: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
              K: ti.template(),
              pm: ti.template()):
    for d in ti.static(range(len(psi))):
        i = K[d + 1]
        if pa[d, i] != 0.0:
            S = _strip(K, d, pm)
            psi[d][(dst, *S)] = pb[d, i] * psi[d][(src, *S)] + pa[d, i] * inv_h[d] * _d1(
                u, cur, K, d, c1)


@ti.kernel
def pml_psi(u: ti.template(), psi: ti.template(), pa: ti.template(), pb: ti.template(),
            cur: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
            rows: ti.template(), xs: ti.template(),
            pm: ti.template()):
    """``psi_d[dst] = b_d psi_d[src] + a_d D1_d u[cur] / h_d`` inside the PML of axis ``d``.

    Outside the PML ``psi_d`` is never written and stays zero.
    """
    for J in ti.grouped(ti.ndrange(*rows)):
        if _row_in_pml(pa, J):
            for x in range(xs[0], xs[3]):
                _psi_cell(u, psi, pa, pb, cur, src, dst, inv_h, c1, _cell(J, x), pm)
        else:
            for x in range(xs[0], xs[1]):
                _psi_cell(u, psi, pa, pb, cur, src, dst, inv_h, c1, _cell(J, x), pm)
            for x in range(xs[2], xs[3]):
                _psi_cell(u, psi, pa, pb, cur, src, dst, inv_h, c1, _cell(J, x), pm)


@ti.func
def _update_cell(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                 pa: ti.template(), pb: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                 src: ti.i32, dst: ti.i32, kdt2: ti.template(), inv_h: ti.template(),
                 c1: ti.template(), c2: ti.template(), K: ti.template(), pml: ti.template(),
                 pm: ti.template()):
    lap = ti.cast(0.0, u.dtype)
    for d in ti.static(range(len(zeta))):
        q = _d2(u, cur, K, d, c2) * (inv_h[d] * inv_h[d])
        if ti.static(pml):
            i = K[d + 1]
            if pa[d, i] != 0.0:
                q += _d1_masked(psi[d], dst, K, d, c1, pa, pm, True) * inv_h[d]
                S = _strip(K, d, pm)
                z = pb[d, i] * zeta[d][(src, *S)] + pa[d, i] * q
                zeta[d][(dst, *S)] = z
                q += z
        lap += q
    v = c[_spatial(K)]
    u[(nxt, *K)] = 2.0 * u[(cur, *K)] - u[(prv, *K)] + kdt2 * v * v * lap


@ti.kernel
def wave_update(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                pa: ti.template(), pb: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                src: ti.i32, dst: ti.i32, dt: ti.f64, inv_h: ti.template(), c1: ti.template(),
                c2: ti.template(), rows: ti.template(), xs: ti.template(),
                pm: ti.template()):
    """Leapfrog update of ``u[nxt]`` with the PML terms; writes ``zeta[dst]`` in the PML."""
    for J in ti.grouped(ti.ndrange(*rows)):
        h2 = ti.cast(dt * dt, u.dtype)
        if _row_in_pml(pa, J):
            for x in range(xs[0], xs[3]):
                _update_cell(u, psi, zeta, c, pa, pb, prv, cur, nxt, src, dst, h2, inv_h, c1, c2,
                             _cell(J, x), True, pm)
        else:
            for x in range(xs[0], xs[1]):
                _update_cell(u, psi, zeta, c, pa, pb, prv, cur, nxt, src, dst, h2, inv_h, c1, c2,
                             _cell(J, x), True, pm)
            for x in range(xs[1], xs[2]):
                _update_cell(u, psi, zeta, c, pa, pb, prv, cur, nxt, src, dst, h2, inv_h, c1, c2,
                             _cell(J, x), False, pm)
            for x in range(xs[2], xs[3]):
                _update_cell(u, psi, zeta, c, pa, pb, prv, cur, nxt, src, dst, h2, inv_h, c1, c2,
                             _cell(J, x), True, pm)


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
# Adjoint, with lu, lup, lpsi'_d, lzeta'_d the adjoints of (u, u+, psi'_d, zeta'_d) and
# qb_d = K lup + qz_d the adjoint of q_d:
#   Z_d = lzeta'_d + K lup;  qz_d = a Z_d;  lzeta_d = B Z_d        (pass 1, PML cells only)
#   P_d = lpsi'_d - D1_d (M qb_d);  lpsi_d = B P_d                 (pass 2, PML cells only)
#   lu <- lu + 2 lup + sum_d (D2_d qb_d - D1_d (a P_d));  lu- = -lup               (pass 3)
#   dL/dc += 2 c dt^2 sum_shots lup * sum_d (q_d + zeta'_d)
# D2 is symmetric and D1 antisymmetric; frame cells hold zeros, so plain gathers are
# exact. Outside the PML, qz, P, lzeta and lpsi stay zero (never written), and the
# interior of pass 3 is a wave step applied to K lup plus the imaging condition.
# ---------------------------------------------------------------------------------------


@ti.func
def _pass1_cell(u: ti.template(), zeta: ti.template(), c: ti.template(), pa: ti.template(),
                pb: ti.template(), kl: ti.template(), qz: ti.template(), nxt: ti.i32,
                src: ti.i32, dst: ti.i32, kdt2: ti.template(), K: ti.template(),
                pml: ti.template(),
                pm: ti.template()):
    v = c[_spatial(K)]
    k_lup = kdt2 * v * v * u.grad[(nxt, *K)]
    kl[(0, *K)] = k_lup
    if ti.static(pml):
        for d in ti.static(range(len(zeta))):
            i = K[d + 1]
            if pa[d, i] != 0.0:
                S = _strip(K, d, pm)
                z_total = zeta[d].grad[(dst, *S)] + k_lup
                qz[d][(0, *S)] = pa[d, i] * z_total
                zeta[d].grad[(src, *S)] = pb[d, i] * z_total


@ti.kernel
def adjoint_pass1(u: ti.template(), zeta: ti.template(), c: ti.template(), pa: ti.template(),
                  pb: ti.template(), kl: ti.template(), qz: ti.template(), nxt: ti.i32,
                  src: ti.i32, dst: ti.i32, dt: ti.f64, rows: ti.template(), xs: ti.template(),
                  pm: ti.template()):
    """``kl = dt^2 c^2 lup`` everywhere; ``qz_d = a Z_d``, ``zeta.grad[src] = B Z_d`` in the PML."""
    for J in ti.grouped(ti.ndrange(*rows)):
        h2 = ti.cast(dt * dt, u.dtype)
        if _row_in_pml(pa, J):
            for x in range(xs[0], xs[3]):
                _pass1_cell(u, zeta, c, pa, pb, kl, qz, nxt, src, dst, h2, _cell(J, x), True, pm)
        else:
            for x in range(xs[0], xs[1]):
                _pass1_cell(u, zeta, c, pa, pb, kl, qz, nxt, src, dst, h2, _cell(J, x), True, pm)
            for x in range(xs[1], xs[2]):
                _pass1_cell(u, zeta, c, pa, pb, kl, qz, nxt, src, dst, h2, _cell(J, x), False, pm)
            for x in range(xs[2], xs[3]):
                _pass1_cell(u, zeta, c, pa, pb, kl, qz, nxt, src, dst, h2, _cell(J, x), True, pm)


@ti.func
def _pass2_cell(psi: ti.template(), pa: ti.template(), pb: ti.template(), kl: ti.template(),
                qz: ti.template(), pbar: ti.template(), src: ti.i32, dst: ti.i32,
                inv_h: ti.template(), c1: ti.template(), K: ti.template(),
                pm: ti.template()):
    for d in ti.static(range(len(psi))):
        i = K[d + 1]
        if pa[d, i] != 0.0:
            acc = (_d1_masked(kl, 0, K, d, c1, pa, pm, False)
                   + _d1_masked(qz[d], 0, K, d, c1, pa, pm, True))
            S = _strip(K, d, pm)
            p = psi[d].grad[(dst, *S)] - acc * inv_h[d]
            pbar[d][(0, *S)] = p
            psi[d].grad[(src, *S)] = pb[d, i] * p


@ti.kernel
def adjoint_pass2(psi: ti.template(), pa: ti.template(), pb: ti.template(), kl: ti.template(),
                  qz: ti.template(), pbar: ti.template(), src: ti.i32, dst: ti.i32,
                  inv_h: ti.template(), c1: ti.template(), rows: ti.template(),
                  xs: ti.template(),
                  pm: ti.template()):
    """``P_d = lpsi'_d - D1_d (M qb_d)`` in the PML (into ``pbar``); ``psi.grad[src] = B P``."""
    for J in ti.grouped(ti.ndrange(*rows)):
        if _row_in_pml(pa, J):
            for x in range(xs[0], xs[3]):
                _pass2_cell(psi, pa, pb, kl, qz, pbar, src, dst, inv_h, c1, _cell(J, x), pm)
        else:
            for x in range(xs[0], xs[1]):
                _pass2_cell(psi, pa, pb, kl, qz, pbar, src, dst, inv_h, c1, _cell(J, x), pm)
            for x in range(xs[2], xs[3]):
                _pass2_cell(psi, pa, pb, kl, qz, pbar, src, dst, inv_h, c1, _cell(J, x), pm)


@ti.func
def _pass3_cell(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                pa: ti.template(), pb: ti.template(), kl: ti.template(), qz: ti.template(),
                pbar: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                dst: ti.i32, kdt2: ti.template(), inv_h: ti.template(), c1: ti.template(),
                c2: ti.template(), K: ti.template(), pml: ti.template(),
                pm: ti.template()):
    lup = u.grad[(nxt, *K)]
    acc = 2.0 * lup
    lap = ti.cast(0.0, u.dtype)
    for d in ti.static(range(len(psi))):
        inv_h2 = inv_h[d] * inv_h[d]
        acc += _d2(kl, 0, K, d, c2) * inv_h2
        q = _d2(u, cur, K, d, c2) * inv_h2
        if ti.static(pml):
            acc += _d2_strip(qz[d], 0, K, d, c2, pa, pm) * inv_h2
            # - D1 (a P): gather a P at the neighbours (zero outside the PML).
            e = ti.Vector.unit(K.n, d + 1, ti.i32)
            g1 = ti.cast(0.0, u.dtype)
            for k in ti.static(range(len(c1))):
                jp = K + (k + 1) * e
                jm = K - (k + 1) * e
                g1 += c1[k] * (pa[d, jp[d + 1]] * pbar[d][(0, *_strip(jp, d, pm))]
                               - pa[d, jm[d + 1]] * pbar[d][(0, *_strip(jm, d, pm))])
            acc -= g1 * inv_h[d]
            i = K[d + 1]
            if pa[d, i] != 0.0:
                q += _d1_masked(psi[d], dst, K, d, c1, pa, pm, True) * inv_h[d]
                lap += pb[d, i] * zeta[d][(src, *_strip(K, d, pm))] + pa[d, i] * q
        lap += q
    # Plain read-modify-writes, not atomics: each cell belongs to one thread.
    u.grad[(cur, *K)] = u.grad[(cur, *K)] + acc
    u.grad[(prv, *K)] = -lup
    v = c[_spatial(K)]
    c.grad[_spatial(K)] = c.grad[_spatial(K)] + 2.0 * v * kdt2 * lup * lap


@ti.kernel
def adjoint_pass3(u: ti.template(), psi: ti.template(), zeta: ti.template(), c: ti.template(),
                  pa: ti.template(), pb: ti.template(), kl: ti.template(), qz: ti.template(),
                  pbar: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                  dst: ti.i32, dt: ti.f64, inv_h: ti.template(), c1: ti.template(),
                  c2: ti.template(), near: ti.template(), space_rows: ti.template(),
                  xs: ti.template(),
                  pm: ti.template()):
    """``lu += 2 lup + sum_d (D2 qb_d - D1 (a P_d))``, ``lu- = -lup``, and ``dL/dc``.

    Parallel over spatial rows ``(z[, y])`` with the shots inside, so each velocity
    gradient cell is written by one thread. ``psi[dst]`` must hold the forward ``psi'``
    (rerun ``pml_psi`` first). Cells within the stencil radius of a PML gather from it,
    so ``near`` (the PML mask widened by that radius) and ``xs`` (narrowed the same
    way) choose the PML path.
    """
    for R in ti.grouped(ti.ndrange(*space_rows)):
        h2 = ti.cast(dt * dt, u.dtype)
        for s in range(u.shape[1]):
            J = ti.Vector([s] + [R[k] for k in ti.static(range(R.n))])
            if _row_in_pml(near, J):
                for x in range(xs[0], xs[3]):
                    _pass3_cell(u, psi, zeta, c, pa, pb, kl, qz, pbar, prv, cur, nxt, src, dst, h2,
                                inv_h, c1, c2, _cell(J, x), True, pm)
            else:
                for x in range(xs[0], xs[1]):
                    _pass3_cell(u, psi, zeta, c, pa, pb, kl, qz, pbar, prv, cur, nxt, src, dst, h2,
                                inv_h, c1, c2, _cell(J, x), True, pm)
                for x in range(xs[1], xs[2]):
                    _pass3_cell(u, psi, zeta, c, pa, pb, kl, qz, pbar, prv, cur, nxt, src, dst, h2,
                                inv_h, c1, c2, _cell(J, x), False, pm)
                for x in range(xs[2], xs[3]):
                    _pass3_cell(u, psi, zeta, c, pa, pb, kl, qz, pbar, prv, cur, nxt, src, dst, h2,
                                inv_h, c1, c2, _cell(J, x), True, pm)

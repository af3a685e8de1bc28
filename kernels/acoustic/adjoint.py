"""The hand-written adjoint of the step in gather form, and the field engine's adjoint kernel."""

import taichi as ti

from diffsim.kernels.acoustic._blocks import (
    _at,
    _d1s,
    _d1x,
    _d2r,
    _d2x,
    _moved,
    _row_in,
    _rstrip,
    _sp,
    _xblock,
    _xget,
)
from diffsim.kernels.acoustic.forward import _cell, _lane_elem, _psi_rows, _psi_x

# ---------------------------------------------------------------------------------------
# Hand-written adjoint of the step, in gather form (two passes).
#
# Forward, per axis d (M = PML mask of axis d, K = kc = dt^2 c^2):
#   psi'_d = b psi_d + a D1_d u;  q_d = D2_d u + M D1_d psi'_d;  zeta'_d = b zeta_d + a q_d
#   u+ = 2u - u- + K sum_d (q_d + zeta'_d)
# Adjoint, with lu, lup, lpsi'_d, lzeta'_d the adjoints of (u, u+, psi'_d, zeta'_d),
# kl = K lup and qb_d = kl + qz_d the adjoint of q_d:
#   Z_d = lzeta'_d + kl;  qz_d = a Z_d;  lzeta_d = b Z_d
#   P_d = lpsi'_d - D1_d (M qb_d);  lpsi_d = b P_d                       (pass A, PML only)
#   lu <- lu + 2 lup + sum_d (D2_d qb_d - D1_d (a P_d));  lu- = -lup     (pass B)
#   dL/dK += sum_shots lup * sum_d (q_d + zeta'_d)
# D2 is symmetric and D1 antisymmetric; the zero blocks and the frame (K = 0) make the
# plain gathers exact. kl and qz are recomputed at the neighbours instead of stored; only
# P (into pbar) goes from pass A to pass B. Pass A also recomputes psi' of the step,
# which the velocity gradient of pass B reads.
# ---------------------------------------------------------------------------------------


@ti.func
def _kcg_at(f: ti.template(), J: ti.template(), xb: ti.i32):
    """Element of ``kcg`` for block ``xb`` of row ``J``: per shot (``f.kcg_per_shot``) or summed."""
    if ti.static(f.kcg_per_shot):
        return _at(J, xb)
    else:
        return _sp(J, xb)


@ti.func
def _kl(f: ti.template(), k: ti.template(), nxt: ti.i32, J: ti.template(), xb: ti.i32):
    """``k lup`` for ``k = kc`` or ``kg = g kc`` (with a sponge)."""
    return k[_sp(J, xb)] * f.ug[(nxt, *_at(J, xb))]


@ti.func
def _adj_a_rows(f: ti.template(), cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32,
                J: ti.template(), xb: ti.i32):
    """Pass A on one block for the row axes (rows inside their PML)."""
    pa, pb, kc, pbar, inv_h, c1, pm = ti.static((f.pa, f.pb, f.kc, f.pbar, f.inv_h, f.c1, f.pm))
    psig, zetag = ti.static((f.psig, f.zetag))
    _psi_rows(f, cur, src, dst, J, xb)
    for d in ti.static(range(len(f.psi) - 1)):
        i = J[d + 1]
        if pa[d, i] != 0.0:
            S = _at(_rstrip(J, d, pm), xb)
            z_total = zetag[d][(dst, *S)] + _kl(f, kc, nxt, J, xb)
            zetag[d][(src, *S)] = pb[d, i] * z_total
            # D1 of M qb = (M + a) kl + a lzeta' at the neighbour rows.
            g = ti.zero(z_total)
            for k in ti.static(range(len(c1))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * (k + 1))
                    an = pa[d, Jn[d + 1]]
                    mn = ti.cast(an != 0.0, f.dtype)
                    r = ((mn + an) * _kl(f, kc, nxt, Jn, xb)
                         + an * zetag[d][(dst, *_at(_rstrip(Jn, d, pm), xb))])
                    g += (sgn * c1[k]) * r
            p = psig[d][(dst, *S)] - g * inv_h[d]
            pbar[d][(0, *S)] = p
            psig[d][(src, *S)] = pb[d, i] * p


@ti.func
def _adj_a_x(f: ti.template(), cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32,
             J: ti.template(), j: ti.i32):
    """Pass A on x-strip block ``j`` for the x axis."""
    pax, pbx, mx, kc, pbar, inv_h, c1 = ti.static((f.pax, f.pbx, f.mx, f.kc, f.pbar, f.inv_h,
                                                  f.c1))
    psig, zetag = ti.static((f.psig, f.zetag))
    _psi_x(f, cur, src, dst, J, j)
    nx = ti.static(len(f.psi) - 1)
    xb = _xblock(j, f.xs)
    S = _at(J, j)
    kl_lo = _kl(f, kc, nxt, J, xb - 1)
    kl_mid = _kl(f, kc, nxt, J, xb)
    kl_hi = _kl(f, kc, nxt, J, xb + 1)
    zg_mid = zetag[nx][(dst, *S)]
    zetag[nx][(src, *S)] = pbx[xb] * (zg_mid + kl_mid)
    r_lo = ((mx[xb - 1] + pax[xb - 1]) * kl_lo
            + pax[xb - 1] * _xget(f, zetag[nx], dst, J, xb - 1))
    r_mid = (mx[xb] + pax[xb]) * kl_mid + pax[xb] * zg_mid
    r_hi = ((mx[xb + 1] + pax[xb + 1]) * kl_hi
            + pax[xb + 1] * _xget(f, zetag[nx], dst, J, xb + 1))
    p = psig[nx][(dst, *S)] - _d1x(r_lo, r_mid, r_hi, c1) * inv_h[nx]
    pbar[nx][(0, *S)] = p
    psig[nx][(src, *S)] = pbx[xb] * p


@ti.func
def _adj_b_block(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                 dst: ti.i32, J: ti.template(), xb: ti.i32, xpml: ti.template()):
    """Pass B on one block; ``xpml``: the block is within the stencil radius of the x-PML.

    With a sponge ``u+ = g (2 u - g u- + kc lap)``: the adjoint of the right-hand side is
    ``g lup``, and ``kg = g kc`` replaces ``kc`` in the gathers.
    """
    u, ug, psi, zeta, psig, zetag = ti.static((f.u, f.ug, f.psi, f.zeta, f.psig, f.zetag))
    kc, kg, kcg, sg, near = ti.static((f.kc, f.kg, f.kcg, f.sg, f.near))
    pa, pb, pax, pbx, mx, pbar = ti.static((f.pa, f.pb, f.pax, f.pbx, f.mx, f.pbar))
    inv_h, c1, c2, pm = ti.static((f.inv_h, f.c1, f.c2, f.pm))
    nx = ti.static(len(psi) - 1)
    at = _at(J, xb)
    lup_raw = ug[(nxt, *at)]
    lup = lup_raw
    if ti.static(f.sponge):
        lup = lup_raw * sg[_sp(J, xb)]
    kl_mid = kc[_sp(J, xb)] * lup
    acc = 2.0 * lup
    lap = ti.zero(lup)
    for d in ti.static(range(nx)):
        ih2 = inv_h[d] * inv_h[d]
        g2 = c2[0] * kl_mid
        for k in ti.static(range(1, len(c2))):
            g2 += c2[k] * (_kl(f, kg, nxt, _moved(J, d, k), xb)
                           + _kl(f, kg, nxt, _moved(J, d, -k), xb))
        q = _d2r(u, cur, J, xb, d, c2) * ih2
        if near[d, J[d + 1]] != 0.0:
            # qz = a (lzeta' + kl) and a P, gathered from the layer (zero outside).
            a0 = pa[d, J[d + 1]]
            g2 += (c2[0] * a0) * (zetag[d][(dst, *_at(_rstrip(J, d, pm), xb))] + kl_mid)
            for k in ti.static(range(1, len(c2))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * k)
                    an = pa[d, Jn[d + 1]]
                    Sn = _at(_rstrip(Jn, d, pm), xb)
                    g2 += c2[k] * an * (zetag[d][(dst, *Sn)] + _kl(f, kg, nxt, Jn, xb))
            g1 = ti.zero(lup)
            for k in ti.static(range(len(c1))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * (k + 1))
                    g1 += (sgn * c1[k] * pa[d, Jn[d + 1]]) * pbar[d][(0, *_at(_rstrip(Jn, d, pm),
                                                                             xb))]
            acc -= g1 * inv_h[d]
            i = J[d + 1]
            if pa[d, i] != 0.0:
                q += _d1s(f, psi[d], dst, J, xb, d) * inv_h[d]
                lap += pb[d, i] * zeta[d][(src, *_at(_rstrip(J, d, pm), xb))] + pa[d, i] * q
        acc += g2 * ih2
        lap += q
    ih2 = inv_h[nx] * inv_h[nx]
    kl_lo = _kl(f, kg, nxt, J, xb - 1)
    kl_hi = _kl(f, kg, nxt, J, xb + 1)
    mid = u[(cur, *at)]
    q = _d2x(u[(cur, *_at(J, xb - 1))], mid, u[(cur, *_at(J, xb + 1))], c2) * ih2
    if ti.static(xpml):
        qb_lo = kl_lo + pax[xb - 1] * (_xget(f, zetag[nx], dst, J, xb - 1) + kl_lo)
        qb_mid = kl_mid + pax[xb] * (_xget(f, zetag[nx], dst, J, xb) + kl_mid)
        qb_hi = kl_hi + pax[xb + 1] * (_xget(f, zetag[nx], dst, J, xb + 1) + kl_hi)
        acc += _d2x(qb_lo, qb_mid, qb_hi, c2) * ih2
        ap_lo = pax[xb - 1] * _xget(f, pbar[nx], 0, J, xb - 1)
        ap_mid = pax[xb] * _xget(f, pbar[nx], 0, J, xb)
        ap_hi = pax[xb + 1] * _xget(f, pbar[nx], 0, J, xb + 1)
        acc -= _d1x(ap_lo, ap_mid, ap_hi, c1) * inv_h[nx]
        d1 = _d1x(_xget(f, psi[nx], dst, J, xb - 1), _xget(f, psi[nx], dst, J, xb),
                  _xget(f, psi[nx], dst, J, xb + 1), c1)
        q += mx[xb] * (inv_h[nx] * d1)
        lap += pbx[xb] * _xget(f, zeta[nx], src, J, xb) + pax[xb] * q
    else:
        acc += _d2x(kl_lo, kl_mid, kl_hi, c2) * ih2
    lap += q
    # Plain read-modify-writes, not atomics: each block belongs to one thread.
    lcur = ug[(cur, *at)]
    ug[(cur, *at)] = lcur + acc
    if ti.static(f.sponge):
        ug[(prv, *at)] = -sg[_sp(J, xb)] * lup
    else:
        ug[(prv, *at)] = -lup
    kcg[_kcg_at(f, J, xb)] = kcg[_kcg_at(f, J, xb)] + lup * lap
    return lup_raw * lup_raw + lcur * lcur


@ti.func
def _receiver_adjoint(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """Reverse of :func:`_record` at time ``t``: ``ug[lvl] += w tracesg[t]`` (serial)."""
    W, weight = ti.static((f.W, f.rec_w))
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.rec_pos.shape[1],
                                   *([weight.shape[3]] * f.ndim))):
        w = f.tracesg[t, P[0], P[1]]
        cell = _cell(f.rec_pos, P)
        for d in ti.static(range(f.ndim)):
            w *= weight[P[0], P[1], d, P[d + 2]]
        f.ug[(lvl, *_lane_elem(cell, W))][(cell[cell.n - 1] + W) % W] += w


@ti.func
def _sources_adjoint(f: ti.template(), nxt: ti.i32, step: ti.i32):
    """Reverse of the source injection: ``ampg[shot, source, step] += scale sum w ug[nxt]`` (serial)."""
    W, weight = ti.static((f.W, f.src_w))
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.src_pos.shape[1],
                                   *([weight.shape[3]] * f.ndim))):
        w = ti.cast(f.scale, f.dtype)
        cell = _cell(f.src_pos, P)
        for d in ti.static(range(f.ndim)):
            w *= weight[P[0], P[1], d, P[d + 2]]
        f.ampg[P[0], P[1], step] += w * f.ug[(nxt, *_lane_elem(cell, W))][
            (cell[cell.n - 1] + W) % W]


@ti.func
def _adjoint_a(f: ti.template(), cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32):
    """Pass A of :func:`_adjoint` on every row of ``f.rows`` (PML rows and x strips)."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(f.pa, J):
            for xb in range(1, f.xs[2] - 1):
                _adj_a_rows(f, cur, nxt, src, dst, J, xb)
        for j in range(f.xs[3]):
            _adj_a_x(f, cur, nxt, src, dst, J, j)


@ti.func
def _adjoint_b(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
               dst: ti.i32):
    """Pass B of :func:`_adjoint` on every row of ``f.space_rows``; returns its squared norm."""
    W = ti.static(f.W)
    sq = ti.cast(0.0, ti.f64)
    ti.loop_config(serialize=f.serial)
    for R in ti.grouped(ti.ndrange(*f.space_rows)):
        row_sq = ti.Vector.zero(f.dtype, W)
        for s in range(f.shots[0], f.shots[1]):
            J = ti.Vector([s] + [R[k] for k in ti.static(range(R.n))])
            for j in range(f.xs_near[3]):
                row_sq += _adj_b_block(f, prv, cur, nxt, src, dst, J, _xblock(j, f.xs_near), True)
            for xb in range(f.xs_near[0], f.xs_near[1]):
                row_sq += _adj_b_block(f, prv, cur, nxt, src, dst, J, xb, False)
        sq += ti.cast(row_sq.sum(), ti.f64)
    return sq


@ti.func
def _adjoint(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
             dst: ti.i32, step: ti.i32, rec_t: ti.i32):
    """Reverse of :func:`_fused_step`: ``lambda[step+1]`` to ``lambda[step]``.

    Reads the adjoints of ``u[nxt]``, ``psi[dst]``, ``zeta[dst]``; writes those of
    ``u[cur]`` (accumulated), ``u[prv]``, ``psi[src]``, ``zeta[src]``, and accumulates
    ``kcg`` and ``ampg``. With ``rec_t >= 0`` it first adds the receivers' adjoint at
    time ``rec_t`` into ``ug[nxt]``. Pass B runs over spatial rows with the shots inside,
    so each ``kcg`` block is written by one thread; rows and blocks within the stencil
    radius of a PML (``near``, ``f.xs_near``) gather from it.

    Returns:
        The squared norm of the wavefield adjoint ``lambda[step+1]`` (both levels), f64.
    """
    if rec_t >= 0:
        _receiver_adjoint(f, nxt, rec_t)
    _adjoint_a(f, cur, nxt, src, dst)
    sq = _adjoint_b(f, prv, cur, nxt, src, dst)
    _sources_adjoint(f, nxt, step)
    return sq


@ti.kernel
def adjoint_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                 dst: ti.i32, step: ti.i32, rec_t: ti.i32) -> ti.f64:
    """Reverse of :func:`wave_step` (see :func:`_adjoint`); returns ``|lambda[step+1]|^2``."""
    sq = _adjoint(f, prv, cur, nxt, src, dst, step, rec_t)
    return sq



"""Kernels of the constant-density acoustic wave equation, 2D and 3D, any even order.

Equation: ``u_tt = c^2 lap(u) + s(t) delta(x - x_s)``, leapfrog in time.

Lane layout (SIMD): the x axis is packed into vectors of ``W`` consecutive cells, so a
wavefield is a ``ti.types.vector(W, real)`` field indexed ``u[level, shot, z[, y], xb]``
with cell ``x`` in block ``xb = (x + W) // W``, lane ``(x + W) % W``. Block 0 and the last
block hold no cells and stay zero; the stencil updates every lane of blocks ``1 ..
nb - 2`` (``nb = u.shape[-1]``) and the x-shifted neighbours of a block are built by
compile-time lane selection from the block and its two neighbours
(:func:`_shift`), which LLVM turns into SIMD shuffles. ``J`` below is a row index
``(shot, z[, y])``; rows run in parallel, the blocks of a row serially.

The update coefficient ``kc = dt^2 c^2`` (a lane field ``[z[, y], xb]``) is zero on the
frame of ``halo`` cells around the padded grid and on the lanes past its end, so those
cells stay zero (the rigid frame behind the PML, or the free surface).

Absorbing boundary: convolutional PML (Pasalic and McGarry 2010 form). Per axis ``d``
with profiles ``a_d, b_d`` (both zero outside the layer) and ``M_d`` the layer's mask::

    psi_d^n  = b_d psi_d^{n-1} + a_d  D1_d u^n
    q_d      = D2_d u^n + M_d D1_d psi_d^n
    zeta_d^n = b_d zeta_d^{n-1} + a_d q_d
    u^{n+1}  = 2 u^n - u^{n-1} + kc sum_d (q_d + zeta_d^n) + dt^2 s^n w / cell

PML memory is stored in strips. For a row axis ``d`` (z, y) a strip keeps the PML rows
of ``d`` (``pm[d] = (lo, lo width, hi start, hi width)``) and every block; for x it keeps
the blocks that overlap the x-PML: ``xs = (xa, xb, nb, count)`` says blocks ``[1, xa)``
and ``[xb, nb - 1)`` (``count`` of them) are stored (strip index :func:`_xstrip`).
Outside the layer ``psi`` and ``zeta`` are zero (``b = a = 0``), so a strip read outside
the storage is zero.

Sponge (``sponge`` in the bundle): no PML terms; the update is damped cell by cell,
``u^{n+1} = g (2 u^n - g u^{n-1} + kc lap)`` (Cerjan et al. 1985), ``g = sg``.
"""

import functools

import taichi as ti
from taichi.lang import impl
from taichi.lang.expr import Expr
from taichi.lang.matrix import Matrix


class Arrays(tuple):
    """The arrays and constants of one launch, by name, for the ``ti.func``s below.

    A tuple subclass, so that ``ti.static`` accepts one built inside a kernel from the
    kernel's ndarray arguments (:func:`array_kernels`). The field engine passes an
    object with the same attributes as a template argument. Attributes: the state ``u``
    (ring of 3 levels), ``psi``, ``zeta`` (tuples, one strip array per axis, ring of 2)
    and their adjoints ``ug, psig, zetag``; ``kc`` (``dt^2 c^2``) and its adjoint
    ``kcg``, ``kg`` (``g kc`` with a sponge, else ``kc``), ``sg`` (sponge factors);
    PML profiles ``pa, pb, near`` (row axes) and ``pax, pbx, mx`` (x, in lanes); the
    adjoint scratch ``pbar``; ``amp, ampg`` (wavelets), ``traces, tracesg``; source and
    receiver stencils ``src_pos, src_w, rec_pos, rec_w``; the geometry ``rows,
    space_rows, xs, xs_near, pm``; ``inv_h``, ``scale``; the coefficients ``c1, c2``;
    and the compile-time ``W`` (lanes), ``dtype``, ``sponge``, ``serial``.
    """

    def __new__(cls, **items: object) -> "Arrays":
        """An empty tuple carrying ``items`` as attributes."""
        obj = super().__new__(cls, ())
        obj.__dict__.update(items)
        return obj


# -- lanes ---------------------------------------------------------------------------------
@ti.func
def _shift(lo: ti.template(), mid: ti.template(), hi: ti.template(), k: ti.template()):
    """Lane ``i`` of the result is cell ``i + k`` of the three blocks ``lo|mid|hi`` (``|k| <= W``)."""
    w = ti.static(mid.n)
    return ti.Vector([(lo, mid, hi)[(i + k + w) // w][(i + k + w) % w]
                      for i in ti.static(range(w))])


@ti.func
def _d1x(lo: ti.template(), mid: ti.template(), hi: ti.template(), c1: ti.template()):
    """Central first difference along x of a block (no 1/h)."""
    acc = c1[0] * (_shift(lo, mid, hi, 1) - _shift(lo, mid, hi, -1))
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (_shift(lo, mid, hi, k + 1) - _shift(lo, mid, hi, -k - 1))
    return acc


@ti.func
def _d2x(lo: ti.template(), mid: ti.template(), hi: ti.template(), c2: ti.template()):
    """Central second difference along x of a block (no 1/h^2)."""
    acc = c2[0] * mid
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (_shift(lo, mid, hi, k) + _shift(lo, mid, hi, -k))
    return acc


@ti.func
def _at(J: ti.template(), xb: ti.i32):
    """Element index ``(shot, z[, y], xb)`` of block ``xb`` of row ``J``."""
    return ti.Vector([J[k] for k in ti.static(range(J.n))] + [xb])


@ti.func
def _sp(J: ti.template(), xb: ti.i32):
    """Spatial element index ``(z[, y], xb)`` (no shot) of block ``xb`` of row ``J``."""
    return ti.Vector([J[k] for k in ti.static(range(1, J.n))] + [xb])


@ti.func
def _xstrip(xb: ti.i32, xs: ti.template()):
    """Index of block ``xb`` in the x-PML strip (blocks ``[1, xa)`` then ``[xb, nb - 1)``)."""
    return ti.select(xb >= xs[1], xb - xs[1] + xs[0] - 1, xb - 1)


@ti.func
def _xblock(j: ti.i32, xs: ti.template()):
    """Block of x-strip index ``j`` (inverse of :func:`_xstrip`)."""
    return ti.select(j >= xs[0] - 1, j - (xs[0] - 1) + xs[1], j + 1)


@ti.func
def _xget(f: ti.template(), a: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32):
    """Block ``xb`` of x-strip array ``a``; zero for blocks the strip does not store."""
    inside = ((xb >= 1) & (xb < f.xs[0])) | ((xb >= f.xs[1]) & (xb < f.xs[2] - 1))
    j = ti.max(0, ti.min(_xstrip(xb, f.xs), a.shape[J.n + 1] - 1))
    return a[(lvl, *_at(J, j))] * ti.cast(inside, f.dtype)


# -- rows ----------------------------------------------------------------------------------
@ti.func
def _row_in(mask: ti.template(), J: ti.template()):
    """Whether row ``J`` lies where ``mask`` (a profile) is nonzero on a row axis."""
    return ti.Vector([ti.abs(mask[d, J[d + 1]]) for d in ti.static(range(J.n - 1))]).max() != 0.0


@ti.func
def _moved(J: ti.template(), d: ti.template(), k: ti.template()):
    """Row ``J`` moved by ``k`` along row axis ``d``."""
    return J + k * ti.Vector.unit(J.n, d + 1, ti.i32)


@ti.func
def _rstrip(J: ti.template(), d: ti.template(), pm: ti.template()):
    """Row ``J`` in the strip storage of row axis ``d`` (rows outside the layer clamped)."""
    i = J[d + 1]
    j = ti.select(i >= pm[d][2], i - pm[d][2] + pm[d][1], i - pm[d][0])
    j = ti.max(0, ti.min(j, ti.max(pm[d][1] + pm[d][3] - 1, 0)))
    return J + (j - i) * ti.Vector.unit(J.n, d + 1, ti.i32)


@ti.func
def _d1r(a: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
         c1: ti.template()):
    """Central first difference along row axis ``d`` of a full array (no 1/h)."""
    acc = c1[0] * (a[(lvl, *_at(_moved(J, d, 1), xb))] - a[(lvl, *_at(_moved(J, d, -1), xb))])
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (a[(lvl, *_at(_moved(J, d, k + 1), xb))]
                        - a[(lvl, *_at(_moved(J, d, -k - 1), xb))])
    return acc


@ti.func
def _d2r(a: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
         c2: ti.template()):
    """Central second difference along row axis ``d`` of a full array (no 1/h^2)."""
    acc = c2[0] * a[(lvl, *_at(J, xb))]
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (a[(lvl, *_at(_moved(J, d, k), xb))] + a[(lvl, *_at(_moved(J, d, -k), xb))])
    return acc


@ti.func
def _sget(f: ti.template(), a: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32,
          d: ti.template()):
    """Block ``xb`` of row ``J`` of a row-axis strip array; zero outside the layer."""
    m = ti.cast(f.pa[d, J[d + 1]] != 0.0, f.dtype)
    return m * a[(lvl, *_at(_rstrip(J, d, f.pm), xb))]


@ti.func
def _d1s(f: ti.template(), a: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32,
         d: ti.template()):
    """Central first difference along row axis ``d`` of a strip array (zero outside)."""
    c1 = ti.static(f.c1)
    acc = c1[0] * (_sget(f, a, lvl, _moved(J, d, 1), xb, d)
                   - _sget(f, a, lvl, _moved(J, d, -1), xb, d))
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (_sget(f, a, lvl, _moved(J, d, k + 1), xb, d)
                        - _sget(f, a, lvl, _moved(J, d, -k - 1), xb, d))
    return acc


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
def _fused_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                dst: ti.i32, step: ti.i32):
    """One fused step: PML memory, update, sources, and the receivers at ``step + 1``.

    Its loops are parallel at a kernel's top level (unless ``f.serial``) and serial
    inside a kernel's time loop.
    """
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(f.pa, J):
            for xb in range(1, f.xs[2] - 1):
                _psi_rows(f, cur, src, dst, J, xb)
        for j in range(f.xs[3]):
            _psi_x(f, cur, src, dst, J, j)
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
    ti.loop_config(serialize=True)  # a few cells: cheaper than a parallel task
    for P in ti.grouped(ti.ndrange(f.shots, f.src_pos.shape[1],
                                   *([f.src_w.shape[3]] * f.ndim))):
        _inject(f, nxt, step, P)
    _record(f, nxt, step + 1)


@ti.func
def _copy_state(f: ti.template(), slot: ti.i32, u0: ti.i32, u1: ti.i32, lvl: ti.i32,
                save: ti.template()):
    """Save (``save=True``) or restore one state: ``u`` levels ``u0, u1``, ``psi, zeta[lvl]``.

    The checkpoint pools ``f.pool_u [slot, 2, ...]``, ``f.pool_psi``, ``f.pool_zeta
    [slot, 1, ...]``.
    """
    u, pu = ti.static((f.u, f.pool_u))
    ti.loop_config(serialize=f.serial)
    for K in ti.grouped(ti.ndrange(f.shots, *u.shape[2:])):
        if ti.static(save):
            pu[(slot, 0, *K)] = u[(u0, *K)]
            pu[(slot, 1, *K)] = u[(u1, *K)]
        else:
            u[(u0, *K)] = pu[(slot, 0, *K)]
            u[(u1, *K)] = pu[(slot, 1, *K)]
    for d in ti.static(range(f.ndim)):
        psi, zeta, pp, pz = ti.static((f.psi[d], f.zeta[d], f.pool_psi[d], f.pool_zeta[d]))
        ti.loop_config(serialize=f.serial)
        for K in ti.grouped(ti.ndrange(f.shots, *psi.shape[2:])):
            if ti.static(save):
                pp[(slot, 0, *K)] = psi[(lvl, *K)]
                pz[(slot, 0, *K)] = zeta[(lvl, *K)]
            else:
                psi[(lvl, *K)] = pp[(slot, 0, *K)]
                zeta[(lvl, *K)] = pz[(slot, 0, *K)]


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
    W = ti.static(f.W)
    sq = ti.cast(0.0, ti.f64)
    if rec_t >= 0:
        _receiver_adjoint(f, nxt, rec_t)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(f.pa, J):
            for xb in range(1, f.xs[2] - 1):
                _adj_a_rows(f, cur, nxt, src, dst, J, xb)
        for j in range(f.xs[3]):
            _adj_a_x(f, cur, nxt, src, dst, J, j)
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
    weight = ti.static(f.src_w)
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.src_pos.shape[1],
                                   *([weight.shape[3]] * f.ndim))):
        w = ti.cast(f.scale, f.dtype)
        cell = _cell(f.src_pos, P)
        for d in ti.static(range(f.ndim)):
            w *= weight[P[0], P[1], d, P[d + 2]]
        f.ampg[P[0], P[1], step] += w * f.ug[(nxt, *_lane_elem(cell, W))][
            (cell[cell.n - 1] + W) % W]
    return sq


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
    _copy_state(f, slot, u0, u1, lvl, save)


@ti.kernel
def adjoint_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                 dst: ti.i32, step: ti.i32, rec_t: ti.i32) -> ti.f64:
    """Reverse of :func:`wave_step` (see :func:`_adjoint`); returns ``|lambda[step+1]|^2``."""
    sq = _adjoint(f, prv, cur, nxt, src, dst, step, rec_t)
    return sq


# -- the arena engine: every vector array a view into one field, compiled once -----------
#: The vector arrays of a stepper kept in the arena, in layout order, with their number
#: of axes for a ``d``-dimensional grid (see :class:`Arrays` for what they hold).
def arena_arrays(ndim: int) -> tuple[tuple[str, int], ...]:
    """``(name, axes)`` of every arena array of a ``ndim``-D stepper, in layout order."""
    per_axis = [(f"{name}{d}", ndim + 2) for name in ("psi", "zeta", "psig", "zetag", "pbar")
                for d in range(ndim)]
    pools = [(f"pool_{name}{d}", ndim + 3) for name in ("psi", "zeta") for d in range(ndim)]
    return (("u", ndim + 2), ("ug", ndim + 2), *per_axis, ("kc", ndim), ("kg", ndim),
            ("kcg", ndim + 1), ("sg", ndim), ("pax", 1), ("pbx", 1), ("mx", 1),
            ("pool_u", ndim + 3), *pools)


def layout_size(ndim: int) -> int:
    """Entries of the layout vector: an offset and the extents of each arena array."""
    return sum(1 + axes for _, axes in arena_arrays(ndim))


class View:
    """An array inside the arena, a 1D vector field, indexed like a field.

    ``a[i, j, ...]`` is element ``offset + (i * shape[1] + j) * shape[2] + ...`` of the
    field (row-major).

    Built while a kernel compiles, from the layout vector (offsets and extents are
    run-time values), and indexed by the ``ti.func``s like a field or an ndarray. A
    Taichi field's element address stays in registers across stores, unlike an ndarray
    argument's (whose data pointer Taichi reloads after every store, which keeps LLVM from
    vectorising: 3-5x slower kernels, measured).
    """

    def __init__(self, field: object, offset: object, shape: tuple) -> None:
        self.field, self.offset, self.shape = field, offset, tuple(shape)

    def __getitem__(self, index: object) -> object:
        index = index if isinstance(index, tuple) else (index,)
        parts: list[object] = []
        for i in index:  # vectors of indices (grouped loop indices) count axis by axis
            if isinstance(i, Matrix):
                parts += i.to_list()
            elif isinstance(i, Expr) and i.is_tensor():
                parts += [impl.subscript(None, i, j) for j in range(i.get_shape()[0])]
            else:
                parts.append(i)
        index = tuple(parts)
        flat = index[0]
        for k in range(1, len(index)):
            flat = flat * self.shape[k] + index[k]
        return impl.subscript(None, self.field, self.offset + flat)


def _scalars(vector: object, count: int) -> tuple:
    """Entries ``0 … count-1`` of an argument as scalar kernel locals (plain Python).

    Loaded once at the kernel's start: an ndarray element read inside the loops would be
    reloaded after every store, and a vector local indexed there is slower than scalars.
    """
    return tuple(impl.expr_init(impl.subscript(None, vector, k)) for k in range(count))


def _views(arena: object, pools: object, layout: list, ndim: int) -> dict[str, object]:
    """The arena arrays as :class:`View`s from the layout entries (plain Python).

    The checkpoint pools (``pool_*``) are views into ``pools``, a second arena.
    """
    out: dict[str, object] = {}
    k = 0
    for name, axes in arena_arrays(ndim):
        field = pools if name.startswith("pool_") else arena
        out[name] = View(field, layout[k], layout[k + 1:k + 1 + axes])
        k += 1 + axes
    for name in ("psi", "zeta", "psig", "zetag", "pbar", "pool_psi", "pool_zeta"):
        out[name] = tuple(out.pop(f"{name}{d}") for d in range(ndim))
    return out


def _arrays(arena: object, pools: object, layout: tuple, c1: tuple, c2: tuple, ndim: int,
            real: object, lanes: int, sponge: bool, serial: bool, xs: object, pm0: object,
            pm1: object, ih: tuple, **items: object) -> Arrays:
    """The :class:`Arrays` of an arena kernel (plain Python, run while it compiles).

    Vector arguments become tuples of scalar kernel locals. The inverse spacings ``ih``
    are compile-time constants (ratios to one reference spacing): as run-time values the
    interior update took twice as long (measured).
    """
    views = _views(arena, pools, layout, ndim)
    xs, pm0, pm1 = (_scalars(v, 4) for v in (xs, pm0, pm1))
    if "xs_near" in items:
        items["xs_near"] = _scalars(items["xs_near"], 4)
    if "scale" in items:
        items["scale"] = impl.expr_init(items["scale"])
    u = views["u"]
    halo = len(c2) - 1
    space_rows = tuple((halo, u.shape[2 + d] - halo) for d in range(ndim - 1))
    return Arrays(xs=xs, pm=(pm0, pm1)[:ndim - 1], inv_h=ih, rows=((0, u.shape[1]), *space_rows),
                  space_rows=space_rows, shots=(0, u.shape[1]), kcg_per_shot=True, c1=c1,
                  c2=c2, ndim=ndim, dtype=real, W=lanes,
                  sponge=sponge, serial=serial, **views, **items)


def _one_shot(f: Arrays, s: object) -> Arrays:
    """``f`` restricted to shot ``s`` (plain Python, run while a kernel compiles)."""
    shot = (s, s + 1)
    return Arrays(**{**f.__dict__, "rows": (shot, *f.space_rows), "shots": shot})


@functools.cache
def arena_kernels(ndim: int, precision: str, lanes: int) -> dict[str, object]:
    """The arena engine's kernels for one dimension and precision.

    The vector arrays live in the arena, a 1D vector field passed as a template and
    addressed through the layout vector ``lay`` (:func:`arena_arrays`); everything else
    is an ndarray (NumPy on the CPU) or a scalar, but for the inverse grid spacings ``ih``
    (a template: as run-time values they made the update twice as slow; the caller
    passes ratios to one reference spacing, so every square grid shares them). So each
    kernel compiles once per arena pair and (order, spacing ratios, boundary, loop kind),
    and serves every grid, shot count, receiver count and record length that fits.

    * ``forward``: with ``serial`` steps ``start … stop-1`` in one launch, saving ``x[t]``
      (with ``save``) in checkpoint slot ``saves[t - start]`` (``-1``: no save) for ``t``
      in ``start … stop``; without, one step ``start`` with parallel loops (no saves).
      ``pools`` is the checkpoint arena (any field without ``save``).
    * ``reverse``: with ``serial`` the reverse of steps ``top, top-1, …`` (``count`` of
      them), restoring ``x[t]`` from pool slot ``slots[i]`` first (``-1``: live), the
      squared costate norm of each into ``norms[i]``; without, one step ``top``.
    * ``receiver_adjoint``: the receivers' adjoint at time ``t`` into ``ug[lvl]``.
    * ``read`` / ``write`` / ``fill``: elements ``offset …`` of the arena to, from or
      with NumPy (vectors of ``lanes``).
    """
    real = ti.f64 if precision == "f64" else ti.f32
    vec = ti.types.vector(lanes, real)
    nl = layout_size(ndim)
    lay_t = ti.types.ndarray(dtype=ti.i32, ndim=1)
    flat = ti.types.ndarray(dtype=vec, ndim=1)
    prof = ti.types.ndarray(dtype=real, ndim=2)
    r3 = ti.types.ndarray(dtype=real, ndim=3)
    r4 = ti.types.ndarray(dtype=real, ndim=4)
    pos = ti.types.ndarray(dtype=ti.types.vector(ndim, ti.i32), ndim=2)
    i1 = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1 = ti.types.ndarray(dtype=ti.f64, ndim=1)
    iv4 = ti.types.vector(4, ti.i32)
    const = dict(ndim=ndim, real=real, lanes=lanes)

    @ti.kernel
    def forward(arena: ti.template(), pools: ti.template(), lay: lay_t, pa: prof, pb: prof,
                amp: r3, traces: r3, src_pos: pos, src_w: r4, rec_pos: pos, rec_w: r4,
                saves: i1, xs: iv4, pm0: iv4, pm1: iv4, ih: ti.template(), scale: real,
                start: ti.i32, stop: ti.i32, c1: ti.template(), c2: ti.template(),
                sponge: ti.template(), serial: ti.template(), save: ti.template()):
        f = ti.static(_arrays(
            arena, pools, _scalars(lay, nl), c1, c2, sponge=sponge, serial=serial, xs=xs,
            pm0=pm0, pm1=pm1, ih=ih, pa=pa, pb=pb, amp=amp, traces=traces, src_pos=src_pos,
            src_w=src_w, rec_pos=rec_pos, rec_w=rec_w, scale=scale, **const))
        if ti.static(serial):
            # Shot by shot, each through the whole range: one shot's wavefield stays in
            # cache (a batched step sweeping every shot fell out of it, measured).
            ti.loop_config(serialize=True)
            for s in range(f.u.shape[1]):
                g = ti.static(_one_shot(f, s))
                for t in range(start, stop + 1):
                    if ti.static(save):
                        slot = saves[t - start]
                        if slot >= 0:
                            _copy_state(g, slot, (t + 2) % 3, t % 3, t % 2, True)
                    if t < stop:
                        _fused_step(g, (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2, t)
        else:
            _fused_step(f, (start + 2) % 3, start % 3, (start + 1) % 3, start % 2,
                        (start + 1) % 2, start)

    @ti.kernel
    def reverse(arena: ti.template(), pools: ti.template(), lay: lay_t, pa: prof, pb: prof,
                near: prof, ampg: r3, tracesg: r3, src_pos: pos, src_w: r4, rec_pos: pos,
                rec_w: r4, slots: i1, norms: f1, xs: iv4, xs_near: iv4, pm0: iv4, pm1: iv4,
                ih: ti.template(), scale: real, top: ti.i32, count: ti.i32, c1: ti.template(),
                c2: ti.template(), sponge: ti.template(), serial: ti.template()):
        f = ti.static(_arrays(
            arena, pools, _scalars(lay, nl), c1, c2, sponge=sponge, serial=serial, xs=xs,
            pm0=pm0, pm1=pm1, ih=ih, pa=pa, pb=pb, near=near, ampg=ampg, tracesg=tracesg,
            src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w, scale=scale,
            xs_near=xs_near, **const))
        if ti.static(serial):
            # Shot by shot (as the forward); every shot sums its own kc gradient over the
            # steps in reverse order, so all schedules give the same bits.
            ti.loop_config(serialize=True)
            for s in range(f.u.shape[1]):
                g = ti.static(_one_shot(f, s))
                for i in range(count):
                    t = top - i
                    slot = slots[i]
                    if slot >= 0:
                        _copy_state(g, slot, (t + 2) % 3, t % 3, t % 2, False)
                    norms[i * f.u.shape[1] + s] = _adjoint(g, (t + 2) % 3, t % 3, (t + 1) % 3,
                                                          t % 2, (t + 1) % 2, t, t + 1)
        else:
            sq = _adjoint(f, (top + 2) % 3, top % 3, (top + 1) % 3, top % 2, (top + 1) % 2,
                          top, top + 1)
            norms[0] = sq

    @ti.kernel
    def receiver_adjoint(arena: ti.template(), lay: lay_t, tracesg: r3, rec_pos: pos,
                         rec_w: r4, lvl: ti.i32, t: ti.i32):
        f = ti.static(Arrays(ug=_views(arena, arena, _scalars(lay, nl),
                                       ndim)["ug"], tracesg=tracesg, rec_pos=rec_pos,
                             rec_w=rec_w, ndim=ndim, dtype=real, W=lanes,
                             shots=(0, rec_pos.shape[0])))
        _receiver_adjoint(f, lvl, t)

    @ti.kernel
    def read(arena: ti.template(), offset: ti.i32, out: flat):
        for i in range(out.shape[0]):
            out[i] = arena[offset + i]

    @ti.kernel
    def write(arena: ti.template(), offset: ti.i32, src: flat):
        for i in range(src.shape[0]):
            arena[offset + i] = src[i]

    @ti.kernel
    def fill(arena: ti.template(), offset: ti.i32, count: ti.i32):
        for i in range(offset, offset + count):
            arena[i] = ti.zero(arena[i])

    @ti.kernel
    def copy(src: ti.template(), src_offset: ti.i32, dst: ti.template(), dst_offset: ti.i32,
             count: ti.i32):
        for i in range(count):
            dst[dst_offset + i] = src[src_offset + i]

    return dict(forward=forward, reverse=reverse, receiver_adjoint=receiver_adjoint, read=read,
                write=write, fill=fill, copy=copy)

"""The cell engine: acoustic kernels on plain cell arrays (Taichi ndarrays), any dimension.

One scheme per ``staggered`` flag (a template argument), both leapfrog in time with the
same C-PML recursion per axis ``d`` (``a, b`` the profiles, zero outside the layer):

* ``staggered=True``, variable density: ``p_tt = K div(B grad p) + s`` with ``K = rho c^2``
  at cells and the buoyancy ``B = 1/rho`` at half points ``j + 1/2``::

      phi_d   = D+_d p                       (half points, stored at index j)
      psi_d'  = bh_d psi_d + ah_d phi_d      (half-point profiles bh, ah)
      flux_d  = B_d (phi_d + psi_d')
      q_d     = D-_d flux_d                  (cells)
      zeta_d' = b_d zeta_d + a_d q_d
      p+      = 2 p - p- + KK sum_d (q_d + zeta_d')   (KK = dt^2 K)

  ``D+`` and ``D-`` are the staggered first differences of the order's coefficients
  ``s1`` (:data:`diffsim.acoustic.STAGGERED`; ``D+ p[j] = sum_k s_k (p[j+k] - p[j-k+1]) / h``).
* ``staggered=False``, constant density (the arena engine's scheme, written per cell:
  the Born tangent of the default engine): ``psi_d' = b psi_d + a D1_d p`` (cells),
  ``q_d = D2_d p + M_d D1_d psi_d'``, ``zeta_d'`` and ``p+`` as above with ``KK = dt^2 c^2``.

With a sponge (``sponge=True``): ``p+ = g (2 p - g p- + KK sum_d q_d)``.

Arrays: ``p [3, shot, *N]`` (ring of levels), ``psi, zeta [2, axis, shot, *N]`` (ring),
``flux [axis, shot, *N]``, ``kk [*N]`` (zero-free only inside the frame of ``halo``
cells, which the update never writes), ``buoy [axis, *N]``, profiles ``[axis, max N]``.
Values outside an array (neighbours of the outermost cells) read as zero.
"""

import taichi as ti


@ti.func
def _cell(X: ti.template()):
    """Spatial index of ``X = (shot, *cell)``."""
    return ti.Vector([X[k] for k in ti.static(range(1, X.n))])


@ti.func
def _at(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(), k: ti.i32,
        safe: ti.template() = False):
    """``a[*head, X moved k along spatial axis d]``, zero outside the array.

    ``safe``: the caller knows the entry lies inside (no bounds check).
    """
    if ti.static(safe):
        return a[(*head, *(X + k * ti.Vector.unit(X.n, d + 1, ti.i32)))]
    else:
        n = a.shape[ti.static(len(head)) + d + 1]
        j = X[d + 1] + k
        J = X + (ti.max(0, ti.min(j, n - 1)) - X[d + 1]) * ti.Vector.unit(X.n, d + 1, ti.i32)
        return ti.select((j >= 0) & (j < n), a[(*head, *J)], 0.0)


@ti.func
def _inside(a: ti.template(), head: ti.template(), X: ti.template(), lo: ti.template(),
            hi: ti.template()):
    """Whether every spatial index of ``X`` lies in ``[lo, n - 1 - hi]`` of ``a``'s axes."""
    ok = True
    for d in ti.static(range(X.n - 1)):
        ok = ok & (X[d + 1] >= lo) & (X[d + 1] <= a.shape[ti.static(len(head)) + d + 1] - 1 - hi)
    return ok


@ti.func
def _dplus(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(),
           s1: ti.template(), safe: ti.template() = False):
    """Staggered forward difference (no 1/h) of ``a`` at half point ``X + 1/2`` along ``d``."""
    acc = s1[0] * (_at(a, head, X, d, 1, safe) - _at(a, head, X, d, 0, safe))
    for k in ti.static(range(1, len(s1))):
        acc += s1[k] * (_at(a, head, X, d, k + 1, safe) - _at(a, head, X, d, -k, safe))
    return acc


@ti.func
def _dminus(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(),
             s1: ti.template(), safe: ti.template() = False):
    """Staggered backward difference (no 1/h) at cell ``X`` of half-point values ``a``."""
    acc = s1[0] * (_at(a, head, X, d, 0, safe) - _at(a, head, X, d, -1, safe))
    for k in ti.static(range(1, len(s1))):
        acc += s1[k] * (_at(a, head, X, d, k, safe) - _at(a, head, X, d, -k - 1, safe))
    return acc


@ti.func
def _dminus_t(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(),
              s1: ti.template(), safe: ti.template() = False):
    """Transpose of :func:`_dminus` (no 1/h) at half point ``X``: ``sum_k s_k (a[X-k+1] - a[X+k])``."""
    acc = s1[0] * (_at(a, head, X, d, 0, safe) - _at(a, head, X, d, 1, safe))
    for k in ti.static(range(1, len(s1))):
        acc += s1[k] * (_at(a, head, X, d, -k, safe) - _at(a, head, X, d, k + 1, safe))
    return acc


@ti.func
def _d1(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(),
        c1: ti.template(), safe: ti.template() = False):
    """Central first difference (no 1/h) at cell ``X`` along ``d``."""
    acc = c1[0] * (_at(a, head, X, d, 1, safe) - _at(a, head, X, d, -1, safe))
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (_at(a, head, X, d, k + 1, safe) - _at(a, head, X, d, -k - 1, safe))
    return acc


@ti.func
def _d2(a: ti.template(), head: ti.template(), X: ti.template(), d: ti.template(),
        c2: ti.template(), safe: ti.template() = False):
    """Central second difference (no 1/h^2) at cell ``X`` along ``d``."""
    acc = c2[0] * a[(*head, *X)]
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (_at(a, head, X, d, k, safe) + _at(a, head, X, d, -k, safe))
    return acc


@ti.kernel
def memory(p: ti.types.ndarray(), psi: ti.types.ndarray(), flux: ti.types.ndarray(),
           buoy: ti.types.ndarray(), ah: ti.types.ndarray(), bh: ti.types.ndarray(),
           ih: ti.types.ndarray(), cur: ti.i32, src: ti.i32, dst: ti.i32, s1: ti.template(),
           staggered: ti.template()):
    """First stage: ``psi_d' `` into ``psi[dst]`` and (staggered) the fluxes.

    Staggered: every half point (the fluxes feed the second stage); constant density:
    the layer cells only (``ah, bh`` are then the cell profiles, ``s1`` the central ``c1``).
    """
    nd = ti.static(len(p.shape) - 2)
    for X in ti.grouped(ti.ndrange(*[p.shape[k + 1] for k in ti.static(range(nd + 1))])):
        # whether the staggered stencil stays inside on every axis (checked once a cell)
        inside = _inside(p, (cur,), X, ti.static(len(s1) - 1), ti.static(len(s1)))
        for d in ti.static(range(nd)):
            a = ah[d, X[d + 1]]
            if ti.static(staggered):
                phi = 0.0
                if inside:
                    phi = _dplus(p, (cur,), X, d, s1, True) * ih[d]
                else:
                    phi = _dplus(p, (cur,), X, d, s1) * ih[d]
                if a != 0.0:
                    m = bh[d, X[d + 1]] * psi[(src, d, *X)] + a * phi
                    psi[(dst, d, *X)] = m
                    phi += m
                flux[(d, *X)] = buoy[(d, *_cell(X))] * phi
            else:
                if a != 0.0:
                    psi[(dst, d, *X)] = (bh[d, X[d + 1]] * psi[(src, d, *X)]
                                         + a * (_d1(p, (cur,), X, d, s1, True) * ih[d]))


@ti.func
def _q(p: ti.template(), psi: ti.template(), flux: ti.template(), pa: ti.template(),
       ih: ti.template(), cur: ti.i32, dst: ti.i32, X: ti.template(), d: ti.template(),
       s1: ti.template(), c2: ti.template(), staggered: ti.template()):
    """``q_d`` at cell ``X`` (before the zeta memory)."""
    q = 0.0
    if ti.static(staggered):
        q = _dminus(flux, (d,), X, d, s1, True) * ih[d]
    else:
        q = _d2(p, (cur,), X, d, c2, True) * (ih[d] * ih[d])
        if pa[d, X[d + 1]] != 0.0:
            q += _d1(psi, (dst, d), X, d, s1, True) * ih[d]
    return q


@ti.kernel
def update(p: ti.types.ndarray(), psi: ti.types.ndarray(), zeta: ti.types.ndarray(),
           flux: ti.types.ndarray(), kk: ti.types.ndarray(), sg: ti.types.ndarray(),
           pa: ti.types.ndarray(), pb: ti.types.ndarray(), ih: ti.types.ndarray(),
           tot: ti.types.ndarray(), dkk: ti.types.ndarray(), prv: ti.i32, cur: ti.i32,
           nxt: ti.i32, src: ti.i32, dst: ti.i32, s1: ti.template(), c2: ti.template(),
           halo: ti.template(), staggered: ti.template(), sponge: ti.template(),
           keep: ti.template(), born: ti.template()):
    """Second stage: ``zeta[dst]`` and ``p[nxt]`` on every interior cell.

    ``keep``: also write ``sum_d (q_d + zeta_d')`` into ``tot [shot, *N]`` (the
    background of a Born run); ``born``: add the Born source ``dkk * tot`` (``dkk`` the
    perturbation of ``KK``, ``tot`` kept by the background's update).
    """
    nd = ti.static(len(p.shape) - 2)
    for X in ti.grouped(ti.ndrange(p.shape[1], *[(halo, p.shape[k + 2] - halo)
                                                 for k in ti.static(range(nd))])):
        acc = 0.0
        for d in ti.static(range(nd)):
            q = _q(p, psi, flux, pa, ih, cur, dst, X, d, s1, c2, staggered)
            a = pa[d, X[d + 1]]
            if a != 0.0:
                z = pb[d, X[d + 1]] * zeta[(src, d, *X)] + a * q
                zeta[(dst, d, *X)] = z
                q += z
            acc += q
        C = _cell(X)
        rhs = kk[C] * acc
        if ti.static(keep):
            tot[X] = acc
        if ti.static(born):
            rhs += dkk[C] * tot[X]
        if ti.static(sponge):
            g = sg[C]
            p[(nxt, *X)] = g * (2.0 * p[(cur, *X)] - g * p[(prv, *X)] + rhs)
        else:
            p[(nxt, *X)] = 2.0 * p[(cur, *X)] - p[(prv, *X)] + rhs


@ti.func
def _weight(w: ti.template(), s: ti.i32, n: ti.i32, P: ti.template()):
    """Product over the axes of the stencil weights of point ``(s, n)`` at offset ``P``."""
    acc = w[s, n, 0, P[0]]
    for d in ti.static(range(1, P.n)):
        acc *= w[s, n, d, P[d]]
    return acc


@ti.func
def _point(pos: ti.template(), s: ti.i32, n: ti.i32, P: ti.template()):
    """Index ``(shot, *cell)`` of offset ``P`` of point ``(s, n)``'s stencil."""
    base = pos[s, n]
    return ti.Vector([s] + [base[d] + P[d] for d in ti.static(range(P.n))])


@ti.kernel
def inject(p: ti.types.ndarray(), amp: ti.types.ndarray(), pos: ti.types.ndarray(),
           w: ti.types.ndarray(), scale: float, lvl: ti.i32, step: ti.i32):
    """``p[lvl] += scale amp[shot, source, step] w`` over each source's stencil (serial)."""
    nd = ti.static(len(p.shape) - 2)
    ti.loop_config(serialize=True)
    for s, n in ti.ndrange(pos.shape[0], pos.shape[1]):
        for P in ti.grouped(ti.ndrange(*([w.shape[3]] * nd))):
            p[(lvl, *_point(pos, s, n, P))] += scale * amp[s, n, step] * _weight(w, s, n, P)


@ti.kernel
def record(p: ti.types.ndarray(), traces: ti.types.ndarray(), pos: ti.types.ndarray(),
           w: ti.types.ndarray(), lvl: ti.i32, t: ti.i32):
    """``traces[t, shot, receiver] = sum w p[lvl]`` over each receiver's stencil."""
    nd = ti.static(len(p.shape) - 2)
    for s, n in ti.ndrange(pos.shape[0], pos.shape[1]):
        acc = 0.0
        for P in ti.grouped(ti.ndrange(*([w.shape[3]] * nd))):
            acc += _weight(w, s, n, P) * p[(lvl, *_point(pos, s, n, P))]
        traces[t, s, n] = acc


# -- the adjoint of the staggered step (hand-written, gather form) ------------------------
# With lup the adjoint of p+, le = g lup (g = 1 without a sponge) and r = KK le:
#   Z_d = lzeta'_d + r;  qg_d = r + a_d Z_d;  lzeta_d = b_d Z_d;  dL/dKK += le sum_d (q_d + zeta'_d)
#   fg_d = D-_d^T qg_d;  dL/dB_d += fg_d (phi_d + psi_d');  F = B_d fg_d
#   Y_d = lpsi'_d + F;  phig_d = F + ah_d Y_d;  lpsi_d = bh_d Y_d
#   lp += 2 le + sum_d D+_d^T phig_d;  lp- = -g le
# D+^T and D-^T are gathers (D-^T x [j] = sum_k s_k (x[j-k+1] - x[j+k]), D+^T = the
# same with the signs of the other difference). Each stage writes what it owns only.
@ti.kernel
def adjoint_update(p: ti.types.ndarray(), pg: ti.types.ndarray(), zeta: ti.types.ndarray(),
                   zetag: ti.types.ndarray(), flux: ti.types.ndarray(),
                   qg: ti.types.ndarray(), kk: ti.types.ndarray(), kkg: ti.types.ndarray(),
                   sg: ti.types.ndarray(), pa: ti.types.ndarray(), pb: ti.types.ndarray(),
                   ih: ti.types.ndarray(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                   dst: ti.i32, s1: ti.template(), halo: ti.template(),
                   sponge: ti.template()) -> ti.f64:
    """Reverse of :func:`update` (staggered): ``qg``, ``lzeta``, ``lp``, ``lp-``, ``dL/dKK``.

    ``flux`` must hold the step's fluxes (rerun :func:`memory` first). Returns the
    squared norm of the incoming wavefield adjoint (``lp+`` and ``lp``), f64.
    """
    nd = ti.static(len(p.shape) - 2)
    sq = ti.cast(0.0, ti.f64)
    for X in ti.grouped(ti.ndrange(p.shape[1], *[(halo, p.shape[k + 2] - halo)
                                                 for k in ti.static(range(nd))])):
        C = _cell(X)
        lup = pg[(nxt, *X)]
        g = 1.0
        if ti.static(sponge):
            g = sg[C]
        le = g * lup
        r = kk[C] * le
        acc = 0.0
        for d in ti.static(range(nd)):
            q = _dminus(flux, (d,), X, d, s1, True) * ih[d]
            a = pa[d, X[d + 1]]
            grad_q = r
            if a != 0.0:
                b = pb[d, X[d + 1]]
                Z = zetag[(dst, d, *X)] + r
                grad_q += a * Z
                zetag[(src, d, *X)] = b * Z
                q += b * zeta[(src, d, *X)] + a * q
            qg[(d, *X)] = grad_q
            acc += q
        kkg[X] += le * acc
        lcur = pg[(cur, *X)]
        pg[(cur, *X)] = lcur + 2.0 * le
        pg[(prv, *X)] = -g * le
        sq += ti.cast(lup * lup + lcur * lcur, ti.f64)
    return sq


@ti.kernel
def adjoint_memory(p: ti.types.ndarray(), psi: ti.types.ndarray(), psig: ti.types.ndarray(),
                   qg: ti.types.ndarray(), phig: ti.types.ndarray(), buoy: ti.types.ndarray(),
                   buoyg: ti.types.ndarray(), ah: ti.types.ndarray(), bh: ti.types.ndarray(),
                   ih: ti.types.ndarray(), cur: ti.i32, src: ti.i32, dst: ti.i32,
                   s1: ti.template()):
    """Reverse of :func:`memory` (staggered): ``phig``, ``lpsi``, ``dL/dB`` at half points.

    ``psi[dst]`` must hold the step's ``psi'`` (rerun :func:`memory` first).
    """
    nd = ti.static(len(p.shape) - 2)
    for X in ti.grouped(ti.ndrange(*[p.shape[k + 1] for k in ti.static(range(nd + 1))])):
        inside = _inside(p, (cur,), X, ti.static(len(s1) - 1), ti.static(len(s1)))
        for d in ti.static(range(nd)):
            # D-^T of qg at half point X: sum_k s_k (qg[X-k+1] - qg[X+k]); D+ of p.
            fg = 0.0
            phi = 0.0
            if inside:
                fg = _dminus_t(qg, (d,), X, d, s1, True) * ih[d]
                phi = _dplus(p, (cur,), X, d, s1, True) * ih[d]
            else:
                fg = _dminus_t(qg, (d,), X, d, s1) * ih[d]
                phi = _dplus(p, (cur,), X, d, s1) * ih[d]
            a = ah[d, X[d + 1]]
            if a != 0.0:
                phi += psi[(dst, d, *X)]
            buoyg[(d, *X)] += fg * phi
            F = buoy[(d, *_cell(X))] * fg
            grad_phi = F
            if a != 0.0:
                Y = psig[(dst, d, *X)] + F
                grad_phi += a * Y
                psig[(src, d, *X)] = bh[d, X[d + 1]] * Y
            phig[(d, *X)] = grad_phi


@ti.kernel
def adjoint_gather(pg: ti.types.ndarray(), phig: ti.types.ndarray(), ih: ti.types.ndarray(),
                   cur: ti.i32, s1: ti.template(), halo: ti.template()):
    """``lp += sum_d D+_d^T phig_d`` on every interior cell."""
    nd = ti.static(len(pg.shape) - 2)
    for X in ti.grouped(ti.ndrange(pg.shape[1], *[(halo, pg.shape[k + 2] - halo)
                                                  for k in ti.static(range(nd))])):
        acc = 0.0
        for d in ti.static(range(nd)):
            g = s1[0] * (_at(phig, (d,), X, d, -1, True) - _at(phig, (d,), X, d, 0, True))
            for k in ti.static(range(1, len(s1))):
                g += s1[k] * (_at(phig, (d,), X, d, -k - 1, True) - _at(phig, (d,), X, d, k, True))
            acc += g * ih[d]
        pg[(cur, *X)] += acc


@ti.kernel
def adjoint_sources(pg: ti.types.ndarray(), ampg: ti.types.ndarray(), pos: ti.types.ndarray(),
                    w: ti.types.ndarray(), scale: ti.f64, lvl: ti.i32, step: ti.i32):
    """``ampg[shot, source, step] += scale sum w pg[lvl]`` (reverse of :func:`inject`)."""
    nd = ti.static(len(pg.shape) - 2)
    for s, n in ti.ndrange(pos.shape[0], pos.shape[1]):
        acc = ti.cast(0.0, ti.f64)
        for P in ti.grouped(ti.ndrange(*([w.shape[3]] * nd))):
            acc += ti.cast(_weight(w, s, n, P) * pg[(lvl, *_point(pos, s, n, P))], ti.f64)
        ampg[s, n, step] += scale * acc


@ti.kernel
def adjoint_receivers(pg: ti.types.ndarray(), tracesg: ti.types.ndarray(),
                      pos: ti.types.ndarray(), w: ti.types.ndarray(), lvl: ti.i32, t: ti.i32):
    """``pg[lvl] += w tracesg[t, shot, receiver]`` over each receiver's stencil (serial)."""
    nd = ti.static(len(pg.shape) - 2)
    ti.loop_config(serialize=True)
    for s, n in ti.ndrange(pos.shape[0], pos.shape[1]):
        for P in ti.grouped(ti.ndrange(*([w.shape[3]] * nd))):
            pg[(lvl, *_point(pos, s, n, P))] += _weight(w, s, n, P) * tracesg[t, s, n]


@ti.kernel
def copy_levels(src: ti.types.ndarray(), i: ti.i32, dst: ti.types.ndarray(), j: ti.i32):
    """``dst[j, ...] = src[i, ...]`` (arrays of equal trailing shape)."""
    for X in ti.grouped(ti.ndrange(*[src.shape[k + 1]
                                     for k in ti.static(range(len(src.shape) - 1))])):
        dst[(j, *X)] = src[(i, *X)]


@ti.kernel
def zero(a: ti.types.ndarray()):
    """``a[...] = 0``."""
    for X in ti.grouped(a):
        a[X] = ti.zero(a[X])


@ti.kernel
def sumsq_level(a: ti.types.ndarray(), i: ti.i32) -> ti.f64:
    """``sum a[i, ...]^2`` in f64 (NaN or Inf when any value is)."""
    acc = ti.cast(0.0, ti.f64)
    for X in ti.grouped(ti.ndrange(*[a.shape[k + 1]
                                     for k in ti.static(range(len(a.shape) - 1))])):
        v = ti.cast(a[(i, *X)], ti.f64)
        acc += v * v
    return acc

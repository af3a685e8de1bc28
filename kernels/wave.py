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

import taichi as ti


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
def _xget(f: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, xs: ti.template()):
    """Block ``xb`` of x-strip field ``f``; zero for blocks the strip does not store."""
    inside = ((xb >= 1) & (xb < xs[0])) | ((xb >= xs[1]) & (xb < xs[2] - 1))
    j = ti.max(0, ti.min(_xstrip(xb, xs), f.shape[J.n + 1] - 1))
    return f[(lvl, *_at(J, j))] * ti.cast(inside, f.dtype)


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
def _d1r(f: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
         c1: ti.template()):
    """Central first difference along row axis ``d`` of a full field (no 1/h)."""
    acc = c1[0] * (f[(lvl, *_at(_moved(J, d, 1), xb))] - f[(lvl, *_at(_moved(J, d, -1), xb))])
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (f[(lvl, *_at(_moved(J, d, k + 1), xb))]
                        - f[(lvl, *_at(_moved(J, d, -k - 1), xb))])
    return acc


@ti.func
def _d2r(f: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
         c2: ti.template()):
    """Central second difference along row axis ``d`` of a full field (no 1/h^2)."""
    acc = c2[0] * f[(lvl, *_at(J, xb))]
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (f[(lvl, *_at(_moved(J, d, k), xb))] + f[(lvl, *_at(_moved(J, d, -k), xb))])
    return acc


@ti.func
def _sget(f: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
          pa: ti.template(), pm: ti.template()):
    """Block ``xb`` of row ``J`` of a row-axis strip field; zero outside the layer."""
    m = ti.cast(pa[d, J[d + 1]] != 0.0, f.dtype)
    return m * f[(lvl, *_at(_rstrip(J, d, pm), xb))]


@ti.func
def _d1s(f: ti.template(), lvl: ti.i32, J: ti.template(), xb: ti.i32, d: ti.template(),
         c1: ti.template(), pa: ti.template(), pm: ti.template()):
    """Central first difference along row axis ``d`` of a strip field (zero outside)."""
    acc = c1[0] * (_sget(f, lvl, _moved(J, d, 1), xb, d, pa, pm)
                   - _sget(f, lvl, _moved(J, d, -1), xb, d, pa, pm))
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (_sget(f, lvl, _moved(J, d, k + 1), xb, d, pa, pm)
                        - _sget(f, lvl, _moved(J, d, -k - 1), xb, d, pa, pm))
    return acc


# -- forward -------------------------------------------------------------------------------
@ti.func
def _psi_rows(u: ti.template(), psi: ti.template(), pa: ti.template(), pb: ti.template(),
              cur: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
              J: ti.template(), xb: ti.i32, pm: ti.template()):
    """``psi_d[dst] = b_d psi_d[src] + a_d D1_d u[cur] / h_d`` on one block, row axes ``d``."""
    for d in ti.static(range(len(psi) - 1)):
        i = J[d + 1]
        if pa[d, i] != 0.0:
            S = _at(_rstrip(J, d, pm), xb)
            psi[d][(dst, *S)] = (pb[d, i] * psi[d][(src, *S)]
                                 + (pa[d, i] * inv_h[d]) * _d1r(u, cur, J, xb, d, c1))


@ti.func
def _psi_x(u: ti.template(), psi: ti.template(), pax: ti.template(), pbx: ti.template(),
           cur: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
           J: ti.template(), j: ti.i32, xs: ti.template()):
    """The x part of :func:`_psi_rows` on x-strip block ``j``."""
    nx = ti.static(len(psi) - 1)
    xb = _xblock(j, xs)
    S = _at(J, j)
    d1 = _d1x(u[(cur, *_at(J, xb - 1))], u[(cur, *_at(J, xb))], u[(cur, *_at(J, xb + 1))], c1)
    psi[nx][(dst, *S)] = pbx[xb] * psi[nx][(src, *S)] + pax[xb] * (inv_h[nx] * d1)


@ti.func
def _update_block(u: ti.template(), psi: ti.template(), zeta: ti.template(), kc: ti.template(),
                  pa: ti.template(), pb: ti.template(), pax: ti.template(), pbx: ti.template(),
                  mx: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                  dst: ti.i32, inv_h: ti.template(), c1: ti.template(), c2: ti.template(),
                  J: ti.template(), xb: ti.i32, xs: ti.template(), pm: ti.template(),
                  rowpml: ti.template(), xpml: ti.template(), sg: ti.template(),
                  sponge: ti.template()):
    """Leapfrog update of one block of ``u[nxt]``; writes ``zeta[dst]`` in the PML.

    With ``sponge`` the Cerjan damping ``g = sg``: ``u+ = g (2 u - g u- + kc lap)``.

    ``rowpml``: the row lies in the PML of a row axis; ``xpml``: the block is an
    x-strip block.
    """
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
            qp = q + ti.cast(a != 0.0, u.dtype) * (_d1s(psi[d], dst, J, xb, d, c1, pa, pm)
                                                    * inv_h[d])
            z = pb[d, i] * zeta[d][(src, *S)] + a * qp
            if a != 0.0:
                zeta[d][(dst, *S)] = z
            q = qp + z
        lap += q
    q = _d2x(u[(cur, *_at(J, xb - 1))], mid, u[(cur, *_at(J, xb + 1))], c2) * (inv_h[nx] * inv_h[nx])
    if ti.static(xpml):
        S = _at(J, _xstrip(xb, xs))
        d1 = _d1x(_xget(psi[nx], dst, J, xb - 1, xs), psi[nx][(dst, *S)],
                  _xget(psi[nx], dst, J, xb + 1, xs), c1)
        q += mx[xb] * (inv_h[nx] * d1)
        z = pbx[xb] * zeta[nx][(src, *S)] + pax[xb] * q
        zeta[nx][(dst, *S)] = z
        q += z
    lap += q
    if ti.static(sponge):
        g = sg[_sp(J, xb)]
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
def _fused_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                dst: ti.i32, step: ti.i32):
    """The fused step of :func:`wave_step` (``part`` 0).

    PML memory, update, sources, and the receivers at ``step + 1``. Its loops are
    parallel at a kernel's top level (unless ``f.serial``) and serial inside
    :func:`wave_steps`' time loop.
    """
    u, psi, zeta, kc = ti.static(f.u, f.psi, f.zeta, f.kc)
    pa, pb, pax, pbx, mx = ti.static(f.pa, f.pb, f.pax, f.pbx, f.mx)
    inv_h, c1, c2, xs, pm = ti.static(f.inv_h, f.c1, f.c2, f.xs, f.pm)
    sg, sponge = ti.static(f.sg, f.sponge)
    pos, weight = ti.static(f.src_pos, f.src_w)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(pa, J):
            for xb in range(1, xs[2] - 1):
                _psi_rows(u, psi, pa, pb, cur, src, dst, inv_h, c1, J, xb, pm)
        for j in range(xs[3]):
            _psi_x(u, psi, pax, pbx, cur, src, dst, inv_h, c1, J, j, xs)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(pa, J):
            for j in range(xs[3]):
                _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                              inv_h, c1, c2, J, _xblock(j, xs), xs, pm, True, True, sg,
                              sponge)
            for xb in range(xs[0], xs[1]):
                _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                              inv_h, c1, c2, J, xb, xs, pm, True, False, sg, sponge)
        else:
            for j in range(xs[3]):
                _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                              inv_h, c1, c2, J, _xblock(j, xs), xs, pm, False, True, sg,
                              sponge)
            for xb in range(xs[0], xs[1]):
                _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                              inv_h, c1, c2, J, xb, xs, pm, False, False, sg, sponge)
    ti.loop_config(serialize=True)  # a few cells: cheaper than a parallel task
    for P in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
        _inject(f, nxt, step, P)
    ti.loop_config(serialize=True)
    for s, r in ti.ndrange(f.traces.shape[1], f.traces.shape[2]):
        f.traces[step + 1, s, r] = 0.0
    rpos, rweight = ti.static(f.rec_pos, f.rec_w)
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(rpos.shape[0], rpos.shape[1],
                                   *([rweight.shape[3]] * rpos.n))):
        _sample(f, nxt, step + 1, P)


@ti.kernel
def wave_steps(f: ti.template(), start: ti.i32, stop: ti.i32):
    """Steps ``start … stop-1`` of :func:`wave_step` (``part`` 0) in one launch.

    A serial time loop (one thread; the CPU with ``f.serial``): the Python cost of a
    launch, tens of microseconds, is paid once per range instead of once per step.
    Time levels as :meth:`AcousticStepper.level`: ``u`` a ring of 3, ``psi, zeta`` of 2.
    """
    ti.loop_config(serialize=True)
    for t in range(start, stop):
        _fused_step(f, (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2, t)


@ti.kernel
def wave_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32,
              step: ti.i32, part: ti.template()):
    """One leapfrog step: PML memory ``psi[dst]``, ``u[nxt]`` and ``zeta[dst]``, sources.

    ``f`` bundles the stepper's fields and compile-time constants (one template
    argument keeps the launch cheap): ``u, psi, zeta, kc, pa, pb, pax, pbx, mx`` as in
    the module docstring, ``inv_h, c1, c2, rows, xs, pm`` (tuples), and the sources:
    ``u[nxt] += scale * amp[shot, source, step] * w`` over each source's stencil, with
    ``src_pos[shot, source]`` the stencil's first cell, ``src_w[shot, source, axis, k]``
    its separable weights and ``scale = dt^2 / cell volume``.

    ``part`` 0: the fused step, rows in parallel and blocks serially, which also
    records the receivers at ``step + 1`` (as :func:`record_traces` would); 1 and 2:
    the PML memory, then update and sources, each as one parallel loop over (row,
    block), the loop shape whose Taichi autodiff is exact (the autodiff reverse).
    """
    u, psi, zeta, kc = ti.static(f.u, f.psi, f.zeta, f.kc)
    pa, pb, pax, pbx, mx = ti.static(f.pa, f.pb, f.pax, f.pbx, f.mx)
    inv_h, c1, c2, xs, pm = ti.static(f.inv_h, f.c1, f.c2, f.xs, f.pm)
    sg, sponge = ti.static(f.sg, f.sponge)
    pos, weight, amp = ti.static(f.src_pos, f.src_w, f.amp)
    if ti.static(part == 0):
        _fused_step(f, prv, cur, nxt, src, dst, step)
    # Flat variants (one parallel loop over (row, block), no serial inner loop): the
    # same block functions in a loop shape whose Taichi autodiff is exact.
    if ti.static(part == 1):
        for K in ti.grouped(ti.ndrange(*f.rows, (1, xs[2] - 1))):
            J = ti.Vector([K[k] for k in ti.static(range(K.n - 1))])
            xb = K[K.n - 1]
            if _row_in(pa, J):
                _psi_rows(u, psi, pa, pb, cur, src, dst, inv_h, c1, J, xb, pm)
            if xb < xs[0] or xb >= xs[1]:
                _psi_x(u, psi, pax, pbx, cur, src, dst, inv_h, c1, J, _xstrip(xb, xs), xs)
    if ti.static(part == 2):
        for K in ti.grouped(ti.ndrange(*f.rows, (1, xs[2] - 1))):
            J = ti.Vector([K[k] for k in ti.static(range(K.n - 1))])
            xb = K[K.n - 1]
            if _row_in(pa, J):
                if xb < xs[0] or xb >= xs[1]:
                    _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                                  inv_h, c1, c2, J, xb, xs, pm, True, True, sg, sponge)
                else:
                    _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                                  inv_h, c1, c2, J, xb, xs, pm, True, False, sg, sponge)
            else:
                if xb < xs[0] or xb >= xs[1]:
                    _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                                  inv_h, c1, c2, J, xb, xs, pm, False, True, sg, sponge)
                else:
                    _update_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, prv, cur, nxt, src, dst,
                                  inv_h, c1, c2, J, xb, xs, pm, False, False, sg, sponge)
    if ti.static(part == 2):
        for P in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
            _inject(f, nxt, step, P)


@ti.func
def _inject(f: ti.template(), nxt: ti.i32, step: ti.i32, P: ti.template()):
    """``u[nxt] += scale * amp[shot, source, step] * w`` at one cell of a source's stencil."""
    u, pos, weight = ti.static(f.u, f.src_pos, f.src_w)
    w = ti.cast(f.scale, u.dtype) * f.amp[P[0], P[1], step]
    base = pos[P[0], P[1]]
    cell = ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(pos.n))])
    for d in ti.static(range(pos.n)):
        w *= weight[P[0], P[1], d, P[d + 2]]
    u[(nxt, *_lane_elem(cell, u.n))][(cell[cell.n - 1] + u.n) % u.n] += w


@ti.func
def _sample(f: ti.template(), lvl: ti.i32, t: ti.i32, P: ti.template()):
    """``traces[t, shot, receiver] += w u[lvl]`` at one cell of a receiver's stencil."""
    u, pos, weight = ti.static(f.u, f.rec_pos, f.rec_w)
    w = ti.cast(1.0, u.dtype)
    base = pos[P[0], P[1]]
    cell = ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(pos.n))])
    for d in ti.static(range(pos.n)):
        w *= weight[P[0], P[1], d, P[d + 2]]
    f.traces[t, P[0], P[1]] += w * u[(lvl, *_lane_elem(cell, u.n))][(cell[cell.n - 1] + u.n)
                                                                      % u.n]


@ti.kernel
def record_traces(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """``traces[t, shot, receiver] = sum_k w_k u[lvl, shot, rec_pos + k]`` (``w = rec_w``)."""
    traces, pos, weight = ti.static(f.traces, f.rec_pos, f.rec_w)
    for s, r in ti.ndrange(traces.shape[1], traces.shape[2]):
        traces[t, s, r] = 0.0
    for P in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
        _sample(f, lvl, t, P)


@ti.kernel
def copy_state(f: ti.template(), pool: ti.template(), slot: ti.i32, u0: ti.i32, u1: ti.i32,
               lvl: ti.i32, save: ti.template()):
    """Save (``save=True``) or restore one state: ``u`` levels ``u0, u1`` and ``psi, zeta[lvl]``.

    ``pool`` bundles the checkpoint fields ``u [slot, 2, ...]``, ``psi``, ``zeta [slot, 1,
    ...]``.
    """
    ti.loop_config(serialize=f.serial)
    for K in ti.grouped(ti.ndrange(*f.u.shape[1:])):
        if ti.static(save):
            pool.u[(slot, 0, *K)] = f.u[(u0, *K)]
            pool.u[(slot, 1, *K)] = f.u[(u1, *K)]
        else:
            f.u[(u0, *K)] = pool.u[(slot, 0, *K)]
            f.u[(u1, *K)] = pool.u[(slot, 1, *K)]
    for d in ti.static(range(len(f.psi))):
        ti.loop_config(serialize=f.serial)
        for K in ti.grouped(ti.ndrange(*f.psi[d].shape[1:])):
            if ti.static(save):
                pool.psi[d][(slot, 0, *K)] = f.psi[d][(lvl, *K)]
                pool.zeta[d][(slot, 0, *K)] = f.zeta[d][(lvl, *K)]
            else:
                f.psi[d][(lvl, *K)] = pool.psi[d][(slot, 0, *K)]
                f.zeta[d][(lvl, *K)] = pool.zeta[d][(slot, 0, *K)]


# ---------------------------------------------------------------------------------------
# Hand-written adjoint of wave_step, in gather form (two passes in one kernel).
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
def _kl(u: ti.template(), kc: ti.template(), nxt: ti.i32, J: ti.template(), xb: ti.i32):
    """``kc lup`` (``kc`` here is ``kg = g kc`` with a sponge)."""
    return kc[_sp(J, xb)] * u.grad[(nxt, *_at(J, xb))]


@ti.func
def _adj_a_rows(u: ti.template(), psi: ti.template(), zeta: ti.template(), kc: ti.template(),
                pa: ti.template(), pb: ti.template(), pbar: ti.template(), cur: ti.i32,
                nxt: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
                J: ti.template(), xb: ti.i32, pm: ti.template()):
    """Pass A on one block for the row axes (rows inside their PML)."""
    _psi_rows(u, psi, pa, pb, cur, src, dst, inv_h, c1, J, xb, pm)
    for d in ti.static(range(len(psi) - 1)):
        i = J[d + 1]
        if pa[d, i] != 0.0:
            S = _at(_rstrip(J, d, pm), xb)
            z_total = zeta[d].grad[(dst, *S)] + _kl(u, kc, nxt, J, xb)
            zeta[d].grad[(src, *S)] = pb[d, i] * z_total
            # D1 of M qb = (M + a) kl + a lzeta' at the neighbour rows.
            g = ti.zero(z_total)
            for k in ti.static(range(len(c1))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * (k + 1))
                    an = pa[d, Jn[d + 1]]
                    mn = ti.cast(an != 0.0, u.dtype)
                    r = ((mn + an) * _kl(u, kc, nxt, Jn, xb)
                         + an * zeta[d].grad[(dst, *_at(_rstrip(Jn, d, pm), xb))])
                    g += (sgn * c1[k]) * r
            p = psi[d].grad[(dst, *S)] - g * inv_h[d]
            pbar[d][(0, *S)] = p
            psi[d].grad[(src, *S)] = pb[d, i] * p


@ti.func
def _adj_a_x(u: ti.template(), psi: ti.template(), zeta: ti.template(), kc: ti.template(),
             pax: ti.template(), pbx: ti.template(), mx: ti.template(), pbar: ti.template(),
             cur: ti.i32, nxt: ti.i32, src: ti.i32, dst: ti.i32, inv_h: ti.template(),
             c1: ti.template(), J: ti.template(), j: ti.i32, xs: ti.template()):
    """Pass A on x-strip block ``j`` for the x axis."""
    _psi_x(u, psi, pax, pbx, cur, src, dst, inv_h, c1, J, j, xs)
    nx = ti.static(len(psi) - 1)
    xb = _xblock(j, xs)
    S = _at(J, j)
    kl_lo = _kl(u, kc, nxt, J, xb - 1)
    kl_mid = _kl(u, kc, nxt, J, xb)
    kl_hi = _kl(u, kc, nxt, J, xb + 1)
    zg_mid = zeta[nx].grad[(dst, *S)]
    zeta[nx].grad[(src, *S)] = pbx[xb] * (zg_mid + kl_mid)
    r_lo = ((mx[xb - 1] + pax[xb - 1]) * kl_lo
            + pax[xb - 1] * _xget(zeta[nx].grad, dst, J, xb - 1, xs))
    r_mid = (mx[xb] + pax[xb]) * kl_mid + pax[xb] * zg_mid
    r_hi = ((mx[xb + 1] + pax[xb + 1]) * kl_hi
            + pax[xb + 1] * _xget(zeta[nx].grad, dst, J, xb + 1, xs))
    p = psi[nx].grad[(dst, *S)] - _d1x(r_lo, r_mid, r_hi, c1) * inv_h[nx]
    pbar[nx][(0, *S)] = p
    psi[nx].grad[(src, *S)] = pbx[xb] * p


@ti.func
def _adj_b_block(u: ti.template(), psi: ti.template(), zeta: ti.template(), kc: ti.template(),
                 pa: ti.template(), pb: ti.template(), pax: ti.template(), pbx: ti.template(),
                 mx: ti.template(), pbar: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                 src: ti.i32, dst: ti.i32, inv_h: ti.template(), c1: ti.template(),
                 c2: ti.template(), near: ti.template(), J: ti.template(), xb: ti.i32,
                 xs: ti.template(), pm: ti.template(), xpml: ti.template(), kg: ti.template(),
                 sg: ti.template(), sponge: ti.template()):
    """Pass B on one block; ``xpml``: the block is within the stencil radius of the x-PML.

    With a sponge ``u+ = g (2 u - g u- + kc lap)``: the adjoint of the right-hand side is
    ``g lup``, and ``kg = g kc`` replaces ``kc`` in the gathers.
    """
    nx = ti.static(len(psi) - 1)
    at = _at(J, xb)
    lup_raw = u.grad[(nxt, *at)]
    lup = lup_raw
    if ti.static(sponge):
        lup = lup_raw * sg[_sp(J, xb)]
    kl_mid = kc[_sp(J, xb)] * lup
    acc = 2.0 * lup
    lap = ti.zero(lup)
    for d in ti.static(range(nx)):
        ih2 = inv_h[d] * inv_h[d]
        g2 = c2[0] * kl_mid
        for k in ti.static(range(1, len(c2))):
            g2 += c2[k] * (_kl(u, kg, nxt, _moved(J, d, k), xb)
                           + _kl(u, kg, nxt, _moved(J, d, -k), xb))
        q = _d2r(u, cur, J, xb, d, c2) * ih2
        if near[d, J[d + 1]] != 0.0:
            # qz = a (lzeta' + kl) and a P, gathered from the layer (zero outside).
            a0 = pa[d, J[d + 1]]
            g2 += (c2[0] * a0) * (zeta[d].grad[(dst, *_at(_rstrip(J, d, pm), xb))] + kl_mid)
            for k in ti.static(range(1, len(c2))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * k)
                    an = pa[d, Jn[d + 1]]
                    Sn = _at(_rstrip(Jn, d, pm), xb)
                    g2 += c2[k] * an * (zeta[d].grad[(dst, *Sn)] + _kl(u, kg, nxt, Jn, xb))
            g1 = ti.zero(lup)
            for k in ti.static(range(len(c1))):
                for sgn in ti.static((1, -1)):
                    Jn = _moved(J, d, sgn * (k + 1))
                    g1 += (sgn * c1[k] * pa[d, Jn[d + 1]]) * pbar[d][(0, *_at(_rstrip(Jn, d, pm),
                                                                             xb))]
            acc -= g1 * inv_h[d]
            i = J[d + 1]
            if pa[d, i] != 0.0:
                q += _d1s(psi[d], dst, J, xb, d, c1, pa, pm) * inv_h[d]
                lap += pb[d, i] * zeta[d][(src, *_at(_rstrip(J, d, pm), xb))] + pa[d, i] * q
        acc += g2 * ih2
        lap += q
    ih2 = inv_h[nx] * inv_h[nx]
    kl_lo = _kl(u, kg, nxt, J, xb - 1)
    kl_hi = _kl(u, kg, nxt, J, xb + 1)
    mid = u[(cur, *at)]
    q = _d2x(u[(cur, *_at(J, xb - 1))], mid, u[(cur, *_at(J, xb + 1))], c2) * ih2
    if ti.static(xpml):
        qb_lo = kl_lo + pax[xb - 1] * (_xget(zeta[nx].grad, dst, J, xb - 1, xs) + kl_lo)
        qb_mid = kl_mid + pax[xb] * (_xget(zeta[nx].grad, dst, J, xb, xs) + kl_mid)
        qb_hi = kl_hi + pax[xb + 1] * (_xget(zeta[nx].grad, dst, J, xb + 1, xs) + kl_hi)
        acc += _d2x(qb_lo, qb_mid, qb_hi, c2) * ih2
        ap_lo = pax[xb - 1] * _xget(pbar[nx], 0, J, xb - 1, xs)
        ap_mid = pax[xb] * _xget(pbar[nx], 0, J, xb, xs)
        ap_hi = pax[xb + 1] * _xget(pbar[nx], 0, J, xb + 1, xs)
        acc -= _d1x(ap_lo, ap_mid, ap_hi, c1) * inv_h[nx]
        d1 = _d1x(_xget(psi[nx], dst, J, xb - 1, xs), _xget(psi[nx], dst, J, xb, xs),
                  _xget(psi[nx], dst, J, xb + 1, xs), c1)
        q += mx[xb] * (inv_h[nx] * d1)
        lap += pbx[xb] * _xget(zeta[nx], src, J, xb, xs) + pax[xb] * q
    else:
        acc += _d2x(kl_lo, kl_mid, kl_hi, c2) * ih2
    lap += q
    # Plain read-modify-writes, not atomics: each block belongs to one thread.
    lcur = u.grad[(cur, *at)]
    u.grad[(cur, *at)] = lcur + acc
    if ti.static(sponge):
        u.grad[(prv, *at)] = -sg[_sp(J, xb)] * lup
    else:
        u.grad[(prv, *at)] = -lup
    kc.grad[_sp(J, xb)] = kc.grad[_sp(J, xb)] + lup * lap
    return lup_raw * lup_raw + lcur * lcur


@ti.kernel
def adjoint_step(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32, src: ti.i32,
                 dst: ti.i32, step: ti.i32, rec_t: ti.i32) -> ti.f64:
    """Reverse of :func:`wave_step`: ``lambda[step+1]`` in ``.grad`` to ``lambda[step]``.

    Reads the adjoints of ``u[nxt]``, ``psi[dst]``, ``zeta[dst]``; writes those of
    ``u[cur]`` (accumulated), ``u[prv]``, ``psi[src]``, ``zeta[src]``, and accumulates
    ``kc.grad`` and ``amp.grad``. With ``rec_t >= 0`` it first adds the receivers'
    adjoint at time ``rec_t`` (the reverse of :func:`record_traces`) into ``u.grad[nxt]``.
    Pass B runs over spatial rows with the shots inside, so each ``kc.grad`` block is
    written by one thread; rows and blocks within the stencil radius of a PML (``near``,
    ``xs_near``) gather from it.

    Returns:
        The squared norm of the wavefield adjoint ``lambda[step+1]`` (both levels).
    """
    u, psi, zeta, kc, pbar, near = ti.static(f.u, f.psi, f.zeta, f.kc, f.pbar, f.near)
    pa, pb, pax, pbx, mx = ti.static(f.pa, f.pb, f.pax, f.pbx, f.mx)
    inv_h, c1, c2, xs, xs_near, pm = ti.static(f.inv_h, f.c1, f.c2, f.xs, f.xs_near, f.pm)
    sq = ti.cast(0.0, ti.f64)
    rpos, rweight = ti.static(f.rec_pos, f.rec_w)
    ti.loop_config(serialize=True)  # receivers and sources: a few cells, no task dispatch
    for P in ti.grouped(ti.ndrange(rpos.shape[0], rpos.shape[1],
                                   *([rweight.shape[3]] * rpos.n))):
        if rec_t >= 0:
            w = f.traces.grad[rec_t, P[0], P[1]]
            base = rpos[P[0], P[1]]
            cell = ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(rpos.n))])
            for d in ti.static(range(rpos.n)):
                w *= rweight[P[0], P[1], d, P[d + 2]]
            u.grad[(nxt, *_lane_elem(cell, u.n))][(cell[cell.n - 1] + u.n) % u.n] += w
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(*f.rows)):
        if _row_in(pa, J):
            for xb in range(1, xs[2] - 1):
                _adj_a_rows(u, psi, zeta, kc, pa, pb, pbar, cur, nxt, src, dst, inv_h, c1, J, xb,
                            pm)
        for j in range(xs[3]):
            _adj_a_x(u, psi, zeta, kc, pax, pbx, mx, pbar, cur, nxt, src, dst, inv_h, c1, J, j,
                     xs)
    ti.loop_config(serialize=f.serial)
    for R in ti.grouped(ti.ndrange(*f.space_rows)):
        row_sq = ti.Vector.zero(u.dtype, u.n)
        for s in range(u.shape[1]):
            J = ti.Vector([s] + [R[k] for k in ti.static(range(R.n))])
            for j in range(xs_near[3]):
                row_sq += _adj_b_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, pbar, prv, cur,
                                       nxt, src, dst, inv_h, c1, c2, near, J,
                                       _xblock(j, xs_near), xs, pm, True, f.kg, f.sg,
                                       f.sponge)
            for xb in range(xs_near[0], xs_near[1]):
                row_sq += _adj_b_block(u, psi, zeta, kc, pa, pb, pax, pbx, mx, pbar, prv, cur,
                                       nxt, src, dst, inv_h, c1, c2, near, J, xb, xs, pm, False,
                                       f.kg, f.sg, f.sponge)
        sq += ti.cast(row_sq.sum(), ti.f64)
    pos, weight = ti.static(f.src_pos, f.src_w)
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(pos.shape[0], pos.shape[1], *([weight.shape[3]] * pos.n))):
        w = ti.cast(f.scale, u.dtype)
        base = pos[P[0], P[1]]
        cell = ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(pos.n))])
        for d in ti.static(range(pos.n)):
            w *= weight[P[0], P[1], d, P[d + 2]]
        f.amp.grad[P[0], P[1], step] += w * u.grad[(nxt, *_lane_elem(cell, u.n))][
            (cell[cell.n - 1] + u.n) % u.n]
    return sq

"""Sources and receivers on x-lane vectors: the point stencils of the arena and cell engines.

A point's stencil (Hicks: ``K`` cells per axis; nearest: one) is separable: weights
``w_d[k]`` per axis at cells ``base_d + k``. Along x its ``K <= W`` cells lie in two
consecutive blocks ``e0, e0 + 1`` of the lane layout (cell ``x`` is lane ``(x + W) % W``
of block ``(x + W) // W``), so the x weights become two lane vectors ``A, B`` (zero
outside the stencil), built once per point, and each stencil row costs two vector loads
and two multiply-adds instead of ``K`` single-lane reads. A receiver samples
``sum_rows w_rows sum_lanes (A u[e0] + B u[e0 + 1])``; a source adds ``w_rows amp A``
and ``w_rows amp B`` to its rows' blocks (plain read-modify-writes, no atomics: the
points of a launch are visited in order by one worker, and a worker touches only the
rows of its band, ``f.band``). The adjoints are the transposes, in the same order, so
any split of the rows between workers gives the same bits.

``f`` carries ``W``, ``dtype``, ``ndim``, ``shots`` and the arrays named below; the
receivers a worker records are ``f.recs`` and the sources whose gradients it sums
``f.srcs`` (ranges; all of them for a worker alone).
"""

import taichi as ti


@ti.func
def _in_band(f: ti.template(), z: ti.i32):
    """Whether row ``z`` lies in ``f.band`` (a worker's rows; every row without a band)."""
    inside = True
    if ti.static(hasattr(f, "band")):
        inside = (z >= f.band[0]) & (z < f.band[1])
    return inside


@ti.func
def _xw(f: ti.template(), w: ti.template(), pos: ti.template(), s: ti.i32, p: ti.i32,
        second: ti.template()):
    """The x weights of point ``p`` of shot ``s`` in the lanes of block ``e0`` (or ``e0 + 1``).

    A run-time loop over the stencil with one dynamic lane store each (a loop unrolled
    over the lanes compiled 3.5 s slower).
    """
    W, nd = ti.static(f.W, f.ndim)
    off = (pos[s, p][nd - 1] + W) % W - (W if ti.static(second) else 0)
    out = ti.Vector.zero(f.dtype, W)
    for k in range(w.shape[3]):
        lane = off + k
        if lane >= 0 and lane < W:
            out[lane] = w[s, p, nd - 1, k]
    return out


@ti.func
def _lane(f: ti.template(), pos: ti.template(), s: ti.i32, p: ti.i32):
    """Lane of point ``p``'s first x cell in block :func:`_block`."""
    return (pos[s, p][f.ndim - 1] + f.W) % f.W


@ti.func
def _block(f: ti.template(), pos: ti.template(), s: ti.i32, p: ti.i32):
    """Block ``e0`` holding the first x cell of point ``p``'s stencil."""
    return (pos[s, p][f.ndim - 1] + f.W) // f.W


@ti.func
def _row_weight(f: ti.template(), w: ti.template(), s: ti.i32, p: ti.i32, R: ti.template()):
    """Product of the row-axis weights at row offsets ``R``."""
    out = ti.cast(1.0, f.dtype)
    for d in ti.static(range(f.ndim - 1)):
        out *= w[s, p, d, R[d]]
    return out


@ti.func
def _row(pos: ti.template(), s: ti.i32, p: ti.i32, R: ti.template()):
    """Element index ``(shot, z[, y])`` of stencil row ``R`` of point ``p``."""
    base = pos[s, p]
    return ti.Vector([s] + [base[d] + R[d] for d in ti.static(range(R.n))])


@ti.func
def _gather(f: ti.template(), a: ti.template(), lvl: ti.i32, w: ti.template(),
            pos: ti.template(), s: ti.i32, p: ti.i32):
    """``sum_k w_k a[lvl]`` over the stencil of point ``p`` of shot ``s``.

    A one-cell stencil (nearest) reads its lane alone: the two lane vectors cost it a
    quarter more time on Marmousi2's 20 shots of 100 receivers (measured).
    """
    e0 = _block(f, pos, s, p)
    acc = ti.cast(0.0, f.dtype)
    if w.shape[3] == 1:
        R = ti.Vector.zero(ti.i32, f.ndim - 1)
        acc = (_row_weight(f, w, s, p, R) * w[s, p, f.ndim - 1, 0]
               * a[(lvl, *_row(pos, s, p, R), e0)][_lane(f, pos, s, p)])
    else:
        xa, xb = _xw(f, w, pos, s, p, False), _xw(f, w, pos, s, p, True)
        for R in ti.grouped(ti.ndrange(*([w.shape[3]] * (f.ndim - 1)))):
            J = _row(pos, s, p, R)
            acc += _row_weight(f, w, s, p, R) * (xa * a[(lvl, *J, e0)]
                                                 + xb * a[(lvl, *J, e0 + 1)]).sum()
    return acc


@ti.func
def _scatter(f: ti.template(), a: ti.template(), lvl: ti.i32, w: ti.template(),
             pos: ti.template(), s: ti.i32, p: ti.i32, c: ti.template()):
    """``a[lvl] += c w_k`` over the stencil of point ``p`` of shot ``s`` (rows of ``f.band``).

    The transpose of :func:`_gather` (read-modify-writes, no atomics).
    """
    e0 = _block(f, pos, s, p)
    if w.shape[3] == 1:
        R = ti.Vector.zero(ti.i32, f.ndim - 1)
        J = _row(pos, s, p, R)
        if _in_band(f, J[1]):
            lane = _lane(f, pos, s, p)
            v = _row_weight(f, w, s, p, R) * c * w[s, p, f.ndim - 1, 0]
            a[(lvl, *J, e0)][lane] = a[(lvl, *J, e0)][lane] + v
    else:
        xa, xb = _xw(f, w, pos, s, p, False), _xw(f, w, pos, s, p, True)
        for R in ti.grouped(ti.ndrange(*([w.shape[3]] * (f.ndim - 1)))):
            J = _row(pos, s, p, R)
            if _in_band(f, J[1]):
                v = _row_weight(f, w, s, p, R) * c
                a[(lvl, *J, e0)] = a[(lvl, *J, e0)] + v * xa
                a[(lvl, *J, e0 + 1)] = a[(lvl, *J, e0 + 1)] + v * xb


@ti.func
def record_points(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """``traces[t, s, r] = sum_k w_k u[lvl]`` for the receivers of ``f.recs``."""
    ti.loop_config(serialize=True)
    for s, r in ti.ndrange(f.shots, f.recs):
        f.traces[t, s, r] = _gather(f, f.u, lvl, f.rec_w, f.rec_pos, s, r)


@ti.func
def inject_points(f: ti.template(), nxt: ti.i32, step: ti.i32):
    """``u[nxt] += scale amp[s, p, step] w`` over every source's stencil (rows of ``f.band``)."""
    ti.loop_config(serialize=True)
    for s, p in ti.ndrange(f.shots, f.src_pos.shape[1]):
        amp = ti.cast(f.scale, f.dtype) * f.amp[s, p, step]
        _scatter(f, f.u, nxt, f.src_w, f.src_pos, s, p, amp)


@ti.func
def receiver_points_adjoint(f: ti.template(), lvl: ti.i32, t: ti.i32):
    """Reverse of :func:`record_points`: ``ug[lvl] += w tracesg[t]`` (rows of ``f.band``)."""
    ti.loop_config(serialize=True)
    for s, r in ti.ndrange(f.shots, f.rec_pos.shape[1]):
        _scatter(f, f.ug, lvl, f.rec_w, f.rec_pos, s, r, f.tracesg[t, s, r])


@ti.func
def source_points_adjoint(f: ti.template(), nxt: ti.i32, step: ti.i32):
    """Reverse of :func:`inject_points`: ``ampg[s, p, step] += scale sum w ug[nxt]``.

    The sources of ``f.srcs``.
    """
    ti.loop_config(serialize=True)
    for s, p in ti.ndrange(f.shots, f.srcs):
        f.ampg[s, p, step] += ti.cast(f.scale, f.dtype) * _gather(f, f.ug, nxt, f.src_w,
                                                                  f.src_pos, s, p)

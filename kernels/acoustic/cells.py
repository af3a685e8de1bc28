"""The cell engine: variable-density acoustics and Born modelling on x-lane vectors.

Arrays live in the process arena (one vector field, :mod:`diffsim.kernels.acoustic.arena`)
in the lane layout of the constant-density engine: ``a[..., shot, z[, y], xb]`` is a
vector of ``W`` cells along x, cell ``x`` in block ``xb = (x + W) // W``; blocks 0 and
``nb - 1`` hold no cells and stay zero. The kernels take the arena as a template and
every offset and extent as run-time values (the layout vector of :func:`cell_arrays`),
so they compile once per process for each dimension, order, precision, boundary kind
and ratio of grid spacings, whatever the grid, shot count or record length.

One scheme per ``staggered`` flag, both leapfrog in time with the same C-PML recursion
per axis ``d`` (``a, b`` the profiles, zero outside the layer):

* ``staggered=True``, variable density: ``p_tt = K div(B grad p) + s`` with ``K = rho c^2``
  at cells and the buoyancy ``B = 1/rho`` at half points ``j + 1/2``::

      phi_d   = D+_d p                       (half points, stored at index j)
      psi_d'  = bh_d psi_d + ah_d phi_d      (half-point profiles bh, ah)
      flux_d  = B_d (phi_d + psi_d')
      q_d     = D-_d flux_d                  (cells)
      zeta_d' = b_d zeta_d + a_d q_d
      p+      = 2 p - p- + KK sum_d (q_d + zeta_d')   (KK = dt^2 K)

  ``D+ p[j] = sum_k s_k (p[j+k+1] - p[j-k])``, ``D- f[j] = sum_k s_k (f[j+k] - f[j-k-1])``
  with the order's staggered coefficients ``s1`` (:data:`diffsim.acoustic.STAGGERED`).
* ``staggered=False``, constant density (the arena engine's scheme: the Born tangent of
  the default engine): ``psi_d' = b psi_d + a D1_d p`` (cells, in the layer),
  ``q_d = D2_d p + M_d D1_d psi_d'``, ``zeta_d'`` and ``p+`` as above with ``KK = dt^2 c^2``.

With a sponge: ``p+ = g (2 p - g p- + KK sum_d q_d)``.

The kernels run in units of one reference spacing: ``ih`` are ratios (compile-time),
``KK`` is divided by the reference spacing squared, and the PML memory is scaled to
match (the wavefield is not).

``KK`` is zero on the frame of ``halo`` cells and on the lanes past the grid's end, so
the wavefield stays zero there; reads past the first or last row are clamped onto the
frame, which holds zeros, and x-neighbours beyond the grid fall in the zero blocks.

Arrays (``R`` = ``shot, z[, y], xb``; ``G`` = ``z[, y], xb``; ``D`` the axes): ``p [3, R]``
(ring of levels), ``psi, zeta [2, D, R]`` (ring), ``flux [D, R]``, ``kk, sg [G]``,
``buoy [D, G]``, the x profiles ``xp [4, nb]`` (cell ``a, b``, half-point ``a, b``), their
adjoints ``pg, psig, zetag``, the adjoint scratch ``qg, phig [D, R]``, the gradients
``kkg [R]``, ``buoyg [D, R]`` (per shot), the Born tangent ``dp, dpsi, dzeta``, the
background's ``tot [R]`` and ``dkk [G]``, and the checkpoint pools. Row profiles are a
``[4, row axes, n]`` array ``rp`` and ``xl = (lo, hi, lo, hi)`` says which blocks lie in
the x layer (cell and half-point profiles): those below ``lo`` or from ``hi`` on.
"""

import functools
from collections.abc import Sequence
from typing import Any, TypeAlias

import taichi as ti
from taichi.lang import impl

from diffsim.kernels.acoustic._blocks import Arrays, _at, _moved, _shift, _sp
from diffsim.kernels.acoustic.arena import View, _scalars
from diffsim.kernels.acoustic.points import (
    inject_points,
    receiver_points_adjoint,
    record_points,
    source_points_adjoint,
)
from diffsim.kernels.common import band, cut, lean, sync, unit, units


def cell_arrays(ndim: int) -> tuple[tuple[str, int], ...]:
    """``(name, axes)`` of every array of the cell engine, in layout order."""
    r, g = ndim + 1, ndim
    return (("p", r + 1), ("psi", r + 2), ("zeta", r + 2), ("flux", r + 1), ("kk", g),
            ("sg", g), ("buoy", g + 1), ("xp", 2), ("pg", r + 1), ("psig", r + 2),
            ("zetag", r + 2), ("qg", r + 1), ("phig", r + 1), ("kkg", r), ("buoyg", r + 1),
            ("dp", r + 1), ("dpsi", r + 2), ("dzeta", r + 2), ("tot", r), ("dkk", g),
            ("pool_p", r + 2), ("pool_psi", r + 3), ("pool_zeta", r + 3))


def cell_layout_size(ndim: int) -> int:
    """Entries of the layout vector."""
    return sum(1 + axes for _, axes in cell_arrays(ndim))


def cell_views(arena: Any, pools: Any, layout: Sequence[Any], ndim: int) -> dict[str, View]:
    """The arrays of :func:`cell_arrays` as views (plain Python, run while a kernel compiles).

    ``layout`` holds run-time values (kernel locals) or plain ints.
    """
    out: dict[str, View] = {}
    k = 0
    for name, axes in cell_arrays(ndim):
        field = pools if name.startswith("pool_") else arena
        out[name] = View(field, layout[k], layout[k + 1:k + 1 + axes])
        k += 1 + axes
    return out


def cell_bundle(views: dict[str, View], *, ndim: int, real: Any, lanes: int,
                ih: tuple[float, ...], s1: tuple[float, ...], c1: tuple[float, ...],
                c2: tuple[float, ...], sponge: bool, serial: bool, rp: Any, xl: Sequence[Any],
                **items: Any) -> Arrays:
    """The :class:`Arrays` bundle of a cell kernel (plain Python, run while it compiles)."""
    p = views["p"]
    halo = len(c2) - 1
    rows = tuple(p.shape[2 + d] for d in range(ndim - 1))
    bg = Arrays(p=views["p"], psi=views["psi"], zeta=views["zeta"])
    tg = Arrays(p=views["dp"], psi=views["dpsi"], zeta=views["dzeta"])
    shots = (0, p.shape[1])
    if "traces" in items:  # what the Born tangent's receivers read
        items["tangent"] = Arrays(u=views["dp"], traces=items["traces"], rec_pos=items["rec_pos"],
                                  rec_w=items["rec_w"], shots=shots, ndim=ndim, W=lanes,
                                  dtype=real)
    return Arrays(**views, bg=bg, tg=tg, u=views["p"], ug=views["pg"], ndim=ndim, dtype=real,
                  W=lanes, ih=ih, s1=s1, c1=c1, c2=c2, sponge=sponge, serial=serial, rp=rp,
                  xl=tuple(xl), shots=shots, nb=p.shape[ndim + 1],
                  all_rows=tuple((0, n) for n in rows),
                  in_rows=tuple((halo, n - halo) for n in rows), **items)


# -- neighbours and differences of a block ---------------------------------------------------
@ti.func
def _get(a: ti.template(), h0: ti.template(), h1: ti.template(), J: ti.template(), xb: ti.i32,
         d: ti.template(), k: ti.template(), clamp: ti.template()):
    """Block ``xb`` of row ``J`` of ``a[h0(, h1)]`` moved by ``k`` along axis ``d`` (x last).

    ``h1`` (compile-time) is ``-1`` for arrays with one leading index (two separate arguments: a tuple
    handed to a ``ti.func`` does not unpack into an index). ``clamp``: rows past the
    array's ends read its first or last row (the zero frame).
    """
    if ti.static(d < J.n - 1):
        K = _moved(J, d, k)
        if ti.static(clamp):
            n = a.shape[ti.static(1 + (h1 >= 0) + 1 + d)]
            i = ti.max(0, ti.min(J[d + 1] + k, n - 1))
            K = J + (i - J[d + 1]) * ti.Vector.unit(J.n, d + 1, ti.i32)
        if ti.static(h1 < 0):
            return a[(h0, *K, xb)]
        else:
            return a[(h0, h1, *K, xb)]
    else:
        if ti.static(h1 < 0):
            return _shift(a[(h0, *_at(J, xb - 1))], a[(h0, *_at(J, xb))],
                          a[(h0, *_at(J, xb + 1))], k)
        else:
            return _shift(a[(h0, h1, *_at(J, xb - 1))], a[(h0, h1, *_at(J, xb))],
                          a[(h0, h1, *_at(J, xb + 1))], k)


@ti.func
def _dplus(a: ti.template(), h0: ti.template(), h1: ti.template(), J: ti.template(), xb: ti.i32,
           d: ti.template(), s1: ti.template(), clamp: ti.template()):
    """Staggered forward difference at the half points (no 1/h): ``sum s_k (a[j+k+1] - a[j-k])``."""
    acc = s1[0] * (_get(a, h0, h1, J, xb, d, 1, clamp) - _get(a, h0, h1, J, xb, d, 0, clamp))
    for k in ti.static(range(1, len(s1))):
        acc += s1[k] * (_get(a, h0, h1, J, xb, d, k + 1, clamp)
                        - _get(a, h0, h1, J, xb, d, -k, clamp))
    return acc


@ti.func
def _dminus(a: ti.template(), h0: ti.template(), h1: ti.template(), J: ti.template(), xb: ti.i32,
            d: ti.template(), s1: ti.template(), clamp: ti.template()):
    """Staggered backward difference at the cells (no 1/h): ``sum s_k (a[j+k] - a[j-k-1])``.

    ``D-^T = -D+`` and ``D+^T = -D-`` (gathers over arrays that are zero past their ends).
    """
    acc = s1[0] * (_get(a, h0, h1, J, xb, d, 0, clamp) - _get(a, h0, h1, J, xb, d, -1, clamp))
    for k in ti.static(range(1, len(s1))):
        acc += s1[k] * (_get(a, h0, h1, J, xb, d, k, clamp)
                        - _get(a, h0, h1, J, xb, d, -k - 1, clamp))
    return acc


@ti.func
def _d1(a: ti.template(), h0: ti.template(), h1: ti.template(), J: ti.template(), xb: ti.i32,
        d: ti.template(),
        c1: ti.template(), clamp: ti.template()):
    """Central first difference (no 1/h)."""
    acc = c1[0] * (_get(a, h0, h1, J, xb, d, 1, clamp) - _get(a, h0, h1, J, xb, d, -1, clamp))
    for k in ti.static(range(1, len(c1))):
        acc += c1[k] * (_get(a, h0, h1, J, xb, d, k + 1, clamp)
                        - _get(a, h0, h1, J, xb, d, -k - 1, clamp))
    return acc


@ti.func
def _d2(a: ti.template(), h0: ti.template(), h1: ti.template(), J: ti.template(), xb: ti.i32,
        d: ti.template(),
        c2: ti.template()):
    """Central second difference (no 1/h^2)."""
    acc = c2[0] * _get(a, h0, h1, J, xb, d, 0, False)
    for k in ti.static(range(1, len(c2))):
        acc += c2[k] * (_get(a, h0, h1, J, xb, d, k, False) + _get(a, h0, h1, J, xb, d, -k, False))
    return acc


# -- profiles ----------------------------------------------------------------------------------
@ti.func
def _prof(f: ti.template(), which: ti.template(), J: ti.template(), xb: ti.i32,
          d: ti.template()):
    """Profile ``which`` (0 cell a, 1 cell b, 2 half a, 3 half b) of axis ``d`` at a block.

    A scalar on a row axis, a lane vector along x.
    """
    if ti.static(d < J.n - 1):
        return f.rp[which, d, J[d + 1]]
    else:
        return f.xp[which, xb]


@ti.func
def _layer(f: ti.template(), which: ti.template(), J: ti.template(), xb: ti.i32,
           d: ti.template()):
    """Whether the block lies in axis ``d``'s layer (``which`` 0: cell, 2: half profiles)."""
    if ti.static(d < J.n - 1):
        return f.rp[which, d, J[d + 1]] != 0.0
    else:
        return (xb < f.xl[which]) | (xb >= f.xl[which + 1])


# -- forward -----------------------------------------------------------------------------------
@ti.func
def _memory_block(f: ti.template(), w: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32,
                  J: ti.template(), xb: ti.i32, staggered: ti.template()):
    """First stage at one block: ``psi_d'`` into ``psi[dst]`` and (staggered) the fluxes."""
    p, psi = ti.static((w.p, w.psi))
    for d in ti.static(range(f.ndim)):
        if ti.static(staggered):
            phi = _dplus(p, cur, -1, J, xb, d, f.s1, True) * f.ih[d]
            if _layer(f, 2, J, xb, d):
                m = _prof(f, 3, J, xb, d) * psi[(src, d, *_at(J, xb))] + _prof(f, 2, J, xb, d) * phi
                psi[(dst, d, *_at(J, xb))] = m
                phi += m
            f.flux[(d, *_at(J, xb))] = f.buoy[(d, *_sp(J, xb))] * phi
        else:
            if _layer(f, 0, J, xb, d):
                psi[(dst, d, *_at(J, xb))] = (
                    _prof(f, 1, J, xb, d) * psi[(src, d, *_at(J, xb))]
                    + _prof(f, 0, J, xb, d) * (_d1(p, cur, -1, J, xb, d, f.c1, True) * f.ih[d]))


@ti.func
def _q(f: ti.template(), w: ti.template(), cur: ti.i32, dst: ti.i32, J: ti.template(),
       xb: ti.i32, d: ti.template(), staggered: ti.template()):
    """``q_d`` at a block (before the zeta memory)."""
    q = ti.Vector.zero(f.dtype, f.W)
    if ti.static(staggered):
        q = _dminus(f.flux, d, -1, J, xb, d, f.s1, False) * f.ih[d]
    else:
        q = _d2(w.p, cur, -1, J, xb, d, f.c2) * (f.ih[d] * f.ih[d])
        if _layer(f, 0, J, xb, d):
            mask = ti.cast(_prof(f, 0, J, xb, d) != 0.0, f.dtype)
            q += mask * (_d1(w.psi, dst, d, J, xb, d, f.c1, False) * f.ih[d])
    return q


@ti.func
def _update_block(f: ti.template(), w: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                  src: ti.i32, dst: ti.i32, J: ti.template(), xb: ti.i32,
                  staggered: ti.template(), keep: ti.template(), born: ti.template()):
    """Second stage at one block: ``zeta[dst]`` and ``p[nxt]``.

    ``keep``: also write ``sum_d (q_d + zeta_d')`` into ``tot`` (the background of a Born
    run); ``born``: add the Born source ``dkk * tot``.
    """
    p, zeta = ti.static((w.p, w.zeta))
    acc = ti.Vector.zero(f.dtype, f.W)
    for d in ti.static(range(f.ndim)):
        q = _q(f, w, cur, dst, J, xb, d, staggered)
        if _layer(f, 0, J, xb, d):
            z = _prof(f, 1, J, xb, d) * zeta[(src, d, *_at(J, xb))] + _prof(f, 0, J, xb, d) * q
            zeta[(dst, d, *_at(J, xb))] = z
            q += z
        acc += q
    rhs = f.kk[_sp(J, xb)] * acc
    if ti.static(keep):
        f.tot[_at(J, xb)] = acc
    if ti.static(born):
        rhs += f.dkk[_sp(J, xb)] * f.tot[_at(J, xb)]
    if ti.static(f.sponge):
        g = f.sg[_sp(J, xb)]
        p[(nxt, *_at(J, xb))] = g * (2.0 * p[(cur, *_at(J, xb))] - g * p[(prv, *_at(J, xb))] + rhs)
    else:
        p[(nxt, *_at(J, xb))] = 2.0 * p[(cur, *_at(J, xb))] - p[(prv, *_at(J, xb))] + rhs


@ti.func
def _memory(f: ti.template(), w: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32,
            staggered: ti.template()):
    """:func:`_memory_block` on every row (rows in parallel, unless ``f.serial``)."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.all_rows)):
        for xb in range(1, f.nb - 1):
            _memory_block(f, w, cur, src, dst, J, xb, staggered)


@ti.func
def _update(f: ti.template(), w: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
            src: ti.i32, dst: ti.i32, staggered: ti.template(), keep: ti.template(),
            born: ti.template()):
    """:func:`_update_block` on every row but the frame."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            _update_block(f, w, prv, cur, nxt, src, dst, J, xb, staggered, keep, born)


@ti.func
def _step(f: ti.template(), t: ti.i32, staggered: ti.template(), born: ti.template(),
          bar: ti.template(), rank: ti.i32, group: ti.i32, passed: ti.i32) -> ti.i32:
    """Step ``t``: sources, receivers at ``t + 1`` (of the tangent in a Born run).

    On the rows of ``f`` (a worker's band of one shot, :func:`cell_band`, its share of
    the receivers), with a barrier of the ``group`` after each pass (none for a group of
    one). Returns the barriers passed, counting from ``passed``.
    """
    prv, cur, nxt, src, dst = (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2
    n = passed
    _memory(f, f.bg, cur, src, dst, staggered)
    n = sync(bar, group, n)
    _update(f, f.bg, prv, cur, nxt, src, dst, staggered, born, False)
    inject_points(f, nxt, t)  # into this band
    n = sync(bar, group, n)
    if ti.static(born):
        _memory(f, f.tg, cur, src, dst, staggered)
        n = sync(bar, group, n)
        _update(f, f.tg, prv, cur, nxt, src, dst, staggered, False, True)
        n = sync(bar, group, n)
        record_points(f.tangent, nxt, t + 1)  # this worker's receivers
    else:
        record_points(f, nxt, t + 1)
    return n


@ti.func
def _copy_state(f: ti.template(), slot: ti.i32, t: ti.i32, save: ti.template(), part: ti.i32,
                parts: ti.i32):
    """Save (``save=True``) or restore ``x[t]``: ``p`` levels ``t-1, t``, ``psi, zeta[t % 2]``.

    The shots of ``f.shots``, part ``part`` of ``parts`` of the rows (a worker's share).
    """
    p, pp = ti.static((f.p, f.pool_p))
    lvl = t % 2
    nz = p.shape[2]
    ti.loop_config(serialize=f.serial)
    for K in ti.grouped(ti.ndrange(f.shots, (cut(nz, part, parts), cut(nz, part + 1, parts)),
                                   *[p.shape[k + 1] for k in ti.static(range(2, f.ndim + 1))])):
        if ti.static(save):
            pp[(slot, 0, *K)] = p[((t + 2) % 3, *K)]
            pp[(slot, 1, *K)] = p[(t % 3, *K)]
        else:
            p[((t + 2) % 3, *K)] = pp[(slot, 0, *K)]
            p[(t % 3, *K)] = pp[(slot, 1, *K)]
    for name in ti.static(("psi", "zeta")):
        a, pa = ti.static((getattr(f, name), getattr(f, "pool_" + name)))
        ti.loop_config(serialize=f.serial)
        for K in ti.grouped(ti.ndrange(a.shape[1], f.shots,
                                       (cut(nz, part, parts), cut(nz, part + 1, parts)),
                                       *[a.shape[k + 1] for k in ti.static(range(3, f.ndim + 2))])):
            if ti.static(save):
                pa[(slot, 0, *K)] = a[(lvl, *K)]
            else:
                a[(lvl, *K)] = pa[(slot, 0, *K)]


# -- the adjoint of the staggered step (hand-written, gather form) ---------------------------
# With lup the adjoint of p+, le = g lup (g = 1 without a sponge) and r = KK le:
#   Z_d = lzeta'_d + r;  qg_d = r + a_d Z_d;  lzeta_d = b_d Z_d;  dL/dKK += le sum_d (q_d + zeta'_d)
#   fg_d = D-_d^T qg_d;  dL/dB_d += fg_d (phi_d + psi_d');  F = B_d fg_d
#   Y_d = lpsi'_d + F;  phig_d = F + ah_d Y_d;  lpsi_d = bh_d Y_d
#   lp += 2 le + sum_d D+_d^T phig_d;  lp- = -g le
# Each stage writes what it owns only (no atomics), over the same blocks as the forward.
@ti.func
def _adjoint_update_block(f: ti.template(), prv: ti.i32, cur: ti.i32, nxt: ti.i32,
                          src: ti.i32, dst: ti.i32, J: ti.template(), xb: ti.i32):
    """``qg``, ``lzeta``, ``lp``, ``lp-`` and ``dL/dKK`` at a block; returns ``|lp+|^2 + |lp|^2``."""
    lup = f.pg[(nxt, *_at(J, xb))]
    g = ti.Vector.one(f.dtype, f.W)
    if ti.static(f.sponge):
        g = f.sg[_sp(J, xb)]
    le = g * lup
    r = f.kk[_sp(J, xb)] * le
    acc = ti.Vector.zero(f.dtype, f.W)
    for d in ti.static(range(f.ndim)):
        q = _dminus(f.flux, d, -1, J, xb, d, f.s1, False) * f.ih[d]
        grad_q = r
        if _layer(f, 0, J, xb, d):
            a, b = _prof(f, 0, J, xb, d), _prof(f, 1, J, xb, d)
            Z = f.zetag[(dst, d, *_at(J, xb))] + r
            grad_q += a * Z
            f.zetag[(src, d, *_at(J, xb))] = b * Z
            q += b * f.zeta[(src, d, *_at(J, xb))] + a * q
        f.qg[(d, *_at(J, xb))] = grad_q
        acc += q
    f.kkg[_at(J, xb)] += le * acc
    lcur = f.pg[(cur, *_at(J, xb))]
    f.pg[(cur, *_at(J, xb))] = lcur + 2.0 * le
    f.pg[(prv, *_at(J, xb))] = -g * le
    return (lup * lup + lcur * lcur).sum()


@ti.func
def _adjoint_memory_block(f: ti.template(), cur: ti.i32, src: ti.i32, dst: ti.i32,
                          J: ti.template(), xb: ti.i32):
    """``phig``, ``lpsi`` and ``dL/dB`` at a block of half points."""
    for d in ti.static(range(f.ndim)):
        fg = -_dplus(f.qg, d, -1, J, xb, d, f.s1, True) * f.ih[d]
        phi = _dplus(f.p, cur, -1, J, xb, d, f.s1, True) * f.ih[d]
        layer = _layer(f, 2, J, xb, d)
        if layer:
            phi += f.psi[(dst, d, *_at(J, xb))]
        f.buoyg[(d, *_at(J, xb))] += fg * phi
        F = f.buoy[(d, *_sp(J, xb))] * fg
        grad_phi = F
        if layer:
            Y = f.psig[(dst, d, *_at(J, xb))] + F
            grad_phi += _prof(f, 2, J, xb, d) * Y
            f.psig[(src, d, *_at(J, xb))] = _prof(f, 3, J, xb, d) * Y
        f.phig[(d, *_at(J, xb))] = grad_phi


@ti.func
def _adjoint_gather_block(f: ti.template(), cur: ti.i32, J: ti.template(), xb: ti.i32):
    """``lp += sum_d D+_d^T phig_d`` at a block."""
    acc = ti.Vector.zero(f.dtype, f.W)
    for d in ti.static(range(f.ndim)):
        acc -= _dminus(f.phig, d, -1, J, xb, d, f.s1, False) * f.ih[d]
    f.pg[(cur, *_at(J, xb))] += acc


@ti.func
def _reverse_step(f: ti.template(), t: ti.i32, bar: ti.template(), rank: ti.i32,
                  group: ti.i32, passed: ti.i32):
    """Reverse of step ``t`` (receivers at ``t + 1`` included) on the rows of ``f``.

    ``x[t]`` must be live: the fluxes and ``psi'`` of the step are recomputed first.
    Barriers as in :func:`_step`. Returns ``|lambda[t+1]|^2`` on these rows (f64) and
    the barriers passed.
    """
    prv, cur, nxt, src, dst = (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2
    n = passed
    receiver_points_adjoint(f, nxt, t + 1)  # into this worker's band
    _memory(f, f.bg, cur, src, dst, True)
    n = sync(bar, group, n)
    sq = ti.cast(0.0, ti.f64)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            sq += ti.cast(_adjoint_update_block(f, prv, cur, nxt, src, dst, J, xb), ti.f64)
    n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.all_rows)):
        for xb in range(1, f.nb - 1):
            _adjoint_memory_block(f, cur, src, dst, J, xb)
    n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            _adjoint_gather_block(f, cur, J, xb)
    source_points_adjoint(f, nxt, t)  # this worker's sources
    n = sync(bar, group, n)
    return sq, n


def cell_band(f: Arrays, s: Any, rank: Any, group: Any) -> Arrays:
    """``f`` on shot ``s`` and band ``rank`` of ``group`` (plain Python).

    See :func:`~diffsim.kernels.common.band`; the worker records part ``rank`` of the
    receivers (``recs``, of the Born tangent too) and sums part ``rank`` of the sources'
    gradients (``srcs``).
    """
    nr, ns = f.rec_pos.shape[1], f.src_pos.shape[1]
    recs = (cut(nr, rank, group), cut(nr, rank + 1, group))  # the receivers it records
    srcs = (cut(ns, rank, group), cut(ns, rank + 1, group))  # the sources' gradients
    tangent = f.__dict__.get("tangent")
    if tangent is None:
        return band(f, s, rank, group, recs=recs, srcs=srcs)
    return band(f, s, rank, group, recs=recs, srcs=srcs,
                tangent=Arrays(**{**tangent.__dict__, "shots": (s, s + 1), "recs": recs}))


# -- kernels ---------------------------------------------------------------------------------
@functools.cache
def cell_kernels(ndim: int, precision: str, lanes: int) -> dict[str, Any]:
    """The cell engine's kernels for one dimension and precision.

    ``forward`` and ``reverse`` run as ``workers`` tasks sharing the shots (the first
    ``alone`` dealt whole, the rest in bands of rows; :mod:`diffsim._parallel`), with
    the barrier counter ``bar``.

    * ``forward``: steps ``start … stop-1`` in one launch, saving ``x[t]`` (with
      ``save``) in checkpoint slot ``saves[t - start]`` (``-1``: no save) for ``t`` in
      ``start … stop``. ``born``: the background and the Born tangent together
      (``staggered`` either way).
    * ``reverse`` (staggered only): the reverse of steps ``top, top-1, …`` (``count`` of
      them), restoring ``x[t]`` from pool slot ``slots[i]`` first (``-1``: live), the
      squared costate norm of step ``i``, shot ``s``, band ``rank`` into
      ``norms[(i * shots + s) * workers + rank]``.
    * ``receiver_adjoint``: the receivers' adjoint at time ``t`` into ``pg[lvl]``.
    """
    real = ti.f64 if precision == "f64" else ti.f32
    nl = cell_layout_size(ndim)
    lay_t: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    r3: TypeAlias = ti.types.ndarray(dtype=real, ndim=3)
    r4: TypeAlias = ti.types.ndarray(dtype=real, ndim=4)
    pos: TypeAlias = ti.types.ndarray(dtype=ti.types.vector(ndim, ti.i32), ndim=2)
    i1: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1: TypeAlias = ti.types.ndarray(dtype=ti.f64, ndim=1)
    iv4: TypeAlias = ti.types.vector(4, ti.i32)

    def bundle(arena: Any, pools: Any, lay: Any, **items: Any) -> Arrays:
        views = cell_views(arena, pools, _scalars(lay, nl), ndim)
        items["xl"] = _scalars(items["xl"], 4)
        items["scale"] = impl.expr_init(items["scale"])
        return cell_bundle(views, ndim=ndim, real=real, lanes=lanes, **items)

    @ti.kernel
    def forward(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                rp: r3, amp: r3, traces: r3, src_pos: pos, src_w: r4, rec_pos: pos, rec_w: r4,
                saves: i1, xl: iv4, ih: ti.template(), scale: real, start: ti.i32,
                stop: ti.i32, workers: ti.i32, alone: ti.i32, s1: ti.template(),
                c1: ti.template(), c2: ti.template(), staggered: ti.template(),
                sponge: ti.template(), born: ti.template(), save: ti.template()):
        f = ti.static(bundle(arena, pools, lay, rp=rp, xl=xl, ih=ih, s1=s1, c1=c1, c2=c2,
                             sponge=sponge, serial=True, amp=amp, traces=traces,
                             src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w,
                             scale=scale))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            nb = 0  # barriers passed
            for k in range(units(f.p.shape[1], w, workers, alone)):
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(cell_band(f, s, rank, group))
                for t in range(start, stop + 1):
                    if ti.static(save):
                        slot = saves[t - start]
                        if slot >= 0:
                            _copy_state(g, slot, t, True, rank, group)
                    if t < stop:
                        nb = _step(g, t, staggered, born, bar, rank, group, nb)

    @ti.kernel
    def reverse(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                rp: r3, ampg: r3, tracesg: r3, src_pos: pos, src_w: r4, rec_pos: pos,
                rec_w: r4, slots: i1, norms: f1, xl: iv4, ih: ti.template(), scale: real,
                top: ti.i32, count: ti.i32, workers: ti.i32, alone: ti.i32,
                s1: ti.template(), c1: ti.template(), c2: ti.template(),
                sponge: ti.template()):
        f = ti.static(bundle(arena, pools, lay, rp=rp, xl=xl, ih=ih, s1=s1, c1=c1, c2=c2,
                             sponge=sponge, serial=True, ampg=ampg, tracesg=tracesg,
                             src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w,
                             scale=scale))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            # norms[(i * shots + s) * workers + rank]: step i, shot s, band rank
            nb = 0
            for k in range(units(f.p.shape[1], w, workers, alone)):
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(cell_band(f, s, rank, group))
                for i in range(count):
                    t = top - i
                    slot = slots[i]
                    if slot >= 0:
                        _copy_state(g, slot, t, False, rank, group)
                    sq, nb = _reverse_step(g, t, bar, rank, group, nb)
                    norms[(i * f.p.shape[1] + s) * workers + rank] = sq

    @ti.kernel
    def receiver_adjoint(arena: ti.template(), lay: lay_t, tracesg: r3, rec_pos: pos,
                         rec_w: r4, lvl: ti.i32, t: ti.i32):
        f = ti.static(Arrays(ug=cell_views(arena, arena, _scalars(lay, nl), ndim)["pg"],
                             tracesg=tracesg, rec_pos=rec_pos, rec_w=rec_w, ndim=ndim,
                             dtype=real, W=lanes, shots=(0, rec_pos.shape[0])))
        receiver_points_adjoint(f, lvl, t)

    return dict(forward=lean(forward), reverse=lean(reverse),
                receiver_adjoint=lean(receiver_adjoint))

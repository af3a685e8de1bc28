"""Kernels of isotropic elastic waves (2D P-SV and 3D), velocity-stress on a staggered grid.

Virieux (1986) staggering on axes ``d = 0 … D-1`` (``z[, y], x``; x last, in lanes):
normal stresses ``s_kk`` at cells, velocity ``v_i`` half a cell along axis ``i``, shear
``s_ij`` (``i < j``) half a cell along ``i`` and ``j``; each stored at the index of the
cell below it. Staggered differences with the order's coefficients ``s``
(:data:`diffsim.acoustic.STAGGERED`), ``D+ a[j] = sum_k s_k (a[j+k+1] - a[j-k])`` (to the
half points) and ``D- a[j] = sum_k s_k (a[j+k] - a[j-k-1])`` (to the cells). One time
level per step (two in a ring: ``x[t]`` at level ``t % 2``; velocities at half steps)::

    v_i  += B_i sum_j T_ij,   T_ii = D+_i s_ii,  T_ij = D-_j s_ij          (velocity stage)
    s_kk += L tr + M E_k,     E_k = D-_k v_k,    tr = sum_k E_k             (stress stage)
    s_ij += MU_ij (G_ij + G_ji),  G_ij = D+_j v_i

with ``B_i = dt / rho`` averaged onto the velocity points, ``L = dt lambda``, ``M = 2 dt
mu`` at cells and ``MU = dt mu`` averaged harmonically onto the shear points (zero where
a cell is fluid); all are zero on the frame of ``halo`` cells, so the frame stays zero.
Every derivative ``X`` along an axis in a C-PML layer gets ``X + m`` with the memory
``m' = b m + a X`` (``a, b`` the profile at the derivative's position: half points along
``i`` for ``T_ii``, ``G_ij`` along ``j``; cells otherwise): ``psi [D*D]`` (``T_ij`` at
``i*D + j``), ``zeta [D]`` (``E_k``), ``eta [2 P]`` (``G_ij`` then ``G_ji`` of shear ``p``).

Free surface (image, on the top row of cells ``i0``): ``s_zz = 0`` there and the other
normal stresses use ``lambda' = 2 mu lambda / (lambda + 2 mu)`` without ``E_z`` (the host
writes ``lambda'`` into ``L``); the rows above are ghosts filled before they are read:
stresses ``s_zz``, ``s_zj`` odd about the surface, velocities even. Velocity ghosts are
filled after the velocity stage, stress ghosts after the sources. This pairing keeps the
discrete energy of the half space (the surface row at half weight), so the scheme is as
stable as the interior one.

The reverse step is the hand-written adjoint in gather form (no atomics): a stage's
adjoint first writes, at the points the stage updated, the adjoints of its derivatives
(scratch ``ev``, ``gv``, ``dv``), its memories' adjoints and the parameter gradients
(per shot), then gathers each array's adjoint from the scratch with ``D-^T = -D+`` and
``D+^T = -D-`` (over every row: the ghosts get their share, folded back by the image's
transpose). Every checkpoint schedule gives the same bits.
"""

import functools
from typing import Any, TypeAlias

import taichi as ti
from taichi.lang import impl

from diffsim.kernels.acoustic._blocks import Arrays, _at, _sp
from diffsim.kernels.acoustic.arena import View, _scalars
from diffsim.kernels.acoustic.cells import _dminus, _dplus, _layer, _prof
from diffsim.kernels.acoustic.forward import _lane_elem
from diffsim.kernels.common import band, cut, lean, sync, unit, units


def shear_pairs(ndim: int) -> tuple[tuple[int, int], ...]:
    """The shear components ``(i, j)``, ``i < j``, in storage order."""
    return tuple((i, j) for i in range(ndim) for j in range(i + 1, ndim))


#: The arrays forming one state, in layout order (contiguous in the arena).
STATE = ("v", "s", "psi", "zeta", "eta")


def elastic_arrays(ndim: int) -> tuple[tuple[str, int], ...]:
    """``(name, axes)`` of every array of the elastic engine, in layout order.

    The state arrays (:data:`STATE`) have two levels (``[level, component, ...]``);
    ``pool`` is ``[slot, state]`` in the checkpoint arena, one level of each state
    array after the other.
    """
    r, g = ndim + 1, ndim      # axes of a per-shot array (shot, rows, xb) and of a grid
    comp = r + 1
    return (("v", comp + 1), ("s", comp + 1), ("psi", comp + 1), ("zeta", comp + 1),
            ("eta", comp + 1),
            ("vg", comp), ("sg", comp), ("psig", comp), ("zetag", comp), ("etag", comp),
            ("ev", comp), ("gv", comp), ("dv", comp), ("acc", comp),
            ("gB", comp), ("gL", r), ("gM", r), ("gMU", comp),
            ("B", g + 1), ("L", g), ("M", g), ("MU", g + 1), ("xp", 2), ("pool", 2))


def elastic_layout_size(ndim: int) -> int:
    """Entries of the layout vector."""
    return sum(1 + axes for _, axes in elastic_arrays(ndim))


def _views(arena: Any, pools: Any, layout: Any, ndim: int) -> dict[str, View]:
    out: dict[str, View] = {}
    k = 0
    for name, axes in elastic_arrays(ndim):
        out[name] = View(pools if name == "pool" else arena, layout[k],
                         layout[k + 1:k + 1 + axes])
        k += 1 + axes
    return out


def _bundle(arena: Any, pools: Any, lay: Any, ndim: int, real: Any, lanes: int,
            **items: Any) -> Arrays:
    """The :class:`Arrays` of an elastic kernel (plain Python, run while it compiles)."""
    views = _views(arena, pools, _scalars(lay, elastic_layout_size(ndim)), ndim)
    v = views["vg"]       # [component, shot, rows, xb]
    halo = len(items["s1"])
    rows = tuple(v.shape[2 + d] for d in range(ndim - 1))
    if "xl" in items:
        items["xl"] = _scalars(items["xl"], 4)
    if "scale" in items:
        items["scale"] = impl.expr_init(items["scale"])
    flat, base = [], 0
    for name in STATE:     # each state array as [level, flat], and where it goes in a slot
        a = views[name]    # [level, component, shot, rows, xb]
        per = a.shape[3]   # elements of one component of one shot
        for n in a.shape[4:]:
            per = per * n
        whole = a.shape[1] * a.shape[2] * per
        flat.append((View(a.field, a.offset, (2, whole)), base, (a.shape[1], a.shape[2], per)))
        base = base + whole
    return Arrays(**views, ndim=ndim, dtype=real, W=lanes, halo=halo, flat=tuple(flat),
                  pairs=shear_pairs(ndim), shots=(0, v.shape[1]), nb=v.shape[ndim + 1],
                  all_rows=tuple((0, n) for n in rows),
                  in_rows=tuple((halo, n - halo) for n in rows),
                  top_rows=((0, 1), *((0, n) for n in rows[1:])), **items)


# -- the velocity stage ----------------------------------------------------------------------
@ti.func
def _pair(f: ti.template(), i: ti.template(), j: ti.template()):
    """Index of shear ``(min, max)`` of axes ``i != j`` (compile time)."""
    return ti.static(f.pairs.index((min(i, j), max(i, j))))


@ti.func
def _t(f: ti.template(), lvl: ti.i32, i: ti.template(), j: ti.template(), J: ti.template(),
       xb: ti.i32):
    """``T_ij`` at a block of ``v_i`` points from the stresses at level ``lvl`` (no memory)."""
    out = ti.Vector.zero(f.dtype, f.W)
    if ti.static(i == j):
        out = _dplus(f.s, lvl, i, J, xb, j, f.s1, False) * f.ih[j]
    else:
        out = _dminus(f.s, lvl, f.ndim + _pair(f, i, j), J, xb, j, f.s1, False) * f.ih[j]
    return out


@ti.func
def _velocity_block(f: ti.template(), J: ti.template(), xb: ti.i32, src: ti.i32, dst: ti.i32,
                    keep: ti.template()):
    """The velocity stage at one block (``keep``: also store ``sum_j T_ij`` in ``acc``)."""
    for i in ti.static(range(f.ndim)):
        acc = ti.Vector.zero(f.dtype, f.W)
        for j in ti.static(range(f.ndim)):
            x = _t(f, src, i, j, J, xb)
            h = ti.static(2 if i == j else 0)
            if _layer(f, h, J, xb, j):
                m = (_prof(f, h + 1, J, xb, j) * f.psi[(src, i * f.ndim + j, *_at(J, xb))]
                     + _prof(f, h, J, xb, j) * x)
                f.psi[(dst, i * f.ndim + j, *_at(J, xb))] = m
                x += m
            acc += x
        if ti.static(keep):
            f.acc[(i, *_at(J, xb))] = acc
        f.v[(dst, i, *_at(J, xb))] = f.v[(src, i, *_at(J, xb))] + f.B[(i, *_sp(J, xb))] * acc


# -- the stress stage ------------------------------------------------------------------------
@ti.func
def _strain(f: ti.template(), k: ti.template(), J: ti.template(), xb: ti.i32, src: ti.i32,
            dst: ti.i32, write: ti.template()):
    """``E_k`` at a block of cells from ``v[dst]`` with its memory (stored when ``write``)."""
    e = _dminus(f.v, dst, k, J, xb, k, f.s1, False) * f.ih[k]
    if _layer(f, 0, J, xb, k):
        m = _prof(f, 1, J, xb, k) * f.zeta[(src, k, *_at(J, xb))] + _prof(f, 0, J, xb, k) * e
        if ti.static(write):
            f.zeta[(dst, k, *_at(J, xb))] = m
        e += m
    return e


@ti.func
def _shear_strain(f: ti.template(), p: ti.template(), J: ti.template(), xb: ti.i32,
                  src: ti.i32, dst: ti.i32, write: ti.template()):
    """``G_ij + G_ji`` of shear ``p`` at a block, with memories (stored when ``write``)."""
    i, j = ti.static(f.pairs[p])
    total = ti.Vector.zero(f.dtype, f.W)
    for q in ti.static(range(2)):
        a, d = ti.static((i, j) if q == 0 else (j, i))   # G = D+_d v_a
        g = _dplus(f.v, dst, a, J, xb, d, f.s1, False) * f.ih[d]
        if _layer(f, 2, J, xb, d):
            m = (_prof(f, 3, J, xb, d) * f.eta[(src, 2 * p + q, *_at(J, xb))]
                 + _prof(f, 2, J, xb, d) * g)
            if ti.static(write):
                f.eta[(dst, 2 * p + q, *_at(J, xb))] = m
            g += m
        total += g
    return total


@ti.func
def _stress_block(f: ti.template(), J: ti.template(), xb: ti.i32, src: ti.i32, dst: ti.i32,
                  top: ti.i32):
    """The stress stage at one block (row ``top``: the free surface, ``-1``: none)."""
    surface = J[1] == top
    tr = ti.Vector.zero(f.dtype, f.W)
    M = f.M[_sp(J, xb)]
    for k in ti.static(range(f.ndim)):
        e = _strain(f, k, J, xb, src, dst, True)
        new = f.s[(src, k, *_at(J, xb))]
        if ti.static(k == 0):
            if not surface:
                tr += e
                new += M * e
        else:
            tr += e
            new += M * e
        f.s[(dst, k, *_at(J, xb))] = new
    L = f.L[_sp(J, xb)]
    for k in ti.static(range(f.ndim)):
        if ti.static(k == 0):
            if not surface:
                f.s[(dst, k, *_at(J, xb))] += L * tr
        else:
            f.s[(dst, k, *_at(J, xb))] += L * tr
    for p in ti.static(range(len(f.pairs))):
        f.s[(dst, f.ndim + p, *_at(J, xb))] = (
            f.s[(src, f.ndim + p, *_at(J, xb))]
            + f.MU[(p, *_sp(J, xb))] * _shear_strain(f, p, J, xb, src, dst, True))


# -- the free surface's ghosts ---------------------------------------------------------------
@ti.func
def _ghost_rows(f: ti.template(), a: ti.template(), lvl: ti.i32, c: ti.template(),
                J: ti.template(), xb: ti.i32, top: ti.i32, half: ti.template(),
                sign: ti.template(), transpose: ti.template()):
    """Image of component ``c`` of ``a[lvl]`` about row ``top`` (rows above from below).

    ``half``: the component sits half a cell down (row ``top - 1 - k`` mirrors
    ``top + k``), else on the cells (``top - 1 - k`` mirrors ``top + 1 + k``).
    ``transpose``: the adjoint (add each ghost onto its mirror times ``sign``, zero the
    ghost). ``lvl < 0``: an array without levels (the adjoints).
    """
    for k in ti.static(range(f.halo)):
        G = J + (top - 1 - k - J[1]) * ti.Vector.unit(J.n, 1, ti.i32)
        S = J + (top + k + (0 if half else 1) - J[1]) * ti.Vector.unit(J.n, 1, ti.i32)
        if ti.static(transpose):
            a[(c, *_at(S, xb))] += sign * a[(c, *_at(G, xb))]
            a[(c, *_at(G, xb))] = ti.Vector.zero(f.dtype, f.W)
        else:
            a[(lvl, c, *_at(G, xb))] = sign * a[(lvl, c, *_at(S, xb))]


@ti.func
def _image_velocity(f: ti.template(), a: ti.template(), lvl: ti.i32, top: ti.i32,
                    transpose: ti.template()):
    """Velocity ghosts (even): ``v_z`` half a cell down, the others on the cells."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.top_rows)):
        for xb in range(1, f.nb - 1):
            for c in ti.static(range(f.ndim)):
                _ghost_rows(f, a, lvl, c, J, xb, top, c == 0, 1.0, transpose)


@ti.func
def _image_stress(f: ti.template(), a: ti.template(), lvl: ti.i32, top: ti.i32,
                  transpose: ti.template()):
    """Stress ghosts (odd): ``s_zz`` (zero on the surface) and the shears ``s_zj``."""
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.top_rows)):
        for xb in range(1, f.nb - 1):
            S = J + (top - J[1]) * ti.Vector.unit(J.n, 1, ti.i32)
            if ti.static(transpose):
                _ghost_rows(f, a, lvl, 0, J, xb, top, False, -1.0, True)
                a[(0, *_at(S, xb))] = ti.Vector.zero(f.dtype, f.W)
            else:
                a[(lvl, 0, *_at(S, xb))] = ti.Vector.zero(f.dtype, f.W)
                _ghost_rows(f, a, lvl, 0, J, xb, top, False, -1.0, False)
            for p in ti.static(range(len(f.pairs))):
                if ti.static(f.pairs[p][0] == 0):
                    _ghost_rows(f, a, lvl, f.ndim + p, J, xb, top, True, -1.0, transpose)


# -- sources and receivers (serial loops over a few cells) ----------------------------------
@ti.func
def _stencil_weight(f: ti.template(), w: ti.template(), c: ti.template(), P: ti.template()):
    out = ti.cast(1.0, f.dtype)
    for d in ti.static(range(f.ndim)):
        out *= w[c, P[0], P[1], d, P[d + 2]]
    return out


@ti.func
def _sources(f: ti.template(), step: ti.i32, dst: ti.i32, adjoint: ti.template()):
    """Inject the sources of ``step`` into level ``dst`` (``adjoint``: the transpose).

    The transpose adds into ``ampg`` (and ``gB`` for forces).
    ``kind`` 0: explosive, into every normal stress (``s_zz`` with the second stencil);
    ``kind`` 1 + a: a force along axis ``a`` into ``v_a`` times ``B_a`` (``dt / rho``).
    """
    W = ti.static(f.W)
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.src_pos.shape[2], *([f.src_w.shape[4]] * f.ndim))):
        if ti.static(f.kind == 0):
            for k in ti.static(range(f.ndim)):
                c = ti.static(1 if k == 0 else 0)
                w = ti.cast(f.scale, f.dtype) * _stencil_weight(f, f.src_w, c, P)
                cell = _cell_of(f.src_pos, c, P)
                e, lane = _lane_elem(cell, W), (cell[cell.n - 1] + W) % W
                if ti.static(adjoint):
                    f.ampg[P[0], P[1], step] += w * f.sg[(k, *e)][lane]
                else:
                    f.s[(dst, k, *e)][lane] += w * f.amp[P[0], P[1], step]
        else:
            a = ti.static(f.kind - 1)
            w = ti.cast(f.scale, f.dtype) * _stencil_weight(f, f.src_w, 0, P)
            cell = _cell_of(f.src_pos, 0, P)
            e, lane = _lane_elem(cell, W), (cell[cell.n - 1] + W) % W
            sp = ti.Vector([e[k] for k in ti.static(range(1, e.n))])
            b = f.B[(a, *sp)][lane]
            if ti.static(adjoint):
                lv = f.vg[(a, *e)][lane]
                f.ampg[P[0], P[1], step] += w * b * lv
                f.gB[(a, *e)][lane] += w * f.amp[P[0], P[1], step] * lv
            else:
                f.v[(dst, a, *e)][lane] += w * b * f.amp[P[0], P[1], step]


@ti.func
def _cell_of(pos: ti.template(), c: ti.template(), P: ti.template()):
    """Cell ``(shot, z[, y], x)`` of stencil point ``P`` of point set ``c``."""
    base = pos[c, P[0], P[1]]
    return ti.Vector([P[0]] + [base[d] + P[d + 2] for d in ti.static(range(P.n - 2))])


@ti.func
def _receiver_cell(f: ti.template(), a: ti.template(), k: ti.template(), c: ti.template(),
                   pset: ti.template(), sign: ti.template(), t: ti.i32, lvl: ti.i32,
                   P: ti.template(), adjoint: ti.template()):
    """Stencil point ``P`` of component ``k`` of ``a[lvl]`` into trace ``c`` (or back)."""
    W = ti.static(f.W)
    w = sign * _stencil_weight(f, f.rec_w, pset, P)
    cell = _cell_of(f.rec_pos, pset, P)
    e, lane = _lane_elem(cell, W), (cell[cell.n - 1] + W) % W
    if ti.static(adjoint):
        a[(k, *e)][lane] += w * f.tracesg[t, c, P[0], P[1]]
    else:
        f.traces[t, c, P[0], P[1]] += w * a[(lvl, k, *e)][lane]


@ti.func
def _receivers(f: ti.template(), t: ti.i32, adjoint: ti.template()):
    """Record (or, ``adjoint``, add the adjoint of) the receivers at time ``t`` (level ``t % 2``).

    Components ``c``: 0 pressure ``-sum_k s_kk / D`` (point sets 0, and 1 for ``s_zz``),
    ``1 + i`` the velocity ``v_i`` (point set ``2 + i``).
    """
    if ti.static(not adjoint):
        ti.loop_config(serialize=True)
        for c, s, r in ti.ndrange(f.ndim + 1, f.shots, f.rec_pos.shape[2]):
            f.traces[t, c, s, r] = 0.0
    s, v = ti.static((f.sg, f.vg) if adjoint else (f.s, f.v))
    ti.loop_config(serialize=True)
    for P in ti.grouped(ti.ndrange(f.shots, f.rec_pos.shape[2], *([f.rec_w.shape[4]] * f.ndim))):
        for k in ti.static(range(f.ndim)):
            _receiver_cell(f, s, k, 0, 1 if k == 0 else 0, -1.0 / f.ndim, t, t % 2, P,
                           adjoint)
            _receiver_cell(f, v, k, 1 + k, 2 + k, 1.0, t, t % 2, P, adjoint)


# -- steps -----------------------------------------------------------------------------------
@ti.func
def _velocity(f: ti.template(), src: ti.i32, dst: ti.i32, keep: ti.template()):
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            _velocity_block(f, J, xb, src, dst, keep)


@ti.func
def _step(f: ti.template(), t: ti.i32, top: ti.i32, bar: ti.template(), rank: ti.i32,
          group: ti.i32, passed: ti.i32) -> ti.i32:
    """Step ``t`` (level ``t % 2`` to the other) and the receivers at ``t + 1``.

    On the rows of ``f`` (a worker's band of one shot, :func:`band`) with a barrier of
    the ``group`` after each pass (none for a group of one); ``rank`` 0 runs the serial
    parts (sources, receivers, the free surface's images) between them, in the order of
    one worker. Returns the barriers passed, counting from ``passed``.
    """
    src, dst = t % 2, (t + 1) % 2
    n = passed
    _velocity(f, src, dst, False)
    n = sync(bar, group, n)
    if ti.static(f.free):
        if rank == 0:
            _image_velocity(f, f.v, dst, top, False)
        n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            _stress_block(f, J, xb, src, dst, top)
    n = sync(bar, group, n)
    if rank == 0:
        _sources(f, t, dst, False)
        if ti.static(f.free):
            _image_stress(f, f.s, dst, top, False)
        _receivers(f, t + 1, False)
    return sync(bar, group, n)


@ti.func
def _copy_state(f: ti.template(), slot: ti.i32, lvl: ti.i32, save: ti.template(), s: ti.i32,
                part: ti.i32, parts: ti.i32):
    """Save (``save=True``) or restore level ``lvl`` of every state array of shot ``s``.

    Part ``part`` of ``parts`` of each component's elements (a worker's share).
    """
    for n in ti.static(range(len(STATE))):
        flat, base, dims = ti.static(f.flat[n])
        comps, shots, per = ti.static(dims)
        ti.loop_config(serialize=f.serial)
        for c, r in ti.ndrange(comps, (cut(per, part, parts), cut(per, part + 1, parts))):
            k = (c * shots + s) * per + r
            if ti.static(save):
                f.pool[slot, base + k] = flat[lvl, k]
            else:
                flat[lvl, k] = f.pool[slot, base + k]


# -- the adjoint -----------------------------------------------------------------------------
@ti.func
def _stress_adjoint_block(f: ti.template(), J: ti.template(), xb: ti.i32, src: ti.i32,
                          dst: ti.i32, top: ti.i32):
    """Stress stage's adjoint at a block: ``ev``, ``gv``, memories' adjoints, gradients.

    Needs the velocity stage recomputed (its output ``v[dst]`` is the stage's input) and
    the stresses' adjoint complete. Returns the squared norm of the costate there.
    """
    surface = J[1] == top
    lsum = ti.Vector.zero(f.dtype, f.W)
    sq = ti.Vector.zero(f.dtype, f.W)
    for k in ti.static(range(f.ndim)):
        ls = f.sg[(k, *_at(J, xb))]
        lv = f.vg[(k, *_at(J, xb))]
        sq += ls * ls + lv * lv
        if ti.static(k == 0):
            if not surface:
                lsum += ls
        else:
            lsum += ls
    L, M = f.L[_sp(J, xb)], f.M[_sp(J, xb)]
    tr = ti.Vector.zero(f.dtype, f.W)
    gm = ti.Vector.zero(f.dtype, f.W)
    for k in ti.static(range(f.ndim)):
        e = _strain(f, k, J, xb, src, dst, False)
        le = ti.Vector.zero(f.dtype, f.W)
        ls = f.sg[(k, *_at(J, xb))]
        active = True
        if ti.static(k == 0):
            active = not surface
        if active:
            tr += e
            gm += e * ls
            le = L * lsum + M * ls
        if _layer(f, 0, J, xb, k):
            Z = f.zetag[(k, *_at(J, xb))] + le
            le += _prof(f, 0, J, xb, k) * Z
            f.zetag[(k, *_at(J, xb))] = _prof(f, 1, J, xb, k) * Z
        f.ev[(k, *_at(J, xb))] = le * f.ih[k]
    f.gL[_at(J, xb)] += tr * lsum
    f.gM[_at(J, xb)] += gm
    for p in ti.static(range(len(f.pairs))):
        i, j = ti.static(f.pairs[p])
        ls = f.sg[(f.ndim + p, *_at(J, xb))]
        sq += ls * ls
        f.gMU[(p, *_at(J, xb))] += _shear_strain(f, p, J, xb, src, dst, False) * ls
        lg = f.MU[(p, *_sp(J, xb))] * ls
        for q in ti.static(range(2)):
            d = ti.static(j if q == 0 else i)
            grad = lg
            if _layer(f, 2, J, xb, d):
                Y = f.etag[(2 * p + q, *_at(J, xb))] + lg
                grad += _prof(f, 2, J, xb, d) * Y
                f.etag[(2 * p + q, *_at(J, xb))] = _prof(f, 3, J, xb, d) * Y
            f.gv[(2 * p + q, *_at(J, xb))] = grad * f.ih[d]
    return sq.sum()


@ti.func
def _velocity_gather_block(f: ti.template(), J: ti.template(), xb: ti.i32):
    """``vg_k += -D+_k ev_k - sum D-_d gv`` (the strains' transposes) at a block."""
    for k in ti.static(range(f.ndim)):
        acc = -_dplus(f.ev, k, -1, J, xb, k, f.s1, True)
        for p in ti.static(range(len(f.pairs))):
            i, j = ti.static(f.pairs[p])
            if ti.static(i == k):      # G_ij = D+_j v_i
                acc -= _dminus(f.gv, 2 * p, -1, J, xb, j, f.s1, True)
            if ti.static(j == k):      # G_ji = D+_i v_j
                acc -= _dminus(f.gv, 2 * p + 1, -1, J, xb, i, f.s1, True)
        f.vg[(k, *_at(J, xb))] += acc


@ti.func
def _velocity_adjoint_block(f: ti.template(), J: ti.template(), xb: ti.i32):
    """Velocity stage's adjoint at a block: ``dv``, ``psig`` and ``gB``."""
    for i in ti.static(range(f.ndim)):
        lv = f.vg[(i, *_at(J, xb))]
        f.gB[(i, *_at(J, xb))] += f.acc[(i, *_at(J, xb))] * lv
        la = f.B[(i, *_sp(J, xb))] * lv
        for j in ti.static(range(f.ndim)):
            h = ti.static(2 if i == j else 0)
            grad = la
            if _layer(f, h, J, xb, j):
                Y = f.psig[(i * f.ndim + j, *_at(J, xb))] + la
                grad += _prof(f, h, J, xb, j) * Y
                f.psig[(i * f.ndim + j, *_at(J, xb))] = _prof(f, h + 1, J, xb, j) * Y
            f.dv[(i * f.ndim + j, *_at(J, xb))] = grad * f.ih[j]


@ti.func
def _stress_gather_block(f: ti.template(), J: ti.template(), xb: ti.i32):
    """``sg += -D-_k dv_kk`` (normal) and ``-D+_j dv_ij - D+_i dv_ji`` (shear) at a block."""
    nd = ti.static(f.ndim)
    for k in ti.static(range(nd)):
        f.sg[(k, *_at(J, xb))] -= _dminus(f.dv, k * nd + k, -1, J, xb, k, f.s1, True)
    for p in ti.static(range(len(f.pairs))):
        i, j = ti.static(f.pairs[p])
        f.sg[(nd + p, *_at(J, xb))] -= (_dplus(f.dv, i * nd + j, -1, J, xb, j, f.s1, True)
                                        + _dplus(f.dv, j * nd + i, -1, J, xb, i, f.s1, True))


@ti.func
def _reverse_step(f: ti.template(), t: ti.i32, top: ti.i32, bar: ti.template(), rank: ti.i32,
                  group: ti.i32, passed: ti.i32):
    """Reverse of step ``t`` (receivers at ``t + 1`` included); ``x[t]`` at level ``t % 2``.

    Barriers and ``rank`` 0's serial parts as in :func:`_step`. Returns ``|lambda[t+1]|^2``
    of the velocities and stresses on these rows (f64) and the barriers passed.
    """
    src, dst = t % 2, (t + 1) % 2
    n = passed
    if rank == 0:
        _receivers(f, t + 1, True)
        if ti.static(f.free):
            _image_stress(f, f.sg, -1, top, True)
        _sources(f, t, dst, True)
    n = sync(bar, group, n)
    _velocity(f, src, dst, True)      # recompute: the stress stage reads the new velocities
    n = sync(bar, group, n)
    if ti.static(f.free):
        if rank == 0:
            _image_velocity(f, f.v, dst, top, False)
        n = sync(bar, group, n)
    sq = ti.cast(0.0, ti.f64)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            sq += ti.cast(_stress_adjoint_block(f, J, xb, src, dst, top), ti.f64)
    n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.all_rows)):
        for xb in range(1, f.nb - 1):
            _velocity_gather_block(f, J, xb)
    n = sync(bar, group, n)
    if ti.static(f.free):
        if rank == 0:
            _image_velocity(f, f.vg, -1, top, True)
        n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.in_rows)):
        for xb in range(1, f.nb - 1):
            _velocity_adjoint_block(f, J, xb)
    n = sync(bar, group, n)
    ti.loop_config(serialize=f.serial)
    for J in ti.grouped(ti.ndrange(f.shots, *f.all_rows)):
        for xb in range(1, f.nb - 1):
            _stress_gather_block(f, J, xb)
    return sq, sync(bar, group, n)


# -- kernels ---------------------------------------------------------------------------------
@functools.cache
def elastic_kernels(ndim: int, precision: str, lanes: int) -> dict[str, Any]:
    """The elastic engine's kernels for one dimension and precision.

    ``forward`` and ``reverse`` run as ``workers`` tasks sharing the shots (the first
    ``alone`` dealt whole, the rest in bands of rows; :mod:`diffsim._parallel`), with
    the barrier counter ``bar``.

    * ``forward``: steps ``start … stop-1`` in one launch, saving ``x[t]`` (with
      ``save``) in checkpoint slot ``saves[t - start]`` (``-1``: no save) for ``t`` in
      ``start … stop``.
    * ``reverse``: the reverse of steps ``top, top-1, …`` (``count`` of them), restoring
      ``x[t]`` from pool slot ``slots[i]`` first (``-1``: live), the squared costate norm
      of step ``i``, shot ``s``, band ``rank`` into ``norms[(i * shots + s) * workers +
      rank]``.
    * ``receivers_adjoint``: the receivers' adjoint at time ``t``.

    Compile-time arguments: ``ih`` (ratios of the spacings to the first one), the
    staggered coefficients ``s1``, the source ``kind``, ``free`` (free surface) and
    ``save``; ``surface`` is the free surface's row (run time).
    """
    real = ti.f64 if precision == "f64" else ti.f32
    lay_t: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    r3: TypeAlias = ti.types.ndarray(dtype=real, ndim=3)
    r4: TypeAlias = ti.types.ndarray(dtype=real, ndim=4)
    r5: TypeAlias = ti.types.ndarray(dtype=real, ndim=5)
    pos: TypeAlias = ti.types.ndarray(dtype=ti.types.vector(ndim, ti.i32), ndim=3)
    i1: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1: TypeAlias = ti.types.ndarray(dtype=ti.f64, ndim=1)
    iv4: TypeAlias = ti.types.vector(4, ti.i32)

    def bundle(arena: Any, pools: Any, lay: Any, **items: Any) -> Arrays:
        return _bundle(arena, pools, lay, ndim, real, lanes, **items)

    @ti.kernel
    def forward(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                rp: r3, amp: r3, traces: r4, src_pos: pos, src_w: r5, rec_pos: pos, rec_w: r5,
                saves: i1, xl: iv4, scale: real, surface: ti.i32, start: ti.i32, stop: ti.i32,
                workers: ti.i32, alone: ti.i32, ih: ti.template(), s1: ti.template(),
                kind: ti.template(), free: ti.template(), save: ti.template()):
        f = ti.static(bundle(arena, pools, lay, rp=rp, amp=amp, traces=traces,
                             src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w,
                             xl=xl, scale=scale, ih=ih, s1=s1, kind=kind, free=free,
                             serial=True))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            nb = 0  # barriers passed
            for k in range(units(f.shots[1], w, workers, alone)):
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(band(f, s, rank, group))
                for t in range(start, stop + 1):
                    if ti.static(save):
                        slot = saves[t - start]
                        if slot >= 0:
                            _copy_state(g, slot, t % 2, True, s, rank, group)
                    if t < stop:
                        nb = _step(g, t, surface, bar, rank, group, nb)

    @ti.kernel
    def reverse(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                rp: r3, amp: r3, ampg: r3, tracesg: r4, src_pos: pos, src_w: r5,
                rec_pos: pos, rec_w: r5, slots: i1, norms: f1, xl: iv4, scale: real,
                surface: ti.i32, top: ti.i32, count: ti.i32, workers: ti.i32, alone: ti.i32,
                ih: ti.template(), s1: ti.template(), kind: ti.template(),
                free: ti.template()):
        f = ti.static(bundle(arena, pools, lay, rp=rp, amp=amp, ampg=ampg, tracesg=tracesg,
                             src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w,
                             xl=xl, scale=scale, ih=ih, s1=s1, kind=kind, free=free,
                             serial=True))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            # norms[(i * shots + s) * workers + rank]: step i, shot s, band rank
            nb = 0
            for k in range(units(f.shots[1], w, workers, alone)):
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(band(f, s, rank, group))
                for i in range(count):
                    slot = slots[i]
                    if slot >= 0:
                        _copy_state(g, slot, (top - i) % 2, False, s, rank, group)
                    sq, nb = _reverse_step(g, top - i, surface, bar, rank, group, nb)
                    norms[(i * f.shots[1] + s) * workers + rank] = sq

    @ti.kernel
    def receivers_adjoint(arena: ti.template(), lay: lay_t, tracesg: r4, rec_pos: pos,
                          rec_w: r5, t: ti.i32, s1: ti.template()):
        f = ti.static(bundle(arena, arena, lay, tracesg=tracesg, rec_pos=rec_pos, rec_w=rec_w,
                             s1=s1, serial=True))
        _receivers(f, t, True)

    @ti.kernel
    def copy_state(arena: ti.template(), pools: ti.template(), lay: lay_t, slot: ti.i32,
                   lvl: ti.i32, s1: ti.template(), save: ti.template()):
        f = ti.static(bundle(arena, pools, lay, s1=s1, serial=False))
        for s in range(f.shots[1]):
            _copy_state(f, slot, lvl, save, s, 0, 1)

    return {name: lean(k) for name, k in (("forward", forward), ("reverse", reverse),
                                            ("receivers_adjoint", receivers_adjoint),
                                            ("copy_state", copy_state))}

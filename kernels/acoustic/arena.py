"""The arena engine's kernels: every vector array a view into one field, compiled once.

The helpers here run as plain Python while a kernel compiles; their Taichi arguments and
results (fields, kernel arguments, expressions) are typed ``Any``: Taichi ships no type
hints.
"""

import functools
from collections.abc import Sequence
from typing import Any, TypeAlias, cast

import taichi as ti
from taichi.lang import impl
from taichi.lang.expr import Expr
from taichi.lang.matrix import Matrix

from diffsim.kernels.acoustic._blocks import Arrays
from diffsim.kernels.acoustic.adjoint import _adjoint_a, _adjoint_b
from diffsim.kernels.acoustic.forward import _copy_state, _psi_pass, _update_pass
from diffsim.kernels.acoustic.points import (
    inject_points,
    receiver_points_adjoint,
    record_points,
    source_points_adjoint,
)
from diffsim.kernels.common import cut, sync, unit, units


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

    def __init__(self, field: Any, offset: Any, shape: Sequence[Any]) -> None:
        self.field, self.offset, self.shape = field, offset, tuple(shape)

    def __getitem__(self, index: Any) -> Any:
        index = index if isinstance(index, tuple) else (index,)
        parts: list[Any] = []
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


def _scalars(vector: Any, count: int) -> tuple[Any, ...]:
    """Entries ``0 … count-1`` of an argument as scalar kernel locals (plain Python).

    Loaded once at the kernel's start: an ndarray element read inside the loops would be
    reloaded after every store, and a vector local indexed there is slower than scalars.
    """
    return tuple(impl.expr_init(impl.subscript(None, vector, k)) for k in range(count))


def _views(arena: Any, pools: Any, layout: Sequence[Any], ndim: int
           ) -> dict[str, View | tuple[View, ...]]:
    """The arena arrays as :class:`View`s from the layout entries (plain Python).

    The checkpoint pools (``pool_*``) are views into ``pools``, a second arena.
    """
    out: dict[str, View | tuple[View, ...]] = {}
    k = 0
    for name, axes in arena_arrays(ndim):
        field = pools if name.startswith("pool_") else arena
        out[name] = View(field, layout[k], layout[k + 1:k + 1 + axes])
        k += 1 + axes
    for name in ("psi", "zeta", "psig", "zetag", "pbar", "pool_psi", "pool_zeta"):
        out[name] = tuple(cast(View, out.pop(f"{name}{d}")) for d in range(ndim))
    return out


def _arrays(arena: Any, pools: Any, layout: Sequence[Any], c1: tuple[float, ...],
            c2: tuple[float, ...], ndim: int, real: Any, lanes: int, sponge: bool, serial: bool,
            xs: Any, pm0: Any, pm1: Any, ih: tuple[float, ...], **items: Any) -> Arrays:
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
    u = cast(View, views["u"])
    halo = len(c2) - 1
    space_rows = tuple((halo, u.shape[2 + d] - halo) for d in range(ndim - 1))
    return Arrays(xs=xs, pm=(pm0, pm1)[:ndim - 1], inv_h=ih, rows=((0, u.shape[1]), *space_rows),
                  space_rows=space_rows, shots=(0, u.shape[1]), kcg_per_shot=True, c1=c1,
                  c2=c2, ndim=ndim, dtype=real, W=lanes,
                  sponge=sponge, serial=serial, **views, **items)


def _band(f: Arrays, s: Any, rank: Any, group: Any) -> Arrays:
    """``f`` restricted to shot ``s`` and band ``rank`` of ``group`` (plain Python).

    The band is part ``rank`` of ``group`` of the first spatial axis's rows (all of
    them for a group of one); sources inject only into it (``band``); the worker
    records part ``rank`` of the receivers (``recs``) and, in the adjoint, of the
    sources' gradients (``srcs``).
    """
    shot = (s, s + 1)
    z0, z1 = f.space_rows[0]
    lo, hi = z0 + cut(z1 - z0, rank, group), z0 + cut(z1 - z0, rank + 1, group)
    rows = ((lo, hi), *f.space_rows[1:])
    nr, ns = f.rec_pos.shape[1], f.src_pos.shape[1]
    return Arrays(**{**f.__dict__, "rows": (shot, *rows), "space_rows": rows, "shots": shot,
                     "band": (lo, hi), "recs": (cut(nr, rank, group), cut(nr, rank + 1, group)),
                     "srcs": (cut(ns, rank, group), cut(ns, rank + 1, group))})


@functools.cache
def arena_kernels(ndim: int, precision: str, lanes: int) -> dict[str, Any]:
    """The arena engine's kernels for one dimension and precision.

    The vector arrays live in the arena, a 1D vector field passed as a template and
    addressed through the layout vector ``lay`` (:func:`arena_arrays`); everything else
    is an ndarray (NumPy on the CPU) or a scalar, but for the inverse grid spacings ``ih``
    (a template: as run-time values they made the update twice as slow; the caller
    passes ratios to one reference spacing, so every square grid shares them). So each
    kernel compiles once per arena pair and (order, spacing ratios, boundary), and
    serves every grid, shot count, receiver count, record length and thread count that
    fits.

    ``forward`` and ``reverse`` run as ``workers`` tasks that share the shots (the first
    ``alone`` dealt whole, the rest in bands of rows, :mod:`diffsim._parallel`), with
    the barrier counter ``bar``:

    * ``forward``: steps ``start … stop-1`` in one launch, saving ``x[t]`` (with
      ``save``) in checkpoint slot ``saves[t - start]`` (``-1``: no save) for ``t`` in
      ``start … stop``. ``pools`` is the checkpoint arena (any field without ``save``).
    * ``reverse``: the reverse of steps ``top, top-1, …`` (``count`` of them), restoring
      ``x[t]`` from pool slot ``slots[i]`` first (``-1``: live), the squared costate norm
      of step ``i``, shot ``s`` into ``norms[(i * shots + s) * workers + w]`` (band
      ``w``; 0 for a shot dealt whole).
    * ``receiver_adjoint``: the receivers' adjoint at time ``t`` into ``ug[lvl]``.
    * ``read`` / ``write`` / ``fill``: elements ``offset …`` of the arena to, from or
      with NumPy (vectors of ``lanes``).
    """
    # Taichi types of the kernels' arguments; as TypeAliases they are Any to a type checker
    real = ti.f64 if precision == "f64" else ti.f32
    vec: TypeAlias = ti.types.vector(lanes, real)
    nl = layout_size(ndim)
    lay_t: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    flat: TypeAlias = ti.types.ndarray(dtype=vec, ndim=1)
    prof: TypeAlias = ti.types.ndarray(dtype=real, ndim=2)
    r3: TypeAlias = ti.types.ndarray(dtype=real, ndim=3)
    r4: TypeAlias = ti.types.ndarray(dtype=real, ndim=4)
    pos: TypeAlias = ti.types.ndarray(dtype=ti.types.vector(ndim, ti.i32), ndim=2)
    i1: TypeAlias = ti.types.ndarray(dtype=ti.i32, ndim=1)
    f1: TypeAlias = ti.types.ndarray(dtype=ti.f64, ndim=1)
    iv4: TypeAlias = ti.types.vector(4, ti.i32)
    const = dict(ndim=ndim, real=real, lanes=lanes)

    @ti.kernel
    def forward(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                pa: prof, pb: prof, amp: r3, traces: r3, src_pos: pos, src_w: r4, rec_pos: pos,
                rec_w: r4, saves: i1, xs: iv4, pm0: iv4, pm1: iv4, ih: ti.template(),
                scale: real, start: ti.i32, stop: ti.i32, workers: ti.i32, alone: ti.i32,
                c1: ti.template(), c2: ti.template(), sponge: ti.template(),
                save: ti.template()):
        f = ti.static(_arrays(
            arena, pools, _scalars(lay, nl), c1, c2, sponge=sponge, serial=True, xs=xs,
            pm0=pm0, pm1=pm1, ih=ih, pa=pa, pb=pb, amp=amp, traces=traces, src_pos=src_pos,
            src_w=src_w, rec_pos=rec_pos, rec_w=rec_w, scale=scale, **const))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            nb = 0  # barriers passed
            for k in range(units(f.u.shape[1], w, workers, alone)):
                # one shot whole (a group of one: its wavefield stays in this core's
                # cache) or this worker's band of a shot shared by all (a barrier after
                # each pass); either way the same code, so the same bits
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(_band(f, s, rank, group))
                for t in range(start, stop + 1):
                    if ti.static(save):
                        slot = saves[t - start]
                        if slot >= 0:
                            _copy_state(g, slot, (t + 2) % 3, t % 3, t % 2, True, rank, group)
                    if t < stop:
                        _psi_pass(g, t % 3, t % 2, (t + 1) % 2)
                        nb = sync(bar, group, nb)
                        _update_pass(g, (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2, t)
                        inject_points(g, (t + 1) % 3, t)  # into this band
                        nb = sync(bar, group, nb)
                        record_points(g, (t + 1) % 3, t + 1)  # this worker's receivers

    @ti.kernel
    def reverse(arena: ti.template(), pools: ti.template(), bar: ti.template(), lay: lay_t,
                pa: prof, pb: prof, near: prof, ampg: r3, tracesg: r3, src_pos: pos,
                src_w: r4, rec_pos: pos, rec_w: r4, slots: i1, norms: f1, xs: iv4,
                xs_near: iv4, pm0: iv4, pm1: iv4, ih: ti.template(), scale: real, top: ti.i32,
                count: ti.i32, workers: ti.i32, alone: ti.i32, c1: ti.template(),
                c2: ti.template(), sponge: ti.template()):
        f = ti.static(_arrays(
            arena, pools, _scalars(lay, nl), c1, c2, sponge=sponge, serial=True, xs=xs,
            pm0=pm0, pm1=pm1, ih=ih, pa=pa, pb=pb, near=near, ampg=ampg, tracesg=tracesg,
            src_pos=src_pos, src_w=src_w, rec_pos=rec_pos, rec_w=rec_w, scale=scale,
            xs_near=xs_near, **const))
        bar[0] = 0
        ti.loop_config(block_dim=1)
        for w in range(workers):
            # Shot by shot (as the forward); every shot sums its own kc gradient over the
            # steps in reverse order, so all schedules give the same bits. The squared
            # costate norm of step i, shot s, band `rank` goes to norms[(i * shots + s) *
            # workers + rank] (the host zeroes the others).
            nb = 0
            for k in range(units(f.u.shape[1], w, workers, alone)):
                s, rank, group = unit(k, w, workers, alone)
                g = ti.static(_band(f, s, rank, group))
                for i in range(count):
                    t = top - i
                    slot = slots[i]
                    if slot >= 0:
                        _copy_state(g, slot, (t + 2) % 3, t % 3, t % 2, False, rank, group)
                    receiver_points_adjoint(g, (t + 1) % 3, t + 1)  # into this band
                    nb = sync(bar, group, nb)
                    _adjoint_a(g, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2)
                    nb = sync(bar, group, nb)
                    sq = _adjoint_b(g, (t + 2) % 3, t % 3, (t + 1) % 3, t % 2, (t + 1) % 2)
                    source_points_adjoint(g, (t + 1) % 3, t)  # this worker's sources
                    norms[(i * f.u.shape[1] + s) * workers + rank] = sq
                    nb = sync(bar, group, nb)

    @ti.kernel
    def receiver_adjoint(arena: ti.template(), lay: lay_t, tracesg: r3, rec_pos: pos,
                         rec_w: r4, lvl: ti.i32, t: ti.i32):
        f = ti.static(Arrays(ug=_views(arena, arena, _scalars(lay, nl),
                                       ndim)["ug"], tracesg=tracesg, rec_pos=rec_pos,
                             rec_w=rec_w, ndim=ndim, dtype=real, W=lanes,
                             shots=(0, rec_pos.shape[0])))
        receiver_points_adjoint(f, lvl, t)

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

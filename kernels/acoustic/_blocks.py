"""Lane and row helpers shared by the forward and adjoint blocks (see the package docstring)."""

from typing import TYPE_CHECKING, Any

import taichi as ti


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

    if TYPE_CHECKING:
        # The attributes are whatever ``items`` held (Taichi arrays, tuples, constants).
        def __getattr__(self, name: str) -> Any: ...


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



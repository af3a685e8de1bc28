"""Variable-density acoustics on the cell engine: :class:`DensityStepper`.

Equation: ``p_tt = rho c^2 div(1/rho grad p) + s(t) delta(x - x_s)`` (the source term as
in the constant-density engine, so a constant density gives the same waves), leapfrog in
time, staggered first differences of order 2-8 in space (:data:`STAGGERED`), the buoyancy
``1/rho`` averaged onto the half points, C-PML (memory at the half points for the inner
derivative, at the cells for the outer one) or a sponge, free surface, Hicks points.
The kernels are in :mod:`diffsim.kernels.acoustic.cells`: the arrays live in the
process arena in the lane layout of the constant-density engine, so the kernels compile
once per process for each dimension, order, precision and boundary kind, whatever the
grid.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Unpack

import numpy as np
from numpy.typing import ArrayLike

from diffsim._parallel import barrier_field, split
from diffsim._runtime import ensure_init, np_real
from diffsim._tape import Stepper
from diffsim._validate import as_array
from diffsim.acoustic._arena import ArenaArrays, _arena
from diffsim.acoustic._setup import (
    STAGGERED,
    Options,
    _AcousticSetup,
    check_positive_model,
)
from diffsim.acoustic.boundaries import CPML
from diffsim.kernels.acoustic import arena_kernels
from diffsim.kernels.acoustic.cells import cell_arrays, cell_kernels

__all__ = ["DensityStepper", "check_density"]


def check_density(density: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """``density`` as float64, checked: the model's shape, finite, > 0 kg/m^3.

    Values below 100 look like g/cm^3 (water is 1000 kg/m^3): a warning says so.
    """
    rho = np.asarray(density, dtype=np.float64)
    if rho.shape != tuple(shape):
        raise ValueError(f"density has shape {rho.shape}; it must match the velocity model "
                         f"{tuple(shape)} (kg/m^3 on the same grid)")
    check_positive_model("density", rho, "kg/m^3")
    if float(rho.max()) < 100.0:
        warnings.warn(f"density peaks at {float(rho.max()):.4g}: diffsim takes kg/m^3 (water "
                      "1000, rock 2000-3000); values like 2.2 are g/cm^3, multiply by 1000",
                      stacklevel=3)
    return rho


class _CellEngine(_AcousticSetup, ArenaArrays):
    """The cell engine's storage: its arrays in the process arena, lane layout."""

    def _layout_arrays(self) -> tuple[tuple[str, int], ...]:
        return cell_arrays(self.geometry.ndim)

    def _cells(self, extra: Sequence[str]) -> None:
        """Place the forward arrays and ``extra`` ones, upload the constants (after :meth:`_setup`)."""
        rt = ensure_init()
        g = self.geometry
        real = self._real = np_real()
        w, nb, nd = self.lanes, self.blocks, g.ndim
        rows = (self.shots, *g.padded[:-1], nb)
        grid = (*g.padded[:-1], nb)
        every = {"p": (3, *rows), "psi": (2, nd, *rows), "zeta": (2, nd, *rows),
                 "flux": (nd, *rows), "kk": grid, "sg": grid, "buoy": (nd, *grid), "xp": (4, nb),
                 "pg": (3, *rows), "psig": (2, nd, *rows), "zetag": (2, nd, *rows),
                 "qg": (nd, *rows), "phig": (nd, *rows), "kkg": rows, "buoyg": (nd, *rows),
                 "dp": (3, *rows), "dpsi": (2, nd, *rows), "dzeta": (2, nd, *rows),
                 "tot": rows, "dkk": grid}
        names = ("p", "psi", "zeta", "flux", "kk", "sg", "buoy", "xp", *extra)
        io = arena_kernels(nd, rt.precision, w)
        self._kernels = {**{k: io[k] for k in ("read", "write", "fill", "copy")},
                         **cell_kernels(nd, rt.precision, w)}
        self._offset, self._shapes = {}, {}
        self._arena = _arena(rt.precision, w)
        self._pools = _arena(rt.precision, w, "pools")
        self._base = self._place(self._arena, {k: every[k] for k in names})
        weakref.finalize(self, self._arena.release, self._base)
        self._pool_region = None
        self._pool_bases = []
        weakref.finalize(self, self._release_pools, self._pools, self._pool_bases)
        self._set_layout()
        self._fill(*names)
        self._cell_shape = rows
        # one launch per range of steps, its shots and rows shared by worker tasks
        self._split = split(self.shots, int(np.prod(rows[1:])) * w)
        self._bar = barrier_field()
        self._norm_parts = self.shots * self._split.workers
        # Units of the first spacing (see the kernels): compile-time ratios, KK / h_ref^2.
        self._h_ref = g.spacing[0]
        self._ih = tuple(self._h_ref / h for h in g.spacing)
        self._s1 = STAGGERED[self.order]
        self._write("sg", self._pack(self._damp))
        self._profiles_cells()
        (sp, sw), (rp, rw) = self._points
        self.src_pos, self.rec_pos = sp, rp
        self.src_w, self.rec_w = sw.astype(real), rw.astype(real)
        self.amp = np.array(self._amp, dtype=real)
        self.traces = np.zeros((self.steps + 1, self.shots, self.receivers), dtype=real)
        self._no_saves = np.full(1, -1, dtype=np.int32)

    def _profiles_cells(self) -> None:
        """Row profiles ``rp``, the x profiles ``xp`` and the x-layer block ranges ``xl``."""
        g = self.geometry
        nd, nx, nb = g.ndim, g.padded[-1], self.blocks
        rp = np.zeros((4, max(nd - 1, 1), max(g.padded)))
        xp = np.zeros((4, nb, self.lanes))
        xl = []
        for i, offset in enumerate((0.0, 0.5)):
            if isinstance(self.boundary, CPML):
                a, b = self.boundary.profiles(g, *self._tuning, self.dt, offset)
            else:
                a = b = np.zeros((nd, max(g.padded)))
            rp[2 * i:2 * i + 2, :nd - 1] = a[:nd - 1], b[:nd - 1]
            xp[2 * i], xp[2 * i + 1] = self._pack(a[-1, :nx]), self._pack(b[-1, :nx])
            # blocks [1, lo) and [hi, nb - 1) cover every block with a nonzero lane
            hit = np.flatnonzero((xp[2 * i] != 0).any(axis=1))
            low, high = hit[hit < nb // 2], hit[hit >= nb // 2]
            lo = int(low.max()) + 1 if low.size else 1
            hi = int(high.min()) if high.size else nb - 1
            xl += [lo, hi]
        self._rp = np.ascontiguousarray(rp, dtype=self._real)
        self._write("xp", xp)
        self._xl = tuple(xl)

    def _launch_forward(self, start: int, stop: int, saves: np.ndarray, *, staggered: bool,
                        born: bool = False, save: bool = False) -> None:
        self._kernels["forward"](
            self._arena.field, self._pool_field(), self._bar, self._layout, self._rp, self.amp,
            self.traces, self.src_pos, self.src_w, self.rec_pos, self.rec_w, saves, self._xl,
            self._ih, self._scale, start, stop, *self._split, self._s1, self._c1, self._c2,
            staggered, self.sponge, born, save)

    def _run(self, start: int, stop: int, *, staggered: bool, born: bool = False) -> None:
        """Steps ``start … stop-1`` without saves, in one launch."""
        self._launch_forward(start, stop, self._no_saves, staggered=staggered, born=born)

    def _set_coefficients(self, c: np.ndarray, rho: np.ndarray) -> None:
        """``KK = dt^2 rho c^2 / h_ref^2`` (zero on the frame) and the half-point buoyancies."""
        kk = self.dt**2 * rho * c * c * self._frame / self._h_ref**2
        self._write("kk", self._pack(kk))
        inv = 1.0 / rho
        buoy = np.stack([0.5 * (inv + _shift_up(inv, d)) for d in range(self.geometry.ndim)])
        self._write("buoy", self._pack(buoy))

    def wavefield(self, t: int) -> np.ndarray:
        """The pressure at time level ``t`` on the model grid, ``[shot, *model shape]``.

        Valid while ``x[t]`` is live, e.g. right after ``advance(t - 1)`` in a rollout.
        """
        return self._crop(self._unpack(self._read("p", t % 3)))

    def destroy(self) -> None:
        """Give the arena space back and drop the checkpoints; the object is unusable after."""
        self._arena.release(self._base)
        self._release_pools(self._pools, self._pool_bases)
        self._pool_bases.clear()
        self._pool_region = None


class DensityStepper(_CellEngine, Stepper):
    """Variable-density acoustic waves of a batch of shots as a differentiable stepper.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` P velocity in m/s, finite and > 0.
        density: the same shape, kg/m^3, finite and > 0.
        spacing, dt, wavelet, sources, receivers: as :class:`AcousticStepper`.
        **options: ``order`` (2-8), ``pml_width``, ``free_surface``, ``boundary``,
            ``interpolation``, ``pml_velocity``, ``pml_frequency`` as
            :class:`AcousticStepper` (``adjoint`` must be ``"hand"``, ``engine``
            ``"auto"`` or ``"cells"``).

    Parameters (gradients): ``"velocity"`` and ``"density"`` (padded grid; :meth:`fold`
    sums the padding onto the model's edge) and ``"wavelet"`` ``[shot, source, nt]``.
    Output ``"receivers"`` ``[nt, shot, receiver]``. The reverse step is the hand-written
    adjoint of :mod:`diffsim.kernels.acoustic.cells` (gathers, no atomics: every schedule
    gives the same bits). A launch runs a whole range of forward or reverse steps as
    worker tasks on every thread that has work (:mod:`diffsim._parallel`).
    """

    _density_scheme = True

    def __init__(self, velocity: ArrayLike, density: ArrayLike, spacing: object, dt: float,
                 wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
                 engine: str = "auto", **options: Unpack[Options]) -> None:
        if engine not in ("auto", "cells"):
            raise ValueError(f"engine={engine!r}: variable density runs on the cell engine only; "
                             "drop engine= (or use 'cells')")
        if options.get("adjoint", "hand") != "hand":
            raise ValueError(f"adjoint={options['adjoint']!r}: the variable-density engine has "
                             "the hand-written adjoint only; drop adjoint= (or use 'hand')")
        vel = np.asarray(velocity, dtype=np.float64)
        self._setup(vel, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                    np.asarray(receivers), **options)
        rho = check_density(density, self.geometry.shape)
        self._cells(("pg", "psig", "zetag", "qg", "phig", "kkg", "buoyg"))
        self.ampg = np.zeros_like(self.amp)
        self.tracesg = np.zeros_like(self.traces)
        self.norms = np.zeros(max(self.steps, 1), dtype=np.float64)
        self._slots = 0
        self._density = self.pad(rho)
        self.set_param("velocity", self._velocity)
        self.set_param("density", self._density)
        self.set_param("wavelet", self._amp)

    # -- parameters ---------------------------------------------------------------------
    def _coefficients(self) -> None:
        self._set_coefficients(self._velocity, self._density)

    def set_param(self, name: str, value: ArrayLike) -> None:
        """Replace ``"velocity"`` or ``"density"`` (padded grid) or ``"wavelet"``; no recompilation."""
        if name == "velocity":
            self._velocity = self._check_padded_velocity(value).copy()
            self._coefficients()
        elif name == "density":
            arr = as_array("parameter 'density'", value, self.geometry.padded, positive=True)
            self._density = arr.copy()
            self._coefficients()
        elif name == "wavelet":
            self.amp[...] = self._check_wavelet(value)
        else:
            raise ValueError(f"unknown parameter {name!r}; this stepper has ['density', "
                             "'velocity', 'wavelet']")

    def parameters(self) -> dict[str, np.ndarray]:
        """``"velocity"``, ``"density"`` (padded grid) and ``"wavelet"``."""
        return {"velocity": self._velocity.copy(), "density": self._density.copy(),
                "wavelet": self.amp.copy()}

    def gradients(self) -> dict[str, np.ndarray]:
        """``d loss / d parameter``; velocity and density on the padded grid."""
        gkk = self._unpack(self._read("kkg").astype(np.float64).sum(axis=0)) / self._h_ref**2
        gb = self._unpack(self._read("buoyg").astype(np.float64).sum(axis=1))
        c, rho = self._velocity, self._density
        ginv = np.zeros_like(rho)
        for d in range(self.geometry.ndim):
            ginv += 0.5 * (gb[d] + _shift_up_adjoint(gb[d], d))
        dt2 = self.dt**2
        return {"velocity": gkk * (2.0 * dt2) * rho * c * self._frame,
                "density": gkk * dt2 * c * c * self._frame - ginv / (rho * rho),
                "wavelet": self.ampg.astype(np.float64)}

    def outputs(self) -> dict[str, np.ndarray]:
        """``"receivers"``: the traces ``[nt, shot, receiver]`` (a copy)."""
        return {"receivers": self.traces.copy()}

    # -- Stepper protocol ---------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: two pressure levels and one level of the PML memory."""
        cells = int(np.prod(self._cell_shape)) * self.lanes
        return (2 + 2 * self.geometry.ndim) * cells * np.dtype(self._real).itemsize

    def allocate_checkpoints(self, slots: int) -> None:
        """Room for ``slots`` stored states in the process's checkpoint arena."""
        if slots <= self._slots:
            return
        nd = self.geometry.ndim
        self._place_pools({"pool_p": (slots, 2, *self._cell_shape),
                           "pool_psi": (slots, 1, nd, *self._cell_shape),
                           "pool_zeta": (slots, 1, nd, *self._cell_shape)})
        self._slots = slots

    def reset(self) -> None:
        """Zero the state; the traces at time 0 are zero."""
        self._fill("p", "psi", "zeta")
        self.traces[0] = 0

    def advance(self, step: int) -> None:
        """Run step ``step`` and record the receivers at ``step + 1``."""
        self.advance_range(step, step + 1, {})

    def _launch_range(self, start: int, stop: int, marks: np.ndarray) -> None:
        self._launch_forward(start, stop, marks, staggered=True,
                             save=self._pool_region is not None)

    def _levels(self, step: int) -> list[tuple[str, int, int]]:
        """``(array, ring level, checkpoint level)`` of every part of ``x[step]``."""
        return [("p", (step + 2) % 3, 0), ("p", step % 3, 1), ("psi", step % 2, 0),
                ("zeta", step % 2, 0)]

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""
        for name, level, j in self._levels(step):
            self._copy_level(name, level, slot, j, True)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live."""
        for name, level, j in self._levels(step):
            self._copy_level(name, level, slot, j, False)

    def live_is_finite(self, step: int) -> bool:
        """Whether the newest pressure level is finite (a blow-up shows there first)."""
        return bool(np.isfinite(self._read("p", step % 3)).all())

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``p`` (``p[t-1]``, ``p[t]``), ``psi`` and ``zeta`` (one level each), lanes last."""
        nd, dt = self.geometry.ndim, np.dtype(self._real)
        return {"p": ((2, *self._cell_shape, self.lanes), dt),
                "psi": ((1, nd, *self._cell_shape, self.lanes), dt),
                "zeta": ((1, nd, *self._cell_shape, self.lanes), dt)}

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out``."""
        for name, level, j in self._levels(step):
            self._read(name, level, out=out[name][j])

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``x[step]`` (arrays shaped by :meth:`state_spec`) live."""
        for name, level, j in self._levels(step):
            self._write(name, values[name][j], level)

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint and take ``d loss / d traces`` ``[nt, shot, receiver]``."""
        unknown = set(cotangents) - {"receivers"}
        if unknown:
            raise ValueError(f"cotangents for unknown outputs {sorted(unknown)}; this stepper's "
                             "outputs are ['receivers']")
        self._fill("pg", "psig", "zetag", "qg", "phig", "kkg", "buoyg")
        self.ampg.fill(0)
        self.tracesg.fill(0)
        if "receivers" in cotangents:
            arr = as_array("cotangent for output 'receivers'", cotangents["receivers"],
                           self.tracesg.shape)
            self.tracesg[...] = arr

    def _launch_reverse(self, top: int, count: int, slots: np.ndarray) -> None:
        self._kernels["reverse"](
            self._arena.field, self._pool_field(), self._bar, self._layout, self._rp,
            self.ampg, self.tracesg, self.src_pos, self.src_w, self.rec_pos, self.rec_w, slots,
            self.norms, self._xl, self._ih, self._scale, top, count, *self._split, self._s1,
            self._c1, self._c2, self.sponge)

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the receivers' adjoint at time 0; return ``|lambda[0]|``."""
        self._kernels["receiver_adjoint"](self._arena.field, self._layout, self.tracesg,
                                          self.rec_pos, self.rec_w, 0, 0)
        if not measure:
            return math.nan
        return math.sqrt(sum(float(np.sum(np.square(self._read("pg", lvl), dtype=np.float64)))
                             for lvl in (2, 0)))

    def destroy(self) -> None:
        """Give the arena space back and drop the checkpoints; the stepper is unusable after."""
        super().destroy()
        self._slots = 0


def _shift_up(a: np.ndarray, axis: int) -> np.ndarray:
    """``out[j] = a[j + 1]`` along ``axis``, the last entry repeated."""
    out = np.roll(a, -1, axis=axis)
    last = _index(a.ndim, axis, -1)
    out[last] = a[last]
    return out


def _index(ndim: int, axis: int, i: int) -> tuple[slice | int, ...]:
    """Index of entry ``i`` along ``axis`` of an ``ndim``-D array."""
    return tuple(i if k == axis else slice(None) for k in range(ndim))


def _shift_up_adjoint(g: np.ndarray, axis: int) -> np.ndarray:
    """Adjoint of :func:`_shift_up`: ``out[j] = g[j - 1]`` (0 at ``j = 0``), ``+ g[-1]`` at the end."""
    out = np.roll(g, 1, axis=axis)
    out[_index(g.ndim, axis, 0)] = 0.0
    last = _index(g.ndim, axis, -1)
    out[last] += g[last]
    return out

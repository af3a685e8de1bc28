"""Variable-density acoustics on the cell engine: :class:`DensityStepper`.

Equation: ``p_tt = rho c^2 div(1/rho grad p) + s(t) delta(x - x_s)`` (the source term as
in the constant-density engine, so a constant density gives the same waves), leapfrog in
time, staggered first differences of order 2-8 in space (:data:`STAGGERED`), the buoyancy
``1/rho`` averaged onto the half points, C-PML (memory at the half points for the inner
derivative, at the cells for the outer one) or a sponge, free surface, Hicks points.
The kernels are in :mod:`diffsim.kernels.acoustic.cells`: every array is a Taichi
ndarray passed at launch, so they compile once per process for each dimension, order
and precision, whatever the grid.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Unpack

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import ensure_init, np_real
from diffsim._tape import Stepper
from diffsim._validate import as_array
from diffsim.acoustic._setup import (
    FD_COEFFICIENTS,
    STAGGERED,
    Options,
    _AcousticSetup,
    check_positive_model,
)
from diffsim.acoustic.boundaries import CPML
from diffsim.kernels.acoustic import cells as K

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


class _CellEngine(_AcousticSetup):
    """The cell engine's storage: Taichi ndarrays for the state, coefficients and points."""

    def _cells(self) -> None:
        """Allocate the forward arrays and upload the constants (after :meth:`_setup`)."""
        g = self.geometry
        real = ti.f64 if ensure_init().precision == "f64" else ti.f32
        self._real = np_real()
        self._ti_real = real
        n, s, d = g.padded, self.shots, g.ndim
        self.p = ti.ndarray(real, (3, s, *n))
        self.psi = ti.ndarray(real, (2, d, s, *n))
        self.zeta = ti.ndarray(real, (2, d, s, *n))
        self.flux = ti.ndarray(real, (d, s, *n))
        self.kk = ti.ndarray(real, n)
        self.buoy = ti.ndarray(real, (d, *n))
        self.sg = ti.ndarray(real, n)
        self.sg.from_numpy(self._damp.astype(self._real))
        self.ih = ti.ndarray(real, (d,))
        self.ih.from_numpy(np.array(self._inv_h, dtype=self._real))
        self._s1 = STAGGERED[self.order]
        self._c1, self._c2 = FD_COEFFICIENTS[self.order]
        self._halo = g.halo
        width = max(g.padded)
        self._prof = {}
        if isinstance(self.boundary, CPML):
            for name, offset in (("cell", 0.0), ("half", 0.5)):
                a, b = self.boundary.profiles(g, *self._tuning, self.dt, offset)
                self._prof[name] = (a, b)
        else:
            zeros = np.zeros((d, width))
            self._prof = {"cell": (zeros, zeros), "half": (zeros, zeros)}
        self._prof_nd = {}
        for name, (a, b) in self._prof.items():
            pair = []
            for arr in (a, b):
                f = ti.ndarray(real, (d, width))
                f.from_numpy(arr.astype(self._real))
                pair.append(f)
            self._prof_nd[name] = tuple(pair)
        self._pts = []
        for pos, w in self._points:
            pf = ti.Vector.ndarray(d, ti.i32, pos.shape[:2])
            pf.from_numpy(pos)
            wf = ti.ndarray(real, w.shape)
            wf.from_numpy(w.astype(self._real))
            self._pts.append((pf, wf))
        self.amp = ti.ndarray(real, self._amp.shape)
        self.traces = ti.ndarray(real, (self.steps + 1, s, self.receivers))
        self._dummy = ti.ndarray(real, (1,) * (g.ndim + 1))

    def _zero(self, *arrays: Any) -> None:
        for a in arrays:
            K.zero(a)

    def _step_kernels(self, p: Any, psi: Any, zeta: Any, step: int, *, staggered: bool,
                      tot: Any = None, dkk: Any = None, keep: bool = False,
                      born: bool = False) -> None:
        """Forward step ``step`` of one wavefield (no sources, no receivers)."""
        prv, cur, nxt = (step + 2) % 3, step % 3, (step + 1) % 3
        src, dst = step % 2, (step + 1) % 2
        first = self._s1 if staggered else self._c1
        ah, bh = self._prof_nd["half" if staggered else "cell"]
        pa, pb = self._prof_nd["cell"]
        K.memory(p, psi, self.flux, self.buoy, ah, bh, self.ih, cur, src, dst, first, staggered)
        K.update(p, psi, zeta, self.flux, self.kk, self.sg, pa, pb, self.ih,
                 self._dummy if tot is None else tot, self._dummy if dkk is None else dkk,
                 prv, cur, nxt, src, dst, first, self._c2, self._halo, staggered, self.sponge,
                 keep, born)

    def _set_coefficients(self, c: np.ndarray, rho: np.ndarray) -> None:
        """``KK = dt^2 rho c^2`` (zero on the frame) and the half-point buoyancies, padded grid."""
        self.kk.from_numpy((self.dt**2 * rho * c * c * self._frame).astype(self._real))
        inv = 1.0 / rho
        buoy = np.stack([0.5 * (inv + _shift_up(inv, d)) for d in range(self.geometry.ndim)])
        self.buoy.from_numpy(buoy.astype(self._real))

    def wavefield(self, t: int) -> np.ndarray:
        """The pressure at time level ``t`` on the model grid, ``[shot, *model shape]``.

        Valid while ``x[t]`` is live, e.g. right after ``advance(t - 1)`` in a rollout.
        """
        return self._crop(self.p.to_numpy()[t % 3].astype(np.float64))


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
    gives the same bits).
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
        self._cells()
        g = self.geometry
        real, s, n, d = self._ti_real, self.shots, g.padded, g.ndim
        self.pg = ti.ndarray(real, (3, s, *n))
        self.psig = ti.ndarray(real, (2, d, s, *n))
        self.zetag = ti.ndarray(real, (2, d, s, *n))
        self.qg = ti.ndarray(real, (d, s, *n))
        self.phig = ti.ndarray(real, (d, s, *n))
        self.kkg = ti.ndarray(real, (s, *n))
        self.buoyg = ti.ndarray(real, (d, s, *n))
        self.ampg = ti.ndarray(ti.f64, self._amp.shape)
        self.tracesg = ti.ndarray(real, (self.steps + 1, s, self.receivers))
        self._pool: dict[str, Any] = {}
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
            self.amp.from_numpy(self._check_wavelet(value).astype(self._real))
        else:
            raise ValueError(f"unknown parameter {name!r}; this stepper has ['density', "
                             "'velocity', 'wavelet']")

    def parameters(self) -> dict[str, np.ndarray]:
        """``"velocity"``, ``"density"`` (padded grid) and ``"wavelet"``."""
        return {"velocity": self._velocity.copy(), "density": self._density.copy(),
                "wavelet": self.amp.to_numpy()}

    def gradients(self) -> dict[str, np.ndarray]:
        """``d loss / d parameter``; velocity and density on the padded grid."""
        gkk = self.kkg.to_numpy().astype(np.float64).sum(axis=0)
        gb = self.buoyg.to_numpy().astype(np.float64).sum(axis=1)
        c, rho = self._velocity, self._density
        ginv = np.zeros_like(rho)
        for d in range(self.geometry.ndim):
            ginv += 0.5 * (gb[d] + _shift_up_adjoint(gb[d], d))
        dt2 = self.dt**2
        return {"velocity": gkk * (2.0 * dt2) * rho * c * self._frame,
                "density": gkk * dt2 * c * c * self._frame - ginv / (rho * rho),
                "wavelet": self.ampg.to_numpy()}

    def outputs(self) -> dict[str, np.ndarray]:
        """``"receivers"``: the traces ``[nt, shot, receiver]``."""
        return {"receivers": self.traces.to_numpy()}

    # -- Stepper protocol ---------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: two pressure levels and one level of the PML memory."""
        g = self.geometry
        cells = self.shots * int(np.prod(g.padded))
        return (2 + 2 * g.ndim) * cells * np.dtype(self._real).itemsize

    def allocate_checkpoints(self, slots: int) -> None:
        """Room for ``slots`` stored states (device ndarrays)."""
        if slots <= self._slots:
            return
        g = self.geometry
        real, s, n, d = self._ti_real, self.shots, g.padded, g.ndim
        self._pool = {"p": ti.ndarray(real, (2 * slots, s, *n)),
                      "psi": ti.ndarray(real, (slots, d, s, *n)),
                      "zeta": ti.ndarray(real, (slots, d, s, *n))}
        self._slots = slots

    def reset(self) -> None:
        """Zero the state; the traces at time 0 are zero."""
        self._zero(self.p, self.psi, self.zeta)
        K.record(self.p, self.traces, *self._pts[1], 0, 0)

    def advance(self, step: int) -> None:
        """Run step ``step`` and record the receivers at ``step + 1``."""
        self._step_kernels(self.p, self.psi, self.zeta, step, staggered=True)
        nxt = (step + 1) % 3
        K.inject(self.p, self.amp, *self._pts[0], self._scale, nxt, step)
        K.record(self.p, self.traces, *self._pts[1], nxt, step + 1)

    def _levels(self, step: int) -> list[tuple[Any, int, str, int]]:
        """``(live array, level, pool name, pool index offset)`` of the parts of ``x[step]``."""
        return [(self.p, (step + 2) % 3, "p", 0), (self.p, step % 3, "p", 1),
                (self.psi, step % 2, "psi", 0), (self.zeta, step % 2, "zeta", 0)]

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""
        for arr, lvl, name, j in self._levels(step):
            K.copy_levels(arr, lvl, self._pool[name], (2 * slot + j) if name == "p" else slot)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live."""
        for arr, lvl, name, j in self._levels(step):
            K.copy_levels(self._pool[name], (2 * slot + j) if name == "p" else slot, arr, lvl)

    def live_is_finite(self, step: int) -> bool:
        """Whether the newest pressure level is finite (a blow-up shows there first)."""
        return math.isfinite(K.sumsq_level(self.p, step % 3))

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``p`` (``p[t-1]``, ``p[t]``), ``psi`` and ``zeta`` (one level each)."""
        g = self.geometry
        grid = (self.shots, *g.padded)
        dt = np.dtype(self._real)
        return {"p": ((2, *grid), dt), "psi": ((g.ndim, *grid), dt),
                "zeta": ((g.ndim, *grid), dt)}

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out``."""
        p = self.p.to_numpy()
        out["p"][0], out["p"][1] = p[(step + 2) % 3], p[step % 3]
        out["psi"][...] = self.psi.to_numpy()[step % 2]
        out["zeta"][...] = self.zeta.to_numpy()[step % 2]

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``x[step]`` (arrays shaped by :meth:`state_spec`) live."""
        p = self.p.to_numpy()
        p[(step + 2) % 3], p[step % 3] = values["p"][0], values["p"][1]
        self.p.from_numpy(p)
        for name, arr in (("psi", self.psi), ("zeta", self.zeta)):
            full = arr.to_numpy()
            full[step % 2] = values[name]
            arr.from_numpy(full)

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint and take ``d loss / d traces`` ``[nt, shot, receiver]``."""
        unknown = set(cotangents) - {"receivers"}
        if unknown:
            raise ValueError(f"cotangents for unknown outputs {sorted(unknown)}; this stepper's "
                             "outputs are ['receivers']")
        self._zero(self.pg, self.psig, self.zetag, self.qg, self.phig, self.kkg, self.buoyg,
                   self.ampg, self.tracesg)
        if "receivers" in cotangents:
            arr = as_array("cotangent for output 'receivers'", cotangents["receivers"],
                           tuple(self.tracesg.shape))
            self.tracesg.from_numpy(arr.astype(self._real))

    def reverse(self, step: int, slot: int | None, *, measure: bool) -> float:
        """Reverse step ``step`` (the receivers at ``step + 1`` included)."""
        if slot is not None:
            self.restore(step, slot)
        prv, cur, nxt = (step + 2) % 3, step % 3, (step + 1) % 3
        src, dst = step % 2, (step + 1) % 2
        (rp, rw), (sp, sw) = self._pts[1], self._pts[0]
        K.adjoint_receivers(self.pg, self.tracesg, rp, rw, nxt, step + 1)
        ah, bh = self._prof_nd["half"]
        pa, pb = self._prof_nd["cell"]
        K.memory(self.p, self.psi, self.flux, self.buoy, ah, bh, self.ih, cur, src, dst,
                 self._s1, True)
        sq = K.adjoint_update(self.p, self.pg, self.zeta, self.zetag, self.flux, self.qg,
                              self.kk, self.kkg, self.sg, pa, pb, self.ih, prv, cur, nxt, src,
                              dst, self._s1, self._halo, self.sponge)
        K.adjoint_memory(self.p, self.psi, self.psig, self.qg, self.phig, self.buoy,
                         self.buoyg, ah, bh, self.ih, cur, src, dst, self._s1)
        K.adjoint_gather(self.pg, self.phig, self.ih, cur, self._s1, self._halo)
        K.adjoint_sources(self.pg, self.ampg, sp, sw, self._scale, nxt, step)
        return math.sqrt(sq) if measure else math.nan

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the receivers' adjoint at time 0; return ``|lambda[0]|``."""
        K.adjoint_receivers(self.pg, self.tracesg, *self._pts[1], 0, 0)
        if not measure:
            return math.nan
        return math.sqrt(K.sumsq_level(self.pg, 2) + K.sumsq_level(self.pg, 0))

    def destroy(self) -> None:
        """Drop the checkpoints (the ndarrays go with the object)."""
        self._pool = {}
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

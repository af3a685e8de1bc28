"""The elastic engine's stepper: arrays in the process arena, hand-written adjoint.

The kernels are in :mod:`diffsim.kernels.elastic`; they compile once per process for each
dimension, order, precision, source kind and free-surface flag, whatever the grid (the
arrays live in the process arena, as the acoustic cell engine's).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from diffsim._parallel import barrier_field, split
from diffsim._runtime import ensure_init, np_real
from diffsim._tape import Stepper
from diffsim._validate import as_array
from diffsim.acoustic._arena import _arena
from diffsim.acoustic._setup import (
    STAGGERED,
    _as_points,
    _check_cfl,
    check_positive_model,
    dominant_frequency,
)
from diffsim.acoustic.boundaries import CPML
from diffsim.acoustic.density import _CellEngine, _shift_up, _shift_up_adjoint
from diffsim.kernels.acoustic import arena_kernels
from diffsim.kernels.elastic import STATE, elastic_arrays, elastic_kernels, shear_pairs

__all__ = ["ElasticStepper", "check_elastic_model", "check_lame_model", "source_kinds"]

#: Parametrizations: P/S velocities and density, or Lame parameters and density.
PARAMETRIZATIONS = {"velocity": ("vp", "vs", "rho"), "lame": ("lambda", "mu", "rho")}


def source_kinds(ndim: int) -> tuple[str, ...]:
    """Source kinds: explosive (pressure), then forces along z, x (and y in 3D)."""
    return ("explosive", "vertical", "horizontal") + (("crossline",) if ndim == 3 else ())


def _kind_index(kind: str, ndim: int) -> int:
    """0: explosive; ``1 + a``: a force along axis ``a``."""
    return {"explosive": 0, "vertical": 1, "horizontal": ndim, "crossline": 2}[kind]


def output_names(ndim: int) -> tuple[str, ...]:
    """Recorded components in storage order: pressure, then the velocity along each axis."""
    return ("pressure", "vz", "vy", "vx") if ndim == 3 else ("pressure", "vz", "vx")


def check_elastic_model(vp: np.ndarray, vs: np.ndarray, rho: np.ndarray) -> None:
    """Shapes, finiteness and ranges: ``vp, rho > 0``, ``0 <= vs < vp sqrt(3/4)``."""
    for name, arr in (("vs", vs), ("rho", rho)):
        if arr.shape != vp.shape:
            raise ValueError(f"{name} has shape {arr.shape}; it must match vp {vp.shape}")
    check_positive_model("vp", vp, "m/s")
    check_positive_model("rho", rho, "kg/m^3")
    if not np.all(np.isfinite(vs)) or float(vs.min()) < 0:
        raise ValueError(f"vs must be finite and >= 0 m/s (0 in fluids); its smallest value is "
                         f"{float(np.nanmin(vs))!r}")
    ratio = float(np.max(vs / vp))
    if ratio >= np.sqrt(0.75):
        raise ValueError(f"vs/vp reaches {ratio:.4g}; a positive bulk modulus needs vs/vp < "
                         f"{np.sqrt(0.75):.4f} (vp^2 > 4/3 vs^2); check the units and the order "
                         "of vp and vs")


def check_lame_model(lam: np.ndarray, mu: np.ndarray, rho: np.ndarray) -> None:
    """``mu >= 0``, ``lambda + 2/3 mu > 0`` (Pa), ``rho > 0`` (kg/m^3), same shapes."""
    for name, arr in (("mu", mu), ("rho", rho)):
        if arr.shape != lam.shape:
            raise ValueError(f"{name} has shape {arr.shape}; it must match lambda {lam.shape}")
    check_positive_model("rho", rho, "kg/m^3")
    for name, arr in (("lambda", lam), ("mu", mu)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} is not finite at index "
                             f"{tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])}")
    if float(mu.min()) < 0:
        raise ValueError(f"mu must be >= 0 Pa (0 in fluids); its smallest value is "
                         f"{float(mu.min())!r}")
    bulk = lam + 2.0 * mu / 3.0
    if float(bulk.min()) <= 0:
        bad = np.unravel_index(int(np.argmin(bulk)), bulk.shape)
        raise ValueError(f"lambda + 2/3 mu must be > 0 Pa (a positive bulk modulus); it is "
                         f"{float(bulk[bad])!r} at index {tuple(int(i) for i in bad)}")


def _harmonic(mu: np.ndarray, pair: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Harmonic mean of ``mu`` over the 4 cells around each shear point, and its partials.

    Zero where any of the four is zero (fluid); the partial of a zero cell with three
    solid neighbours is 4 (the mean is ``4 mu`` to first order there), else 0.
    """
    i, j = pair
    cells = [mu, _shift_up(mu, i), _shift_up(mu, j), _shift_up(_shift_up(mu, i), j)]
    solid = np.all([c > 0 for c in cells], axis=0)
    inv = sum(np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 0.0) for c in cells)
    mean = np.where(solid, 4.0 / np.where(solid, inv, 1.0), 0.0)
    zeros = sum((c <= 0).astype(int) for c in cells)
    parts = []
    for c in cells:
        safe = np.where(c > 0, c, 1.0)
        parts.append(np.where(solid, mean * mean / (4.0 * safe * safe),
                              np.where((c <= 0) & (zeros == 1), 4.0, 0.0)))
    return mean, parts


def _harmonic_adjoint(g: np.ndarray, parts: list[np.ndarray], pair: tuple[int, int]
                      ) -> np.ndarray:
    """``d loss / d mu`` (cells) from ``d loss / d mean`` (shear points)."""
    i, j = pair
    out = g * parts[0]
    out = out + _shift_up_adjoint(g * parts[1], i)
    out = out + _shift_up_adjoint(g * parts[2], j)
    return out + _shift_up_adjoint(_shift_up_adjoint(g * parts[3], j), i)


class ElasticStepper(_CellEngine, Stepper):
    """Isotropic elastic waves (2D P-SV or 3D) of a batch of shots, hand-written adjoint.

    Args:
        a, b, rho: ``[z, x]`` or ``[z, y, x]`` models: ``vp``, ``vs`` (m/s) with
            ``parametrization="velocity"``, or ``lambda``, ``mu`` (Pa) with ``"lame"``;
            ``rho`` in kg/m^3.
        spacing, dt, wavelet, sources, receivers: as the acoustic stepper.
        source: ``"explosive"``, ``"vertical"``, ``"horizontal"`` (x) or, in 3D,
            ``"crossline"`` (y).
        order: 2, 4, 6 or 8 (staggered coefficients).
        free_surface: a stress-free top (image method) instead of a C-PML there.
        pml_width, pml_velocity, pml_frequency, interpolation, boundary: as the
            acoustic stepper (C-PML only).

    Parameters (gradients): the parametrization's three names (padded grid; :meth:`fold`
    sums the padding onto the model's edge) and ``"wavelet"`` ``[shot, source, nt]``.
    Outputs ``"pressure"`` (``-trace(stress) / D``), ``"vz"``, (``"vy"``,) ``"vx"``, each
    ``[nt, shot, receiver]``, the velocities interpolated at their staggered points.
    """

    _density_scheme = True      # the staggered scheme's CFL limit (at vp)

    def __init__(self, a: ArrayLike, b: ArrayLike, rho: ArrayLike, spacing: object,
                 dt: float, wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
                 source: str = "explosive", order: int = 4, pml_width: Any = None,
                 free_surface: bool = False, interpolation: str = "hicks",
                 pml_velocity: float | None = None, pml_frequency: float | None = None,
                 boundary: Any = "pml", parametrization: str = "velocity") -> None:
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization={parametrization!r}; choose 'velocity' (vp, vs, "
                             "rho) or 'lame' (lambda, mu, rho)")
        self.names = PARAMETRIZATIONS[parametrization]
        self.parametrization = parametrization
        a_arr = np.asarray(a, dtype=np.float64)
        if a_arr.ndim not in (2, 3):
            raise ValueError(f"{self.names[0]} must be [z, x] or [z, y, x]; got shape "
                             f"{a_arr.shape}")
        kinds = source_kinds(a_arr.ndim)
        if source not in kinds:
            raise ValueError(f"source={source!r}; choose one of {kinds}")
        given = (a_arr, np.asarray(b, dtype=np.float64), np.asarray(rho, dtype=np.float64))
        models = self._checked(*given)
        vp = np.sqrt((models[0] + 2.0 * models[1]) / models[2])
        self._setup(vp, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                    np.asarray(receivers), order=order, pml_width=pml_width,
                    free_surface=free_surface, interpolation=interpolation,
                    pml_velocity=pml_velocity, pml_frequency=pml_frequency, boundary=boundary)
        if not isinstance(self.boundary, CPML):
            raise ValueError("the elastic engine absorbs with a C-PML only; use boundary='pml'")
        self._check_shear_resolution(np.sqrt(models[1] / models[2]))
        self.source = source
        self.free_surface = bool(free_surface)
        self._kind = _kind_index(source, a_arr.ndim)
        self._place_arrays()
        self._points_elastic(sources, receivers)
        self._models: dict[str, np.ndarray] = {}
        self.set_models(**{n: self.pad(x) for n, x in zip(self.names, given, strict=True)})
        self.amp = np.array(self._amp, dtype=self._real)
        self.ampg = np.zeros_like(self.amp)
        self.norms = np.zeros(max(self.steps, 1), dtype=np.float64)
        self._slots = 0

    # -- set-up --------------------------------------------------------------------------
    def _checked(self, a: np.ndarray, b: np.ndarray, rho: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The models as ``(lambda, mu, rho)``, checked."""
        if self.parametrization == "velocity":
            check_elastic_model(a, b, rho)
            mu = rho * b * b
            return rho * a * a - 2.0 * mu, mu, rho
        check_lame_model(a, b, rho)
        return a, b, rho

    #: Fewer cells than this per S wavelength at the dominant frequency draw a warning.
    MIN_CELLS_PER_S_WAVELENGTH = 5.0

    def _check_shear_resolution(self, vs: np.ndarray) -> None:
        solid = vs[vs > 0]
        f_dom = dominant_frequency(self._amp, self.dt)
        if solid.size == 0 or f_dom <= 0:
            return
        cells = float(solid.min()) / (f_dom * max(self.geometry.spacing))
        if cells < self.MIN_CELLS_PER_S_WAVELENGTH:
            warnings.warn(
                f"only {cells:.2f} cells per S wavelength at the wavelet's dominant frequency "
                f"{f_dom:.3g} Hz (min vs {float(solid.min()):.6g} m/s, spacing "
                f"{max(self.geometry.spacing):.6g} m): the slowest S waves will be dispersed; "
                "use a finer grid, a lower frequency or a higher order", stacklevel=4)

    def _layout_arrays(self) -> tuple[tuple[str, int], ...]:
        return elastic_arrays(self.geometry.ndim)

    def _place_arrays(self) -> None:
        rt = ensure_init()
        g = self.geometry
        nd, w, nb = g.ndim, self.lanes, self.blocks
        self._real = np_real()
        npair = len(shear_pairs(nd))
        rows = (self.shots, *g.padded[:-1], nb)
        grid = (*g.padded[:-1], nb)
        comps = {"v": nd, "s": nd + npair, "psi": nd * nd, "zeta": nd, "eta": 2 * npair}
        shapes: dict[str, tuple[int, ...]] = {k: (2, n, *rows) for k, n in comps.items()}
        shapes.update({k + "g": (n, *rows) for k, n in comps.items()})
        shapes.update({"ev": (nd, *rows), "gv": (2 * npair, *rows), "dv": (nd * nd, *rows),
                       "acc": (nd, *rows), "gB": (nd, *rows), "gL": rows, "gM": rows,
                       "gMU": (npair, *rows), "B": (nd, *grid), "L": grid, "M": grid,
                       "MU": (npair, *grid), "xp": (4, nb)})
        io = arena_kernels(nd, rt.precision, w)
        self._kernels = {**{k: io[k] for k in ("read", "write", "fill", "copy")},
                         **elastic_kernels(nd, rt.precision, w)}
        self._offset, self._shapes = {}, {}
        self._arena = _arena(rt.precision, w)
        self._pools = _arena(rt.precision, w, "pools")
        self._base = self._place(self._arena, shapes)
        weakref.finalize(self, self._arena.release, self._base)
        self._pool_region = None
        self._pool_bases = []
        weakref.finalize(self, self._release_pools, self._pools, self._pool_bases)
        self._state_size = sum(int(np.prod(shapes[k][1:])) for k in STATE)
        self._set_layout()
        self._fill(*(k for k in shapes))
        self._cell_shape = rows
        # one launch per range of steps, its shots and rows shared by worker tasks
        self._split = split(self.shots, int(np.prod(rows[1:])) * w)
        self._bar = barrier_field()
        self._norm_parts = self.shots * self._split.workers
        self._h_ref = g.spacing[0]
        self._ih = tuple(self._h_ref / h for h in g.spacing)
        self._s1 = STAGGERED[self.order]
        self._profiles_cells()
        self._no_saves = np.full(1, -1, dtype=np.int32)
        self._surface = g.pad_lo[0] if self.free_surface else -1
        self.traces = np.zeros((self.steps + 1, nd + 1, self.shots, self.receivers),
                               dtype=self._real)
        self.tracesg = np.zeros_like(self.traces)

    def _points_elastic(self, sources: ArrayLike, receivers: ArrayLike) -> None:
        """Stencils of the sources and receivers at their components' points.

        Sources: set 0 (every normal stress but ``s_zz``, or the force's velocity), set 1
        (``s_zz``); receivers: sets 0 and 1 (the pressure's stresses), ``2 + i`` (``v_i``).
        With a free surface each set folds its stencil's rows above the surface back with
        its component's image (odd for ``s_zz``, even for the others).
        """
        g = self.geometry
        nd, k = g.ndim, self._stencil
        src = _as_points("sources", sources, None, nd)
        rec = _as_points("receivers", receivers, self.shots, nd)
        if rec.shape[0] == 1 and self.shots > 1:
            rec = np.broadcast_to(rec, (self.shots, *rec.shape[1:]))
        top = 2 * g.pad_lo[0]

        def half(axis: int) -> np.ndarray:
            shift = np.zeros(nd)
            shift[axis] = -0.5 * g.spacing[axis]
            return shift

        def weights(pts: np.ndarray, shift: np.ndarray | None, c2: int, sign: float
                    ) -> tuple[np.ndarray, np.ndarray]:
            at = pts if shift is None else pts + shift
            return self._point_weights(at, k, (c2, sign) if self.free_surface else None)

        cells = (None, top, 1.0)
        if self._kind == 0:
            src_sets = [weights(src, *cells), weights(src, None, top, -1.0)]
        else:
            a = self._kind - 1
            main = weights(src, half(a), top - 1 if a == 0 else top, 1.0)
            src_sets = [main, main]
        rec_sets = [weights(rec, *cells), weights(rec, None, top, -1.0)]
        rec_sets += [weights(rec, half(i), top - 1 if i == 0 else top, 1.0) for i in range(nd)]
        real = self._real
        self.src_pos = np.ascontiguousarray(np.stack([p for p, _ in src_sets]), dtype=np.int32)
        self.src_w = np.ascontiguousarray(np.stack([w for _, w in src_sets]), dtype=real)
        self.rec_pos = np.ascontiguousarray(np.stack([p for p, _ in rec_sets]), dtype=np.int32)
        self.rec_w = np.ascontiguousarray(np.stack([w for _, w in rec_sets]), dtype=real)
        cell = float(np.prod(g.spacing))
        # explosive: stress rate dt / cell; force: velocity rate B / cell (B = dt / rho / h_ref)
        self._scale = self.dt / cell if self._kind == 0 else self._h_ref / cell

    # -- parameters ----------------------------------------------------------------------
    def set_models(self, **models: ArrayLike) -> None:
        """Replace any of the three models (padded grid) together; checked, no recompilation."""
        unknown = set(models) - set(self.names)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; this stepper has "
                             f"{list(self.names)}")
        new = {**self._models}
        for name, value in models.items():
            new[name] = as_array(f"parameter {name!r}", value, self.geometry.padded,
                                 positive=False).copy()
        lam, mu, rho = self._checked(*(new[n] for n in self.names))
        vp = np.sqrt((lam + 2.0 * mu) / rho)
        _check_cfl(self.dt, float(vp.max()), self.geometry.spacing, self.order, True)
        self._models = new
        self._lame = (lam, mu, rho)
        self._coefficients()

    def set_param(self, name: str, value: ArrayLike) -> None:
        """Replace one model (padded grid) or the ``"wavelet"``; no recompilation."""
        if name == "wavelet":
            self.amp[...] = self._check_wavelet(value)
        else:
            self.set_models(**{name: value})

    def _coefficients(self) -> None:
        """``B, L, M, MU`` (units of the first spacing, zero on the frame) into the arena."""
        lam, mu, rho = self._lame
        g, nd = self.geometry, self.geometry.ndim
        c = self.dt / self._h_ref * self._frame
        inv = 1.0 / rho
        self._write("B", self._pack(np.stack([c * 0.5 * (inv + _shift_up(inv, d))
                                              for d in range(nd)])))
        lam_s = lam.copy()
        if self.free_surface:
            top = g.pad_lo[0]
            lt, mt = lam[top], mu[top]
            lam_s[top] = 2.0 * mt * lt / (lt + 2.0 * mt)
        self._write("L", self._pack(c * lam_s))
        self._write("M", self._pack(2.0 * c * mu))
        self._harm = [_harmonic(mu, pair) for pair in shear_pairs(nd)]
        self._write("MU", self._pack(np.stack([c * m for m, _ in self._harm])))

    def parameters(self) -> dict[str, np.ndarray]:
        """The three models (padded grid) and ``"wavelet"``."""
        out = {n: self._models[n].copy() for n in self.names}
        out["wavelet"] = self.amp.copy()
        return out

    def gradients(self) -> dict[str, np.ndarray]:
        """``d loss / d parameter``; models on the padded grid."""
        g, nd = self.geometry, self.geometry.ndim
        lam, mu, rho = self._lame
        c = self.dt / self._h_ref * self._frame

        def summed(name: str) -> np.ndarray:
            arr = self._read(name).astype(np.float64)
            return self._unpack(arr.sum(axis=1 if arr.ndim == nd + 3 else 0))

        gb = summed("gB") * c
        ginv = sum(0.5 * (gb[d] + _shift_up_adjoint(gb[d], d)) for d in range(nd))
        grho_b = -np.asarray(ginv) / (rho * rho)
        glam = summed("gL") * c
        gmu = summed("gM") * 2.0 * c
        if self.free_surface:
            top = g.pad_lo[0]
            lt, mt = lam[top], mu[top]
            den = (lt + 2.0 * mt) ** 2
            gs = glam[top].copy()
            glam[top] = gs * 4.0 * mt * mt / den
            gmu[top] += gs * 2.0 * lt * lt / den
        gmu_h = summed("gMU") * c
        for p, pair in enumerate(shear_pairs(nd)):
            gmu = gmu + _harmonic_adjoint(gmu_h[p], self._harm[p][1], pair)
        out = {"wavelet": self.ampg.astype(np.float64)}
        if self.parametrization == "lame":
            out.update({"lambda": glam, "mu": gmu, "rho": grho_b})
            return out
        vp, vs = self._models["vp"], self._models["vs"]
        out.update({"vp": glam * 2.0 * rho * vp,
                    "vs": (gmu - 2.0 * glam) * 2.0 * rho * vs,
                    "rho": grho_b + glam * (vp * vp - 2.0 * vs * vs) + gmu * vs * vs})
        return out

    def outputs(self) -> dict[str, np.ndarray]:
        """Each component's traces ``[nt, shot, receiver]`` (copies)."""
        return {name: self.traces[:, c].copy()
                for c, name in enumerate(output_names(self.geometry.ndim))}

    # -- Stepper protocol ----------------------------------------------------------------
    @property
    def state_nbytes(self) -> int:
        """Bytes of one state: velocities, stresses and the C-PML memories."""
        return self._state_size * self.lanes * np.dtype(self._real).itemsize

    def allocate_checkpoints(self, slots: int) -> None:
        """Room for ``slots`` stored states in the process's checkpoint arena."""
        if slots <= self._slots:
            return
        self._place_pools({"pool": (slots, self._state_size)})
        self._slots = slots

    def reset(self) -> None:
        """Zero the state; the traces at time 0 are zero."""
        self._fill(*STATE)
        self.traces[0] = 0

    def advance(self, step: int) -> None:
        """Run step ``step`` and record the receivers at ``step + 1``."""
        self.advance_range(step, step + 1, {})

    def _common(self) -> tuple[Any, ...]:
        return (*self._split, self._ih, self._s1, self._kind, self.free_surface)

    def _launch_range(self, start: int, stop: int, marks: np.ndarray) -> None:
        self._kernels["forward"](
            self._arena.field, self._pool_field(), self._bar, self._layout, self._rp, self.amp,
            self.traces, self.src_pos, self.src_w, self.rec_pos, self.rec_w, marks, self._xl,
            self._scale, self._surface, start, stop, *self._common(),
            self._pool_region is not None)

    def save(self, step: int, slot: int) -> None:
        """Store the live ``x[step]`` in checkpoint ``slot``."""
        self._kernels["copy_state"](self._arena.field, self._pools.field, self._layout, slot,
                                    step % 2, self._s1, True)

    def restore(self, step: int, slot: int) -> None:
        """Make ``x[step]`` from checkpoint ``slot`` live."""
        self._kernels["copy_state"](self._arena.field, self._pools.field, self._layout, slot,
                                    step % 2, self._s1, False)

    def live_is_finite(self, step: int) -> bool:
        """Whether the velocities and stresses are finite."""
        return all(bool(np.isfinite(self._read(n, step % 2)).all()) for n in ("v", "s"))

    def state_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Velocities ``v``, stresses ``s`` and the C-PML memories (one level; lanes last)."""
        return {name: ((*self._shapes[name][1:], self.lanes), np.dtype(self._real))
                for name in STATE}

    def export_state(self, step: int, out: Mapping[str, np.ndarray]) -> None:
        """Copy the live ``x[step]`` into ``out``."""
        for name in STATE:
            self._read(name, step % 2, out=out[name])

    def import_state(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Make ``x[step]`` (arrays shaped by :meth:`state_spec`) live."""
        for name in STATE:
            self._write(name, values[name], step % 2)

    def begin_reverse(self, cotangents: Mapping[str, np.ndarray]) -> None:
        """Zero every adjoint and take ``d loss / d traces`` per component."""
        names = output_names(self.geometry.ndim)
        unknown = set(cotangents) - set(names)
        if unknown:
            raise ValueError(f"cotangents for unknown outputs {sorted(unknown)}; this "
                             f"stepper's outputs are {list(names)}")
        self._fill("vg", "sg", "psig", "zetag", "etag", "ev", "gv", "dv", "acc", "gB", "gL",
                   "gM", "gMU")
        self.ampg.fill(0)
        self.tracesg.fill(0)
        shape = (self.steps + 1, self.shots, self.receivers)
        for c, name in enumerate(names):
            if name in cotangents:
                self.tracesg[:, c] = as_array(f"cotangent for output {name!r}",
                                              cotangents[name], shape)

    def _launch_reverse(self, top: int, count: int, slots: np.ndarray) -> None:
        self._kernels["reverse"](
            self._arena.field, self._pool_field(), self._bar, self._layout, self._rp, self.amp,
            self.ampg, self.tracesg, self.src_pos, self.src_w, self.rec_pos, self.rec_w, slots,
            self.norms, self._xl, self._scale, self._surface, top, count, *self._common())

    def finish_reverse(self, *, measure: bool) -> float:
        """Add the receivers' adjoint at time 0; return ``|lambda[0]|``."""
        self._kernels["receivers_adjoint"](self._arena.field, self._layout, self.tracesg,
                                           self.rec_pos, self.rec_w, 0, self._s1)
        if not measure:
            return math.nan
        return math.sqrt(sum(float(np.sum(np.square(self._read(n), dtype=np.float64)))
                             for n in ("vg", "sg")))

    def destroy(self) -> None:
        """Give the arena space back and drop the checkpoints; the stepper is unusable after."""
        super().destroy()
        self._slots = 0

    def graph_stages(self) -> tuple[dict[str, Any], list[Any]]:
        """The step as stages for :func:`diffsim.diagnostics.step_graph`."""
        from diffsim.diagnostics.graph import Stage, declared

        a, b, rho = self.names
        outputs = output_names(self.geometry.ndim)
        arrays = {"v": "state", "s": "state", "psi": "state", "zeta": "state", "eta": "state",
                  a: "parameter", b: "parameter", rho: "parameter", "wavelet": "parameter",
                  "B = dt/rho": "derived", "L = dt lambda": "derived", "M = 2 dt mu": "derived",
                  "MU = dt mu (shear points)": "derived",
                  **{name: "output" for name in outputs}}
        coeffs = ("B = dt/rho", "L = dt lambda", "M = 2 dt mu", "MU = dt mu (shear points)")
        stages = [Stage("coefficients", (a, b, rho), coeffs, per_step=False),
                  Stage("velocity", ("v", "s", "psi", "B = dt/rho"), ("v", "psi")),
                  Stage("stress", ("s", "v", "zeta", "eta", *coeffs[1:]), ("s", "zeta", "eta")),
                  Stage("sources", ("wavelet", "B = dt/rho"), ("s", "v")),
                  Stage("receivers", ("s", "v"), outputs)]
        return declared(arrays, stages)

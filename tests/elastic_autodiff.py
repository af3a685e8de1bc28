"""A reference for the elastic engine's hand-written adjoint: the same 2D scheme, Taichi autodiff.

The elastic engine's first version (per-stepper fields; the reverse sweep is Taichi's
autodiff of the step kernels), kept for the tests: without a free surface it computes the
same discrete scheme as :mod:`diffsim.kernels.elastic` (staggered velocity-stress, C-PML,
buoyancy averaged onto the velocity points, the shear modulus harmonically onto the shear
points, Hicks points), with the material coefficients computed inside the kernels from
``vp, vs, rho`` so that autodiff differentiates them too.

Not a ``from __future__ import annotations`` module: Taichi reads the kernels' annotations.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import np_real
from diffsim._tape import Launch, TaichiStepper
from diffsim.acoustic._setup import STAGGERED, _AcousticSetup, _as_points

SOURCES = ("explosive", "vertical", "horizontal")
_STATE = ("vx", "vz", "sxx", "szz", "sxz", "px", "pz", "qx", "qz", "rx", "rz", "tx", "tz")


@ti.func
def _dp(a: ti.template(), lvl: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32, axis: ti.template(),
        c: ti.template()):
    """``D+`` (no 1/h) of ``a[lvl, s]`` at ``(i, j)`` along ``axis`` (0: z, 1: x)."""
    acc = ti.cast(0.0, a.dtype)
    for k in ti.static(range(len(c))):
        if ti.static(axis == 0):
            acc += c[k] * (a[lvl, s, i + k + 1, j] - a[lvl, s, i - k, j])
        else:
            acc += c[k] * (a[lvl, s, i, j + k + 1] - a[lvl, s, i, j - k])
    return acc


@ti.func
def _dm(a: ti.template(), lvl: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32, axis: ti.template(),
        c: ti.template()):
    """``D-`` (no 1/h) of ``a[lvl, s]`` at ``(i, j)`` along ``axis`` (0: z, 1: x)."""
    acc = ti.cast(0.0, a.dtype)
    for k in ti.static(range(len(c))):
        if ti.static(axis == 0):
            acc += c[k] * (a[lvl, s, i + k, j] - a[lvl, s, i - k - 1, j])
        else:
            acc += c[k] * (a[lvl, s, i, j + k] - a[lvl, s, i, j - k - 1])
    return acc


@ti.func
def _pml(psi: ti.template(), src: ti.i32, dst: ti.i32, s: ti.i32, i: ti.i32, j: ti.i32,
         prof: ti.template(), row: ti.template(), axis: ti.template(), d):
    """``d + psi'`` with ``psi' = b psi + a d`` stored in ``psi[dst]`` (branch-free)."""
    a = ti.cast(0.0, psi.dtype)
    b = ti.cast(0.0, psi.dtype)
    if ti.static(axis == 0):
        a, b = prof[row, axis, i], prof[row + 1, axis, i]
    else:
        a, b = prof[row, axis, j], prof[row + 1, axis, j]
    m = b * psi[src, s, i, j] + a * d
    psi[dst, s, i, j] = m
    return d + m


@ti.kernel
def elastic_velocity(vx: ti.template(), vz: ti.template(), sxx: ti.template(),
                     szz: ti.template(), sxz: ti.template(), px: ti.template(),
                     pz: ti.template(), qx: ti.template(), qz: ti.template(),
                     rho: ti.template(), prof: ti.template(), src: ti.i32, dst: ti.i32,
                     dt: ti.f64, ihz: ti.f64, ihx: ti.f64, halo: ti.i32, c: ti.template()):
    """``vx, vz`` at ``dst`` from ``src`` and the stresses at ``src``.

    PML memory: ``px`` (D+x sxx), ``pz`` (D-z sxz) of ``vx``; ``qx`` (D-x sxz), ``qz``
    (D+z szz) of ``vz``. ``prof [4, 2, n]``: cell ``a, b`` then half-point ``a, b``, per
    axis (0: z, 1: x).
    """
    for s, i, j in ti.ndrange(vx.shape[1], (halo, vx.shape[2] - halo), (halo, vx.shape[3] - halo)):
        h = ti.cast(dt, vx.dtype)
        dxx = _pml(px, src, dst, s, i, j, prof, 2, 1, _dp(sxx, src, s, i, j, 1, c) * ihx)
        dxz = _pml(pz, src, dst, s, i, j, prof, 0, 0, _dm(sxz, src, s, i, j, 0, c) * ihz)
        bx = 0.5 * (1.0 / rho[i, j] + 1.0 / rho[i, j + 1])
        vx[dst, s, i, j] = vx[src, s, i, j] + h * bx * (dxx + dxz)
        dzx = _pml(qx, src, dst, s, i, j, prof, 0, 1, _dm(sxz, src, s, i, j, 1, c) * ihx)
        dzz = _pml(qz, src, dst, s, i, j, prof, 2, 0, _dp(szz, src, s, i, j, 0, c) * ihz)
        bz = 0.5 * (1.0 / rho[i, j] + 1.0 / rho[i + 1, j])
        vz[dst, s, i, j] = vz[src, s, i, j] + h * bz * (dzx + dzz)


@ti.kernel
def elastic_stress(vx: ti.template(), vz: ti.template(), sxx: ti.template(),
                   szz: ti.template(), sxz: ti.template(), rx: ti.template(),
                   rz: ti.template(), tx: ti.template(), tz: ti.template(), vp: ti.template(),
                   vs: ti.template(), rho: ti.template(), prof: ti.template(), src: ti.i32,
                   dst: ti.i32, dt: ti.f64, ihz: ti.f64, ihx: ti.f64, halo: ti.i32,
                   c: ti.template()):
    """Stresses at ``dst`` from ``src`` and the velocities at ``dst``.

    PML memory: ``rx`` (D-x vx), ``rz`` (D-z vz) of the normal stresses; ``tx`` (D+x vz),
    ``tz`` (D+z vx) of ``sxz``.
    """
    for s, i, j in ti.ndrange(vx.shape[1], (halo, vx.shape[2] - halo), (halo, vx.shape[3] - halo)):
        h = ti.cast(dt, vx.dtype)
        m = rho[i, j] * vs[i, j] * vs[i, j]
        lam = rho[i, j] * vp[i, j] * vp[i, j] - 2.0 * m
        exx = _pml(rx, src, dst, s, i, j, prof, 0, 1, _dm(vx, dst, s, i, j, 1, c) * ihx)
        ezz = _pml(rz, src, dst, s, i, j, prof, 0, 0, _dm(vz, dst, s, i, j, 0, c) * ihz)
        sxx[dst, s, i, j] = sxx[src, s, i, j] + h * ((lam + 2.0 * m) * exx + lam * ezz)
        szz[dst, s, i, j] = szz[src, s, i, j] + h * (lam * exx + (lam + 2.0 * m) * ezz)
        ezx = _pml(tz, src, dst, s, i, j, prof, 2, 0, _dp(vx, dst, s, i, j, 0, c) * ihz)
        exz = _pml(tx, src, dst, s, i, j, prof, 2, 1, _dp(vz, dst, s, i, j, 1, c) * ihx)
        # harmonic mean of the four cells' shear moduli (zero where any is fluid)
        m01 = rho[i, j + 1] * vs[i, j + 1] * vs[i, j + 1]
        m10 = rho[i + 1, j] * vs[i + 1, j] * vs[i + 1, j]
        m11 = rho[i + 1, j + 1] * vs[i + 1, j + 1] * vs[i + 1, j + 1]
        # (as reciprocals: a product of four moduli overflows float32)
        low = ti.min(ti.min(m, m01), ti.min(m10, m11))
        inv = (1.0 / ti.select(m > 0.0, m, 1.0) + 1.0 / ti.select(m01 > 0.0, m01, 1.0)
               + 1.0 / ti.select(m10 > 0.0, m10, 1.0) + 1.0 / ti.select(m11 > 0.0, m11, 1.0))
        mxz = ti.select(low > 0.0, 4.0 / inv, 0.0)
        sxz[dst, s, i, j] = sxz[src, s, i, j] + h * mxz * (ezx + exz)


@ti.kernel
def elastic_inject(sxx: ti.template(), szz: ti.template(), vx: ti.template(),
                   vz: ti.template(), rho: ti.template(), amp: ti.template(),
                   pos: ti.template(), w: ti.template(), kind: ti.template(),
                   scale: ti.f64, dst: ti.i32, step: ti.i32):
    """Add the sources of ``step`` (``scale = dt / cell``; forces also divided by rho).

    ``kind`` 0: explosive (``sxx``, ``szz``); 1: vertical force (``vz``); 2: horizontal
    force (``vx``).
    """
    for s, n, a, b in ti.ndrange(pos.shape[0], pos.shape[1], w.shape[3], w.shape[3]):
        i, j = pos[s, n][0] + a, pos[s, n][1] + b
        v = ti.cast(scale, sxx.dtype) * amp[s, n, step] * w[s, n, 0, a] * w[s, n, 1, b]
        if ti.static(kind == 0):
            sxx[dst, s, i, j] += v
            szz[dst, s, i, j] += v
        elif ti.static(kind == 1):
            vz[dst, s, i, j] += v / rho[i, j]
        else:
            vx[dst, s, i, j] += v / rho[i, j]


@ti.kernel
def elastic_record(sxx: ti.template(), szz: ti.template(), vx: ti.template(),
                   vz: ti.template(), p_out: ti.template(), vx_out: ti.template(),
                   vz_out: ti.template(), pos_p: ti.template(), w_p: ti.template(),
                   pos_x: ti.template(), w_x: ti.template(), pos_z: ti.template(),
                   w_z: ti.template(), lvl: ti.i32, t: ti.i32):
    """Receivers at time ``t``: pressure ``-(sxx + szz) / 2``, ``vx`` and ``vz``.

    Each at its own points (cells, or the staggered velocity points) with its own
    interpolation stencil.
    """
    for s, n in ti.ndrange(pos_p.shape[0], pos_p.shape[1]):
        p_out[t, s, n] = 0.0
        vx_out[t, s, n] = 0.0
        vz_out[t, s, n] = 0.0
    for s, n, a, b in ti.ndrange(pos_p.shape[0], pos_p.shape[1], w_p.shape[3], w_p.shape[3]):
        i, j = pos_p[s, n][0] + a, pos_p[s, n][1] + b
        p_out[t, s, n] += -0.5 * w_p[s, n, 0, a] * w_p[s, n, 1, b] * (sxx[lvl, s, i, j]
                                                                       + szz[lvl, s, i, j])
        i, j = pos_x[s, n][0] + a, pos_x[s, n][1] + b
        vx_out[t, s, n] += w_x[s, n, 0, a] * w_x[s, n, 1, b] * vx[lvl, s, i, j]
        i, j = pos_z[s, n][0] + a, pos_z[s, n][1] + b
        vz_out[t, s, n] += w_z[s, n, 0, a] * w_z[s, n, 1, b] * vz[lvl, s, i, j]


class AutodiffElasticStepper(_AcousticSetup, TaichiStepper):
    """2D P-SV elastic waves differentiated by Taichi autodiff (the engine's first version).

    Args:
        vp, vs, rho: ``[z, x]`` model grids (m/s, m/s, kg/m^3).
        spacing, dt, wavelet, sources, receivers: as the acoustic stepper.
        source: ``"explosive"``, ``"vertical"`` or ``"horizontal"``.
        order: 2, 4, 6 or 8 (staggered coefficients).
        pml_width, pml_velocity, pml_frequency, interpolation: as the acoustic stepper.

    Parameters (gradients): ``"vp"``, ``"vs"``, ``"rho"`` (padded grid; :meth:`fold`
    sums the padding onto the model's edge) and ``"wavelet"`` ``[shot, source, nt]``.
    Outputs ``"vx"``, ``"vz"``, ``"pressure"``, each ``[nt, shot, receiver]``.
    """

    _density_scheme = True      # the staggered scheme's CFL limit (at vp)

    def __init__(self, vp: ArrayLike, vs: ArrayLike, rho: ArrayLike, spacing: object,
                 dt: float, wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
                 source: str = "explosive", order: int = 4, pml_width: Any = None,
                 free_surface: bool = False, interpolation: str = "hicks",
                 pml_velocity: float | None = None, pml_frequency: float | None = None,
                 boundary: Any = "pml") -> None:
        if source not in SOURCES:
            raise ValueError(f"source={source!r}; choose one of {SOURCES}")
        vp_a = np.asarray(vp, dtype=np.float64)
        if vp_a.ndim != 2:
            raise ValueError(f"vp must be [z, x] (the elastic engine is 2D for now); got shape "
                             f"{vp_a.shape}")
        vs_a, rho_a = np.asarray(vs, dtype=np.float64), np.asarray(rho, dtype=np.float64)
        self._setup(vp_a, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                    np.asarray(receivers), order=order, pml_width=pml_width,
                    interpolation=interpolation, pml_velocity=pml_velocity,
                    pml_frequency=pml_frequency, boundary=boundary)
        TaichiStepper.__init__(self, steps=self.steps)
        g = self.geometry
        self.source = source
        grid = (self.shots, *g.padded)
        self._fields = {name: self._state(name, grid) for name in _STATE}
        self.vp = self._param("vp", g.padded)
        self.vs = self._param("vs", g.padded)
        self.rho = self._param("rho", g.padded)
        self.amp = self._param("wavelet", self._amp.shape)
        rec = (self.shots, self.receivers)
        self.out = {name: self._output(name, rec) for name in ("pressure", "vx", "vz")}
        k = self._stencil
        self.prof = self._tree.field((4, 2, max(g.padded)))
        self._pts: dict[str, tuple[Any, Any]] = {}
        src_pts = _as_points("sources", sources, None, 2)
        rec_pts = _as_points("receivers", receivers, self.shots, 2)
        if rec_pts.shape[0] == 1 and self.shots > 1:
            rec_pts = np.broadcast_to(rec_pts, (self.shots, *rec_pts.shape[1:]))
        hz, hx = g.spacing
        shift = {"explosive": (0.0, 0.0), "vertical": (-0.5 * hz, 0.0),
                 "horizontal": (0.0, -0.5 * hx)}[source]
        where = {"src": (src_pts, shift), "p": (rec_pts, (0.0, 0.0)),
                 "x": (rec_pts, (0.0, -0.5 * hx)), "z": (rec_pts, (-0.5 * hz, 0.0))}
        arrays = {}
        for key, (pts, (dz, dx)) in where.items():
            pos, w = self._point_weights(np.asarray(pts, dtype=np.float64) + [dz, dx], k)
            pf = self._tree.field(pos.shape[:2], vector=2, dtype=ti.i32)
            wf = self._tree.field(w.shape)
            self._pts[key] = (pf, wf)
            arrays[key] = (pos, w)
        self._finalize()
        for key, (pos, w) in arrays.items():
            self._pts[key][0].from_numpy(pos.astype(np.int32))
            self._pts[key][1].from_numpy(w.astype(np_real()))
        prof = np.zeros((4, 2, max(g.padded)))
        for i, offset in enumerate((0.0, 0.5)):
            a, b = self.boundary.profiles(g, *self._tuning, self.dt, offset)
            prof[2 * i, :, :a.shape[1]], prof[2 * i + 1, :, :b.shape[1]] = a, b
        self.prof.from_numpy(prof.astype(np_real()))
        self._s = STAGGERED[order]
        self._models: dict[str, np.ndarray] = {}
        self._ih = tuple(1.0 / h for h in g.spacing)
        self.set_param("vp", self.pad(vp_a))
        self.set_param("vs", self.pad(vs_a))
        self.set_param("rho", self.pad(rho_a))
        self.set_param("wavelet", self._amp)

    def _upload_constants(self) -> None:
        """Nothing: the constants go into this stepper's fields in ``__init__``."""

    def _check_param(self, name: str, value: np.ndarray) -> None:
        """The models together in range (once all three are set), vp within the CFL limit."""
        if name not in ("vp", "vs", "rho"):
            return
        models = {**self._models, name: np.asarray(value, dtype=np.float64)}
        if name == "vp":
            self._check_padded_velocity(value)
        self._models = models      # host copies: no field read back on every update

    # -- the step --------------------------------------------------------------------
    def substeps(self, step: int) -> Sequence[Launch]:
        """Velocities, stresses, then the sources of ``step``."""
        src, dst = self.level(step), self.level(step + 1)
        f = self._fields
        ihz, ihx = self._ih
        halo = self.geometry.halo
        common = (src, dst, self.dt, ihz, ihx, halo, self._s)
        kind = SOURCES.index(self.source)
        cell = float(np.prod(self.geometry.spacing))
        pos, w = self._pts["src"]
        return (
            (elastic_velocity, (f["vx"], f["vz"], f["sxx"], f["szz"], f["sxz"], f["px"],
                                f["pz"], f["qx"], f["qz"], self.rho, self.prof, *common)),
            (elastic_stress, (f["vx"], f["vz"], f["sxx"], f["szz"], f["sxz"], f["rx"],
                              f["rz"], f["tx"], f["tz"], self.vp, self.vs, self.rho, self.prof,
                              *common)),
            (elastic_inject, (f["sxx"], f["szz"], f["vx"], f["vz"], self.rho, self.amp, pos, w,
                              kind, self.dt / cell, dst, step)),
        )

    def record(self, t: int) -> Sequence[Launch]:
        """The receivers at time ``t``."""
        f = self._fields
        return ((elastic_record, (f["sxx"], f["szz"], f["vx"], f["vz"], self.out["pressure"],
                                  self.out["vx"], self.out["vz"], *self._pts["p"],
                                  *self._pts["x"], *self._pts["z"], self.level(t), t)),)

    def recompute(self, step: int) -> Sequence[Launch]:
        """The velocity update: the stress update's reverse reads the new velocities."""
        return self.substeps(step)[:1]

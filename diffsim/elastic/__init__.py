"""Isotropic elastic waves (2D P-SV), velocity-stress on a staggered grid (Virieux 1986).

    sim = elastic.Simulation(vp, vs, rho, 10.0, dt, wavelet, sources, receivers)
    out = sim.simulate()                    # "vx", "vz", "pressure": [shot, receiver, nt]
    res = sim.value_and_grad(L2(observed, output="vz"), wrt=("vp", "vs", "rho"))

Parameters ``vp``, ``vs`` (m/s; ``vs = 0`` in fluids) and ``rho`` (kg/m^3) on the model
grid; sources are explosive (a pressure source on the normal stresses), vertical or
horizontal forces; receivers record both particle-velocity components (at their
staggered points) and the pressure ``-(sxx + szz) / 2``. Absorbing faces: C-PML (the
acoustic engine's profiles, at cells and half points). Geometry, padding, Hicks points
and the C-PML come from the acoustic set-up (``acoustic._setup``), with the staggered
scheme's CFL limit at the largest P velocity.

This first version differentiates the step with Taichi autodiff (per-stepper fields,
compiled for each new stepper): exact gradients, checked against finite differences.
Not yet here: the free surface, 3D, the hand-written adjoint (which makes every
checkpoint schedule give the same bits and the reverse sweep fast).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import np_real
from diffsim._simulation import LossFunction
from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Launch, Stepper, TaichiStepper
from diffsim._validate import as_array
from diffsim.acoustic._setup import STAGGERED, _AcousticSetup, _as_points, check_positive_model
from diffsim.acoustic.boundaries import CPML
from diffsim.kernels.elastic import (
    elastic_inject,
    elastic_record,
    elastic_stress,
    elastic_velocity,
)

__all__ = ["ElasticStepper", "SOURCES", "Simulation", "simulate"]

#: Source kinds: a pressure (explosive) source, a vertical or a horizontal force.
SOURCES = ("explosive", "vertical", "horizontal")
_STATE = ("vx", "vz", "sxx", "szz", "sxz", "px", "pz", "qx", "qz", "rx", "rz", "tx", "tz")


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


class ElasticStepper(_AcousticSetup, TaichiStepper):
    """2D P-SV elastic waves of a batch of shots (Taichi autodiff reverse).

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
        if free_surface:
            raise ValueError("free_surface=True is not in the elastic engine yet; use "
                             "free_surface=False (C-PML on every face)")
        vp_a = np.asarray(vp, dtype=np.float64)
        if vp_a.ndim != 2:
            raise ValueError(f"vp must be [z, x] (the elastic engine is 2D for now); got shape "
                             f"{vp_a.shape}")
        vs_a, rho_a = np.asarray(vs, dtype=np.float64), np.asarray(rho, dtype=np.float64)
        check_elastic_model(vp_a, vs_a, rho_a)
        self._setup(vp_a, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                    np.asarray(receivers), order=order, pml_width=pml_width,
                    interpolation=interpolation, pml_velocity=pml_velocity,
                    pml_frequency=pml_frequency, boundary=boundary)
        if not isinstance(self.boundary, CPML):
            raise ValueError("the elastic engine absorbs with a C-PML only; use boundary='pml'")
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
        if len(models) == 3:
            check_elastic_model(models["vp"], models["vs"], models["rho"])
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


class Simulation(_Simulation):
    """Elastic waves behind the one front-end shape (see :class:`ElasticStepper`).

    Outputs ``"vx"``, ``"vz"``, ``"pressure"``: ``[shot, receiver, nt]``. Parameters
    ``"vp"``, ``"vs"``, ``"rho"`` (model grid) and ``"wavelet"``; :meth:`update` sets
    new values without recompiling.
    """

    parameter_names = ("vp", "vs", "rho", "wavelet")
    default_wrt = ("vp", "vs", "rho")

    def __init__(self, vp: ArrayLike, vs: ArrayLike, rho: ArrayLike, spacing: object, dt: float,
                 wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike,
                 **options: Any) -> None:
        self.stepper = ElasticStepper(vp, vs, rho, spacing, dt, wavelet, sources, receivers,
                                      **options)

    def _stepper(self, loss: LossFunction | None = None) -> Stepper:
        return self.stepper

    def parameters(self) -> dict[str, np.ndarray]:
        """``vp``, ``vs``, ``rho`` on the model grid, and the wavelet."""
        raw = self.stepper.parameters()
        out = {k: self.stepper._crop(raw[k][None].astype(np.float64))[0]
               for k in ("vp", "vs", "rho")}
        out["wavelet"] = raw["wavelet"]
        return out

    def update(self, **params: ArrayLike) -> None:
        """New values (model grid for the models); nothing recompiles."""
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{list(self.parameter_names)}")
        shape = self.stepper.geometry.shape
        for name, value in params.items():
            if name == "wavelet":
                self.stepper.set_param(name, value)
            else:
                self.stepper.set_param(name, self.stepper.pad(as_array(name, value, shape,
                                                                       positive=False)))

    def _outputs(self, stepper: Stepper, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(np.moveaxis(v, 0, -1), dtype=np.float64)
                for k, v in raw.items()}

    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(np.moveaxis(np.asarray(v), -1, 0)) for k, v in cot.items()}

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        out = {}
        for name in wrt:
            g = np.asarray(raw[name], dtype=np.float64)
            out[name] = g if name == "wavelet" else self.stepper.fold(g)
        return out

    def close(self) -> None:
        """Free the stepper's fields."""
        self.stepper.destroy()


def simulate(vp: ArrayLike, vs: ArrayLike, rho: ArrayLike, spacing: object, dt: float,
             wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike,
             **options: Any) -> dict[str, np.ndarray]:
    """One elastic rollout: ``{"vx", "vz", "pressure"}``, each ``[shot, receiver, nt]``."""
    with Simulation(vp, vs, rho, spacing, dt, wavelet, sources, receivers, **options) as sim:
        return sim.simulate()

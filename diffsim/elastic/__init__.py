"""Isotropic elastic waves (2D P-SV and 3D), velocity-stress on a staggered grid (Virieux 1986).

    sim = elastic.Simulation(vp, vs, rho, 10.0, dt, wavelet, sources, receivers)
    out = sim.simulate()                    # "pressure", "vz", ("vy",) "vx": [shot, receiver, nt]
    res = sim.value_and_grad(L2(observed, output="vz"), wrt=("vp", "vs", "rho"))

Parameters ``vp``, ``vs`` (m/s; ``vs = 0`` in fluids) and ``rho`` (kg/m^3) on the model
grid, or with ``parametrization="lame"`` ``lambda``, ``mu`` (Pa) and ``rho``; sources are
explosive (a pressure source on the normal stresses), vertical or horizontal forces
(``"crossline"``: along y in 3D); receivers record the particle velocity (each component
at its staggered point) and the pressure ``-trace(stress) / D``. Staggered orders 2-8,
C-PML on the absorbing faces, and with ``free_surface=True`` a stress-free top (image
method: normal stress ``s_zz`` and the shears ``s_zj`` odd about the surface, velocities
even, ``lambda' = 2 mu lambda / (lambda + 2 mu)`` on the surface row). Geometry, padding,
Hicks points and the C-PML come from the acoustic set-up, with the staggered scheme's CFL
limit at the largest P velocity.

Gradients come from a hand-written adjoint (gathers, no atomics: every checkpoint schedule
gives the same bits) on the process arena, so the kernels compile once per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from diffsim._simulation import LossFunction
from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Stepper
from diffsim._validate import as_array
from diffsim.elastic.stepper import (
    PARAMETRIZATIONS,
    ElasticStepper,
    check_elastic_model,
    check_lame_model,
    output_names,
    source_kinds,
)

__all__ = ["ElasticStepper", "Simulation", "check_elastic_model", "check_lame_model",
           "output_names", "simulate", "source_kinds"]


class Simulation(_Simulation):
    """Elastic waves behind the one front-end shape (see :class:`ElasticStepper`).

    ``Simulation(vp, vs, rho, spacing, dt, wavelet, sources, receivers, **options)``, or
    with ``parametrization="lame"`` the first two models are ``lambda`` and ``mu`` (Pa).
    Outputs ``"pressure"``, ``"vz"``, (``"vy"``,) ``"vx"``: ``[shot, receiver, nt]``.
    Parameters: the three models (model grid) and ``"wavelet"``; :meth:`update` sets new
    values without recompiling (the models are checked together).
    """

    parameter_names = ("vp", "vs", "rho", "wavelet")
    default_wrt = ("vp", "vs", "rho")

    def __init__(self, a: ArrayLike, b: ArrayLike, rho: ArrayLike, spacing: object, dt: float,
                 wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike,
                 **options: Any) -> None:
        self.stepper = ElasticStepper(a, b, rho, spacing, dt, wavelet, sources, receivers,
                                      **options)
        self.default_wrt = PARAMETRIZATIONS[self.stepper.parametrization]
        self.parameter_names = (*self.default_wrt, "wavelet")

    def _stepper(self, loss: LossFunction | None = None) -> Stepper:
        return self.stepper

    def parameters(self) -> dict[str, np.ndarray]:
        """The three models on the model grid, and the wavelet."""
        raw = self.stepper.parameters()
        out = {k: self.stepper._crop(raw[k][None].astype(np.float64))[0]
               for k in self.default_wrt}
        out["wavelet"] = raw["wavelet"]
        return out

    def update(self, **params: ArrayLike) -> None:
        """New values (model grid for the models, checked together); nothing recompiles."""
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{list(self.parameter_names)}")
        shape = self.stepper.geometry.shape
        models = {name: self.stepper.pad(as_array(name, value, shape, positive=False))
                  for name, value in params.items() if name != "wavelet"}
        if models:
            self.stepper.set_models(**models)
        if "wavelet" in params:
            self.stepper.set_param("wavelet", params["wavelet"])

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
        """Give the stepper's arena space back."""
        self.stepper.destroy()


def simulate(a: ArrayLike, b: ArrayLike, rho: ArrayLike, spacing: object, dt: float,
             wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike,
             **options: Any) -> dict[str, np.ndarray]:
    """One elastic rollout: ``"pressure"``, ``"vz"``, (``"vy"``,) ``"vx"``, each ``[shot, receiver, nt]``.

    ``a, b`` are ``vp, vs`` (m/s), or ``lambda, mu`` (Pa) with ``parametrization="lame"``.
    """
    with Simulation(a, b, rho, spacing, dt, wavelet, sources, receivers, **options) as sim:
        return sim.simulate()

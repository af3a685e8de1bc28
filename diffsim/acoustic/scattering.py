"""Born (linearised) modelling and its adjoint, the migration operator.

The Born traces of a velocity perturbation ``dc`` are the exact linearisation of the
discrete nonlinear simulation about the background velocity ``c``: ``J dc`` with ``J =
d traces / d velocity``. The scattered field ``dp`` obeys the same scheme as the
background ``p`` (same stencil, same PML memory, its own memory variables) with the
source ``dKK sum_d (q_d + zeta_d')`` of the background's update (``dKK = 2 dt^2 rho c dc``,
``rho = 1`` for constant density) at every cell and step. Both run together on the cell
engine (:mod:`diffsim.kernels.acoustic.cells`), in the constant-density scheme of the
default engine or, with ``density``, the staggered variable-density one.

The adjoint ``J^T d`` (reverse-time migration of residuals ``d``) is the velocity
gradient of the nonlinear simulation for the cotangent ``d``: :meth:`Born.vjp`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import numpy as np
from numpy.typing import ArrayLike

from diffsim._simulation import LossFunction, _call_loss, _wrt, check_cotangents
from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Stepper, TapeReport, ValueAndGrad
from diffsim.acoustic._setup import ExtraOptions
from diffsim.acoustic.api import Simulation
from diffsim.acoustic.boundaries import Boundary, Width
from diffsim.acoustic.density import _CellEngine, check_density
from diffsim.checkpoint import Schedule
from diffsim.stores import CheckpointStore

__all__ = ["Born", "born"]


class _BornRunner(_CellEngine):
    """Background and scattered wavefields stepped together (forward only)."""

    def __init__(self, velocity: np.ndarray, density: np.ndarray | None, spacing: object,
                 dt: float, wavelet: np.ndarray, sources: np.ndarray, receivers: np.ndarray,
                 **options: object) -> None:
        self._density_scheme = density is not None
        self._setup(velocity, spacing, dt, wavelet, sources, receivers, **options)  # type: ignore[arg-type]
        self._cells(("dp", "dpsi", "dzeta", "tot", "dkk"))
        self._rho = np.ones_like(self._velocity) if density is None else self.pad(density)
        self._set_coefficients(self._velocity, self._rho)

    def run(self, scatter: np.ndarray) -> np.ndarray:
        """Born traces ``[shot, receiver, nt]`` of the model-grid perturbation ``scatter`` (m/s)."""
        dc = self.pad(scatter)
        dkk = 2.0 * self.dt**2 * self._rho * self._velocity * dc * self._frame / self._h_ref**2
        self._write("dkk", self._pack(dkk))
        self._fill("p", "psi", "zeta", "dp", "dpsi", "dzeta", "tot")
        self.traces[0] = 0
        self._run(0, self.steps, staggered=self._density_scheme, born=True)
        out = np.moveaxis(self.traces, 0, -1)
        if not np.all(np.isfinite(out)):
            raise FloatingPointError("the Born traces are not finite: the background or the "
                                     "perturbation is unstable (check dt against the CFL limit)")
        return np.ascontiguousarray(out, dtype=np.float64)


class Born(_Simulation):
    """Born modelling ``J dc`` and migration ``J^T d`` behind the one front-end shape.

    Built from the arguments of :func:`born` (background ``velocity`` and optional
    ``density``, the perturbation ``scatter``, geometry and options). Output
    ``"traces"`` ``[shot, receiver, nt]``: the scattered (Born) traces. Parameter
    ``"scatter"`` (m/s, model grid): :meth:`vjp` with cotangent ``d`` returns ``J^T d``, the
    migration of ``d`` (exact adjoint of :meth:`simulate`: the dot-product test holds to
    rounding), and :meth:`update` sets a new perturbation without recompiling.

    Example (one least-squares migration gradient)::

        op = Born(v0, np.zeros_like(v0), 10.0, dt, w, src, rec, order=8)
        image = op.vjp({"traces": residual})["scatter"]     # RTM of the residual
        op.update(scatter=image)
        modelled = op.simulate()["traces"]
    """

    parameter_names = ("scatter",)
    default_wrt = ("scatter",)

    def __init__(self, velocity: ArrayLike, scatter: ArrayLike, spacing: object, dt: float,
                 wavelet: ArrayLike, sources: ArrayLike, receivers: ArrayLike, *,
                 density: ArrayLike | None = None, order: int = 8,
                 pml_width: Width | None = None, free_surface: bool = False,
                 boundary: str | Boundary = "pml", **options: Unpack[ExtraOptions]) -> None:
        vel = np.asarray(velocity, dtype=np.float64)
        rho = None if density is None else check_density(density, vel.shape)
        self._background = Simulation(vel, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                                      np.asarray(receivers), density=rho, order=order,
                                      pml_width=pml_width, free_surface=free_surface,
                                      boundary=boundary, **options)
        # The background's engine choice does not apply to the (cell-engine) Born run,
        # which is built on the first simulate() (a migration alone never needs it).
        rest = {k: v for k, v in options.items() if k != "engine"}
        self._runner_args = (vel, rho, spacing, dt, np.asarray(wavelet), np.asarray(sources),
                             np.asarray(receivers))
        self._runner_options: dict[str, Any] = dict(
            order=order, pml_width=pml_width, free_surface=free_surface, boundary=boundary, **rest)
        self._runner: _BornRunner | None = None
        self._scatter = np.zeros(vel.shape)
        self.update(scatter=scatter)

    def _stepper(self, loss: object = None) -> Stepper:
        return self._background._stepper()

    def parameters(self) -> dict[str, np.ndarray]:
        """``"scatter"``: the velocity perturbation (model grid, m/s)."""
        return {"scatter": self._scatter.copy()}

    def update(self, **params: ArrayLike) -> None:
        """A new ``scatter`` (model grid, m/s); nothing recompiles."""
        unknown = set(params) - {"scatter"}
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; a Born operator's parameter is "
                             "'scatter' (build a new one for a new background)")
        if "scatter" in params:
            arr = np.asarray(params["scatter"], dtype=np.float64)
            if arr.shape != self._scatter.shape:
                raise ValueError(f"scatter has shape {arr.shape}; it must match the velocity "
                                 f"model {self._scatter.shape} (m/s)")
            if not np.all(np.isfinite(arr)):
                raise ValueError("scatter contains NaN or Inf")
            self._scatter = arr.copy()

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"traces"``: ``(shot, receiver, nt)``."""
        return self._background.output_shapes()

    def simulate(self) -> dict[str, np.ndarray]:
        """The Born traces ``{"traces": [shot, receiver, nt]}`` of the current ``scatter``."""
        if self._runner is None:
            self._runner = _BornRunner(*self._runner_args, **self._runner_options)
        return {"traces": self._runner.run(self._scatter)}

    def vjp(self, cotangents: Mapping[str, np.ndarray], *, wrt: Sequence[str] | None = None,
            checkpoint: Schedule | None = None, store: CheckpointStore | None = None
            ) -> dict[str, np.ndarray]:
        """``J^T cotangent``: the migration of trace-shaped ``cotangents["traces"]``.

        Independent of ``scatter`` (the operator is linear). ``checkpoint`` and ``store``
        go to the background simulation's reverse sweep.
        """
        _wrt(wrt, self.parameter_names, self.default_wrt)
        cot = check_cotangents(cotangents, self.output_shapes())
        grads = self._background.vjp(cot, wrt=("velocity",), checkpoint=checkpoint, store=store)
        self.last_report = self._background.last_report
        return {"scatter": grads["velocity"]}

    def value_and_grad(self, loss: LossFunction, *, wrt: Sequence[str] | None = None,
                       checkpoint: Schedule | None = None, store: CheckpointStore | None = None
                       ) -> ValueAndGrad:
        """A loss of the Born traces and its gradient with respect to ``scatter``."""
        if not callable(loss):
            raise TypeError(f"loss must be a diffsim.losses loss or a callable outputs -> "
                            f"(value, cotangents); got {type(loss).__name__}")
        bind = getattr(loss, "bind", None)
        if bind is not None:
            bind(self)
        outputs = self.simulate()
        value, cot = _call_loss(loss, outputs)
        grads = self.vjp(cot, wrt=wrt, checkpoint=checkpoint, store=store)
        report = self.last_report
        assert isinstance(report, TapeReport)
        return ValueAndGrad(value, grads, outputs, report)

    def close(self) -> None:
        """Free the background simulation's memory."""
        self._background.close()


def born(velocity: ArrayLike, scatter: ArrayLike, spacing: object, dt: float, wavelet: ArrayLike,
         sources: ArrayLike, receivers: ArrayLike, *, density: ArrayLike | None = None,
         order: int = 8, pml_width: Width | None = None, free_surface: bool = False,
         boundary: str | Boundary = "pml", **options: Unpack[ExtraOptions]) -> np.ndarray:
    """Born (single-scattering) traces of a velocity perturbation.

    Args:
        velocity: background ``[z, x]`` or ``[z, y, x]`` in m/s.
        scatter: velocity perturbation ``dc``, the same shape, m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        density: background density (kg/m^3) for the variable-density scheme; ``None``:
            constant density.
        order: 2, 4, 6 or 8.
        pml_width: absorbing cells, one int or one per face (default 20).
        free_surface: free surface on the top face.
        boundary: ``CPML(...)``, ``Sponge(...)``, ``"pml"`` or ``"sponge"``.
        **options: further :class:`AcousticStepper` options.

    Returns:
        ``J dc`` ``[shot, receiver, nt]`` with ``J = d simulate / d velocity`` at the
        background (the exact linearisation of the discrete simulation), float64.
    """
    with Born(velocity, scatter, spacing, dt, wavelet, sources, receivers, density=density,
              order=order, pml_width=pml_width, free_surface=free_surface, boundary=boundary,
              **options) as op:
        return op.simulate()["traces"]

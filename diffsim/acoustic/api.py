"""The acoustic front-end: :class:`Simulation` and the functional API over it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Unpack

import numpy as np

from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Stepper, TapeReport
from diffsim.acoustic._setup import ExtraOptions, _AcousticSetup, _broadcast_wavelet
from diffsim.acoustic.boundaries import Boundary, Width
from diffsim.acoustic.stepper import AcousticStepper
from diffsim.checkpoint import Schedule
from diffsim.losses import L2


class Simulation(_Simulation):
    """Acoustic waves behind diffsim's one front-end shape.

    Built from the same arguments as :func:`simulate`; one :class:`AcousticStepper` is
    built and kept (on the CPU its kernels are compiled once per process anyway), and
    :meth:`update` changes the velocity or the wavelet in place.

    Takes the arguments of :func:`simulate`: ``velocity``, ``spacing``, ``dt``, ``wavelet``,
    ``sources``, ``receivers``, ``order``, ``pml_width``, ``free_surface``, ``boundary``
    and ``**options`` (those of :class:`AcousticStepper`: ``interpolation``,
    ``pml_velocity``, ``pml_frequency``, ``engine``, ``adjoint``).

    Outputs: ``"traces"`` ``[shot, receiver, nt]``. Parameters (``wrt``,
    :meth:`update`): ``"velocity"`` (model grid, m/s) and ``"wavelet"`` (shaped as given:
    ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``; its gradient is summed over the
    shots and sources it was shared by).

    Example::

        sim = Simulation(v, 10.0, 1e-3, ricker(10.0, 1e-3, 800), src, rec, order=4)
        traces = sim.simulate()["traces"]
        res = sim.value_and_grad(L2(observed))          # res.loss, res.grads["velocity"]
        sim.update(velocity=v2)                          # nothing recompiles
    """

    parameter_names = ("velocity", "wavelet")
    default_wrt = ("velocity",)

    def __init__(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                 sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
                 pml_width: Width | None = None, free_surface: bool = False,
                 boundary: str | Boundary = "pml",
                 **options: Unpack[ExtraOptions]) -> None:
        stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers,
                                  order=order, pml_width=pml_width, free_surface=free_surface,
                                  boundary=boundary, **options)
        self._adopt(stepper, np.asarray(velocity, dtype=np.float64), wavelet)

    @classmethod
    def from_stepper(cls, stepper: _AcousticSetup) -> Simulation:
        """A simulation running an existing stepper (it is not closed with the simulation).

        The velocity is the stepper's model-grid velocity; the wavelet is its
        ``[shot, source, nt]`` amplitudes.
        """
        sim = cls.__new__(cls)
        params = stepper.parameters()
        sim._adopt(stepper, stepper._crop(params["velocity"][None])[0], params["wavelet"],
                   owned=False)
        return sim

    def _adopt(self, stepper: _AcousticSetup, velocity: np.ndarray, wavelet: object, *,
               owned: bool = True) -> None:
        self.stepper = stepper
        self._owned = owned
        self._velocity = velocity.copy()
        self._wavelet = np.array(wavelet, dtype=np.float64)

    def _snapshot(self, stepper: Stepper, t: int) -> dict[str, np.ndarray]:
        """The pressure ``{"wavefield": [shot, *model shape]}`` at time level ``t``."""
        assert isinstance(stepper, AcousticStepper)
        return {"wavefield": stepper.wavefield(t)}

    def _stepper(self, loss: object = None) -> Stepper:
        return self.stepper  # type: ignore[return-value]

    def parameters(self) -> dict[str, np.ndarray]:
        """``"velocity"`` (model grid, m/s) and ``"wavelet"`` (shaped as given)."""
        return {"velocity": self._velocity.copy(), "wavelet": self._wavelet.copy()}

    def update(self, **params: object) -> None:
        """New ``velocity`` (model grid, m/s) and/or ``wavelet`` (same shape as before).

        The PML stays as built (its damping scaled to the first velocity's maximum unless
        ``pml_velocity`` was given). Nothing recompiles.
        """
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: velocity, wavelet")
        s = self.stepper
        if "velocity" in params:
            vel = np.asarray(params["velocity"], dtype=np.float64)
            s.set_velocity(vel)
            self._velocity = vel.copy()
        if "wavelet" in params:
            value = np.asarray(params["wavelet"], dtype=np.float64)
            if value.shape != self._wavelet.shape:
                raise ValueError(f"wavelet has shape {value.shape}; this simulation's wavelet "
                                 f"is {self._wavelet.shape} (build a new Simulation to change it)")
            s.set_param("wavelet", _broadcast_wavelet(value, s.shots, s._amp.shape[1]))
            self._wavelet = value.copy()

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"traces"``: ``(shot, receiver, nt)``."""
        s = self.stepper
        return {"traces": (s.shots, s.receivers, s.steps + 1)}

    def _outputs(self, stepper: Stepper, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"traces": np.ascontiguousarray(np.moveaxis(raw["receivers"], 0, -1))}

    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        if "traces" not in cot:
            return {}
        return {"receivers": np.moveaxis(cot["traces"], -1, 0)}

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        if "velocity" in wrt:
            grads["velocity"] = self.stepper.fold(raw["velocity"])
        if "wavelet" in wrt:
            g = np.asarray(raw["wavelet"], dtype=np.float64)        # [shot, source, nt]
            if self._wavelet.ndim == 1:
                g = g.sum(axis=(0, 1))
            elif self._wavelet.ndim == 2:
                g = g.sum(axis=1)
            grads["wavelet"] = g
        return super()._gradients(stepper, {**raw, **grads}, wrt, partials)

    def close(self) -> None:
        """Give the stepper's memory back (a stepper passed to :meth:`from_stepper` stays)."""
        if self._owned:
            self.stepper.destroy()


def simulate(velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
             sources: np.ndarray, receivers: np.ndarray, *, order: int = 8,
             pml_width: Width | None = None, free_surface: bool = False,
             boundary: str | Boundary = "pml", **options: Unpack[ExtraOptions]) -> np.ndarray:
    """Forward-model shot gathers.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m from the grid origin.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        order: 2, 4, 6 or 8.
        pml_width: absorbing cells, one int or one per face (default 20), for a named
            ``boundary``.
        free_surface: free surface on the top face.
        boundary: ``CPML(width=...)`` (the default, as ``"pml"``) or ``Sponge(width=...)``
            (Cerjan damping, as ``"sponge"``); see :mod:`diffsim.acoustic.boundaries`.
        **options: further :class:`AcousticStepper` options (``interpolation``,
            ``pml_velocity``, ``pml_frequency``).

    Returns:
        Traces ``[shot, receiver, nt]``, e.g. ``[4, 100, 1000]``, in the runtime precision.
    """
    with Simulation(velocity, spacing, dt, wavelet, sources, receivers, order=order,
                    pml_width=pml_width, free_surface=free_surface, boundary=boundary,
                    **options) as sim:
        return sim.simulate()["traces"]


@dataclass
class MisfitGradient:
    """Result of :func:`misfit_gradient`.

    Attributes:
        loss: ``0.5 * sum((traces - observed)^2)``.
        gradient: ``d loss / d velocity``, shaped like the velocity, float64.
        wavelet_gradient: ``d loss / d wavelet`` ``[shot, source, nt]``.
        traces: the synthetic traces ``[shot, receiver, nt]``.
        report: what the tape did (schedule, forward steps, memory, costate trace).
    """

    loss: float
    gradient: np.ndarray
    wavelet_gradient: np.ndarray
    traces: np.ndarray
    report: TapeReport


def misfit_gradient(velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                    sources: np.ndarray, receivers: np.ndarray, observed: np.ndarray, *,
                    order: int = 8, pml_width: Width | None = None, free_surface: bool = False,
                    checkpoint: Schedule | None = None, boundary: str | Boundary = "pml",
                    **options: Unpack[ExtraOptions]) -> MisfitGradient:
    """L2 waveform misfit and its gradient with respect to velocity (and wavelet).

    ``Simulation(...).value_and_grad(L2(observed), wrt=("velocity", "wavelet"))`` with
    the wavelet gradient per shot and source.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        observed: traces ``[shot, receiver, nt]``.
        order: 2, 4, 6 or 8.
        pml_width: absorbing cells, one int or one per face (default 20), for a named
            ``boundary``.
        free_surface: free surface on the top face.
        checkpoint: a schedule; ``None`` picks one from ``diffsim.DEFAULT_BUDGET``.
        boundary: ``CPML(width=...)`` (the default, as ``"pml"``) or ``Sponge(width=...)``
            (Cerjan damping, as ``"sponge"``); see :mod:`diffsim.acoustic.boundaries`.
        **options: further :class:`AcousticStepper` options.

    Returns:
        Loss, gradients, traces and the tape's report; see :class:`MisfitGradient`.
    """
    stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers, order=order,
                              pml_width=pml_width, free_surface=free_surface, boundary=boundary,
                              **options)
    try:
        return stepper_misfit_gradient(stepper, observed, checkpoint=checkpoint)
    finally:
        stepper.destroy()


def stepper_misfit_gradient(stepper: AcousticStepper, observed: np.ndarray, *,
                            checkpoint: Schedule | None = None) -> MisfitGradient:
    """:func:`misfit_gradient` on an existing stepper (no recompilation)."""
    res = Simulation.from_stepper(stepper).value_and_grad(
        L2(observed), wrt=("velocity", "wavelet"), checkpoint=checkpoint)
    return MisfitGradient(loss=res.loss, gradient=res.grads["velocity"],
                          wavelet_gradient=res.grads["wavelet"], traces=res.outputs["traces"],
                          report=res.report)

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
from diffsim.acoustic.density import DensityStepper, check_density
from diffsim.acoustic.stepper import AcousticStepper
from diffsim.checkpoint import Schedule
from diffsim.losses import L2

#: Model parametrisations of a variable-density simulation.
PARAMETRISATIONS = ("velocity-density", "velocity-impedance")


class Simulation(_Simulation):
    """Acoustic waves behind diffsim's one front-end shape.

    Built from the same arguments as :func:`simulate`; one :class:`AcousticStepper` is
    built and kept (on the CPU its kernels are compiled once per process anyway), and
    :meth:`update` changes the velocity or the wavelet in place.

    Takes the arguments of :func:`simulate`: ``velocity``, ``spacing``, ``dt``, ``wavelet``,
    ``sources``, ``receivers``, ``density``, ``parametrisation``, ``order``, ``pml_width``,
    ``free_surface``, ``boundary`` and ``**options`` (those of :class:`AcousticStepper`:
    ``interpolation``, ``pml_velocity``, ``pml_frequency``, ``engine``, ``adjoint``).

    With ``density`` (kg/m^3, shaped like the velocity) it runs the variable-density
    scheme (:class:`~diffsim.acoustic.density.DensityStepper`); without, the faster
    constant-density engine.

    Outputs: ``"traces"`` ``[shot, receiver, nt]``. Parameters (``wrt``,
    :meth:`update`): ``"velocity"`` (model grid, m/s), ``"density"`` (kg/m^3; with
    ``parametrisation="velocity-impedance"`` ``"impedance"`` ``rho c`` in kg/(m^2 s)
    instead, the velocity gradient then taken at fixed impedance) and ``"wavelet"``
    (shaped as given: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``; its gradient is
    summed over the shots and sources it was shared by).

    Example::

        sim = Simulation(v, 10.0, 1e-3, ricker(10.0, 1e-3, 800), src, rec, order=4)
        traces = sim.simulate()["traces"]
        res = sim.value_and_grad(L2(observed))          # res.loss, res.grads["velocity"]
        sim.update(velocity=v2)                          # nothing recompiles
    """

    parameter_names: tuple[str, ...] = ("velocity", "density", "impedance", "wavelet")
    default_wrt = ("velocity",)
    #: The second model parameter: ``"density"`` or ``"impedance"`` (None: constant density).
    second: str | None = None

    def __init__(self, velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                 sources: np.ndarray, receivers: np.ndarray, *, density: np.ndarray | None = None,
                 parametrisation: str = "velocity-density", order: int = 8,
                 pml_width: Width | None = None, free_surface: bool = False,
                 boundary: str | Boundary = "pml",
                 **options: Unpack[ExtraOptions]) -> None:
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation={parametrisation!r}; choose one of "
                             f"{PARAMETRISATIONS}")
        stepper: _AcousticSetup
        if density is None:
            if parametrisation != "velocity-density":
                raise ValueError(f"parametrisation={parametrisation!r} needs a density model "
                                 "(density=, kg/m^3)")
            stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers,
                                      order=order, pml_width=pml_width,
                                      free_surface=free_surface, boundary=boundary, **options)
        else:
            stepper = DensityStepper(velocity, density, spacing, dt, wavelet, sources,
                                     receivers, order=order, pml_width=pml_width,
                                     free_surface=free_surface, boundary=boundary, **options)
        self._adopt(stepper, np.asarray(velocity, dtype=np.float64), wavelet,
                    None if density is None else np.asarray(density, dtype=np.float64),
                    parametrisation)

    @classmethod
    def from_stepper(cls, stepper: _AcousticSetup) -> Simulation:
        """A simulation running an existing stepper (it is not closed with the simulation).

        The velocity is the stepper's model-grid velocity; the wavelet is its
        ``[shot, source, nt]`` amplitudes.
        """
        sim = cls.__new__(cls)
        params = stepper.parameters()
        rho = (stepper._crop(params["density"][None])[0] if "density" in params else None)
        sim._adopt(stepper, stepper._crop(params["velocity"][None])[0], params["wavelet"], rho,
                   "velocity-density", owned=False)
        return sim

    def _adopt(self, stepper: _AcousticSetup, velocity: np.ndarray, wavelet: object,
               density: np.ndarray | None, parametrisation: str, *, owned: bool = True) -> None:
        self.stepper = stepper
        self._owned = owned
        self._velocity = velocity.copy()
        self._density = None if density is None else density.copy()
        self._wavelet = np.array(wavelet, dtype=np.float64)
        if density is not None:
            self.second = "impedance" if parametrisation == "velocity-impedance" else "density"
        self.parameter_names = tuple(self._names())

    def _check_wrt(self, wrt: tuple[str, ...]) -> None:
        for name in ("density", "impedance"):
            if name in wrt and self.second != name:
                if self.second is None:
                    raise ValueError(f"wrt contains {name!r} but this simulation has constant "
                                     "density; pass density= (kg/m^3, shaped like the velocity) "
                                     "to model and differentiate it")
                raise ValueError(f"wrt contains {name!r} but this simulation is parametrised by "
                                 f"velocity and {self.second}; use wrt=('velocity', "
                                 f"{self.second!r}) or build it with parametrisation="
                                 f"'velocity-{name}'")

    def _snapshot(self, stepper: Stepper, t: int) -> dict[str, np.ndarray]:
        """The pressure ``{"wavefield": [shot, *model shape]}`` at time level ``t``."""
        assert isinstance(stepper, (AcousticStepper, DensityStepper))
        return {"wavefield": stepper.wavefield(t)}

    def _stepper(self, loss: object = None) -> Stepper:
        return self.stepper  # type: ignore[return-value]

    def parameters(self) -> dict[str, np.ndarray]:
        """``"velocity"`` (m/s), ``"density"`` or ``"impedance"`` if any, ``"wavelet"``.

        Model-grid arrays; the wavelet shaped as given.
        """
        out = {"velocity": self._velocity.copy(), "wavelet": self._wavelet.copy()}
        if self._density is not None:
            out["density"] = self._density.copy()
            if self.second == "impedance":
                out["impedance"] = out.pop("density") * self._velocity
        return out

    def _names(self) -> list[str]:
        return ["velocity", *([self.second] if self.second else []), "wavelet"]

    def update(self, **params: object) -> None:
        """New ``velocity`` (model grid, m/s), ``density``/``impedance`` and/or ``wavelet``.

        The wavelet keeps its shape. Under ``parametrisation="velocity-impedance"`` a new
        velocity keeps the impedance (the density becomes ``impedance / velocity``). The
        PML stays as built (its damping scaled to the first velocity's maximum unless
        ``pml_velocity`` was given). Nothing recompiles.
        """
        unknown = set(params) - set(self._names())
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{', '.join(self._names())}")
        s = self.stepper
        impedance = (params.get("impedance", self.parameters()["impedance"])
                     if self.second == "impedance" else None)
        if "velocity" in params:
            vel = np.asarray(params["velocity"], dtype=np.float64)
            s.set_velocity(vel)
            self._velocity = vel.copy()
        if self.second is not None and ({"velocity", "density", "impedance"} & set(params)):
            if impedance is not None:
                z = np.asarray(impedance, dtype=np.float64)
                if z.shape != self._velocity.shape:
                    raise ValueError(f"impedance has shape {z.shape}; the model is "
                                     f"{self._velocity.shape}")
                rho = check_density(z / self._velocity, self._velocity.shape)
            else:
                rho = check_density(np.asarray(params.get("density", self._density)),
                                    self._velocity.shape)
            s.set_param("density", s.pad(rho))
            self._density = rho.copy()
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
        fold = self.stepper.fold
        if "velocity" in wrt:
            grads["velocity"] = fold(raw["velocity"])
        if self.second is not None and self._density is not None:
            g_rho = fold(raw["density"])
            if self.second == "density" and "density" in wrt:
                grads["density"] = g_rho
            if self.second == "impedance":
                # rho = Z / c: d/dc at fixed Z = g_c - g_rho rho / c; d/dZ = g_rho / c.
                if "velocity" in wrt:
                    grads["velocity"] = grads["velocity"] - g_rho * self._density / self._velocity
                if "impedance" in wrt:
                    grads["impedance"] = g_rho / self._velocity
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
             sources: np.ndarray, receivers: np.ndarray, *, density: np.ndarray | None = None,
             order: int = 8, pml_width: Width | None = None, free_surface: bool = False,
             boundary: str | Boundary = "pml", **options: Unpack[ExtraOptions]) -> np.ndarray:
    """Forward-model shot gathers.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m from the grid origin.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        density: kg/m^3 shaped like the velocity for variable-density acoustics
            (``p_tt = rho c^2 div(1/rho grad p) + s``); ``None``: constant density (faster).
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
    with Simulation(velocity, spacing, dt, wavelet, sources, receivers, density=density,
                    order=order, pml_width=pml_width, free_surface=free_surface,
                    boundary=boundary, **options) as sim:
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
        density_gradient: ``d loss / d density`` shaped like the density (``None`` for
            constant density).
    """

    loss: float
    gradient: np.ndarray
    wavelet_gradient: np.ndarray
    traces: np.ndarray
    report: TapeReport
    density_gradient: np.ndarray | None = None


def misfit_gradient(velocity: np.ndarray, spacing: object, dt: float, wavelet: np.ndarray,
                    sources: np.ndarray, receivers: np.ndarray, observed: np.ndarray, *,
                    density: np.ndarray | None = None, order: int = 8, pml_width: Width | None = None,
                    free_surface: bool = False,
                    checkpoint: Schedule | None = None, boundary: str | Boundary = "pml",
                    **options: Unpack[ExtraOptions]) -> MisfitGradient:
    """L2 waveform misfit and its gradient with respect to velocity (density, wavelet).

    ``Simulation(...).value_and_grad(L2(observed), wrt=("velocity", "wavelet"))`` (and
    ``"density"`` when one is given) with the wavelet gradient per shot and source.

    Args:
        velocity: ``[z, x]`` or ``[z, y, x]`` in m/s.
        spacing: metres, scalar or one per axis.
        dt: time step in s.
        wavelet: ``[nt]``, ``[shot, nt]`` or ``[shot, source, nt]``.
        sources: ``[shot, ndim]`` or ``[shot, source, ndim]`` in m.
        receivers: ``[receiver, ndim]`` or ``[shot, receiver, ndim]`` in m.
        observed: traces ``[shot, receiver, nt]``.
        density: kg/m^3 shaped like the velocity (variable density; its gradient is
            ``density_gradient``); ``None``: constant density.
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
    stepper: _AcousticSetup
    if density is None:
        stepper = AcousticStepper(velocity, spacing, dt, wavelet, sources, receivers,
                                  order=order, pml_width=pml_width, free_surface=free_surface,
                                  boundary=boundary, **options)
    else:
        stepper = DensityStepper(velocity, density, spacing, dt, wavelet, sources, receivers,
                                 order=order, pml_width=pml_width, free_surface=free_surface,
                                 boundary=boundary, **options)
    try:
        return stepper_misfit_gradient(stepper, observed, checkpoint=checkpoint)
    finally:
        stepper.destroy()


def stepper_misfit_gradient(stepper: AcousticStepper | DensityStepper, observed: np.ndarray, *,
                            checkpoint: Schedule | None = None) -> MisfitGradient:
    """:func:`misfit_gradient` on an existing stepper (no recompilation)."""
    sim = Simulation.from_stepper(stepper)
    wrt = ("velocity", "wavelet") if sim.second is None else ("velocity", "density", "wavelet")
    res = sim.value_and_grad(L2(observed), wrt=wrt, checkpoint=checkpoint)
    return MisfitGradient(loss=res.loss, gradient=res.grads["velocity"],
                          wavelet_gradient=res.grads["wavelet"], traces=res.outputs["traces"],
                          report=res.report, density_gradient=res.grads.get("density"))

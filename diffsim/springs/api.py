"""The mass-spring front-end: :class:`Simulation` and the functional API over it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from diffsim._simulation import LossFunction
from diffsim._simulation import Simulation as _Simulation
from diffsim._tape import Stepper
from diffsim.checkpoint import Schedule
from diffsim.losses import FinalPosition, Loss
from diffsim.springs.steppers import SpringStepper, check_backend
from diffsim.springs.system import (
    PARAMETERS,
    Gradient,
    SpringSystem,
    Trajectory,
    _check_actuation,
    _check_dt,
    _check_steps,
    _check_velocities,
)
from diffsim.stores import CheckpointStore

# -- the user-facing simulation -------------------------------------------------------


class Simulation(_Simulation):
    """A reusable simulation of one system topology for ``steps`` steps of ``dt``.

    The front-end every diffsim physics shares: :meth:`simulate` (named outputs),
    :meth:`vjp`, :meth:`value_and_grad` and :meth:`update`. On the CPU (hand adjoint, the
    default) the kernels take NumPy arrays and compile once per process for every
    system, and each launch runs a whole range of steps. On a GPU, and with
    ``adjoint="autodiff"``, the per-step kernels take Taichi fields and compile for each
    new simulation (tenths of a second), so an optimisation loop keeps one simulation and
    changes its values with :meth:`update` (cheap either way). :func:`simulate` and
    :func:`value_and_grad` make a temporary one.

    Args:
        system: the system; its parameters and positions are the starting values.
        steps: number of time steps.
        dt: time step in s (checked against :meth:`SpringSystem.stable_dt`).
        velocities: initial velocities ``[n, d]`` in m/s (default zero).
        actuation: ``[steps, channels]`` actuation signal (default zero).
        adjoint: ``"hand"`` (gather-form adjoint kernel, default) or ``"autodiff"``
            (Taichi's ``kernel.grad`` of the step; slower, for cross-checks).
        backend: ``"auto"`` (default: whole ranges of steps on NumPy buffers on the CPU
            with the hand adjoint, else Taichi fields), ``"fused"`` or ``"fields"`` (see
            :class:`~diffsim.springs.steppers.SpringStepper`); results are the same bit
            for bit.

    Outputs: ``"positions"`` and ``"velocities"``, ``[steps + 1, n, d]`` (m, m/s); both
    take cotangents (:meth:`vjp`) and both reach a loss (the velocities are recorded only
    for losses that read them: a :class:`~diffsim.losses.Loss` says so with ``reads()``).
    Parameters (``wrt``, :meth:`update`): :data:`PARAMETERS`.
    """

    parameter_names = PARAMETERS
    default_wrt = ("stiffness",)

    def __init__(self, system: SpringSystem, steps: int, dt: float, *,
                 velocities: ArrayLike | None = None, actuation: ArrayLike | None = None,
                 adjoint: Literal["hand", "autodiff"] = "hand",
                 backend: Literal["auto", "fused", "fields"] = "auto") -> None:
        if not isinstance(system, SpringSystem):
            raise TypeError(f"system must be a SpringSystem, got {type(system).__name__}")
        self.steps = _check_steps(steps)
        self.dt = _check_dt(system, dt)
        check_backend(backend, adjoint)
        self.adjoint = adjoint
        self.backend = backend
        self.system = system
        self.velocities = _check_velocities(system, velocities)
        self.actuation = _check_actuation(system, self.steps, actuation)
        self._steppers: dict[tuple[tuple[int, ...], bool], SpringStepper] = {}

    # -- values -------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Current values by name.

        The system's parameters (scalars stay scalars), its initial ``positions``, the
        initial ``velocities`` and the ``actuation``.
        """
        s = self.system
        return {"stiffness": np.array(s.stiffness), "rest_length": np.array(s.rest_length),
                "damping": np.array(s.damping), "mass": np.array(s.mass),
                "positions": s.positions.copy(), "velocities": self.velocities.copy(),
                "actuation": self.actuation.copy()}

    def update(self, **values: ArrayLike) -> None:
        """Change parameter or initial-state values (the topology stays).

        Args:
            **values: any of ``stiffness``, ``rest_length``, ``damping``, ``mass``,
                ``positions`` (SpringSystem arguments, validated the same way), and
                ``velocities``, ``actuation``.

        Raises:
            ValueError: unknown names, bad values, or a time step that became unstable.
        """
        sys_keys = {"stiffness", "rest_length", "damping", "mass", "positions"}
        unknown = set(values) - sys_keys - {"velocities", "actuation"}
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: "
                             f"{sorted(sys_keys | {'velocities', 'actuation'})}")
        system = self.system
        changes = {k: v for k, v in values.items() if k in sys_keys}
        if changes:
            system = system.replace(**changes)
            _check_dt(system, self.dt)
        velocities = (_check_velocities(system, values["velocities"]) if "velocities" in values
                      else self.velocities)
        actuation = (_check_actuation(system, self.steps, values["actuation"])
                     if "actuation" in values else self.actuation)
        self.system, self.velocities, self.actuation = system, velocities, actuation

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"positions"`` and ``"velocities"``: ``(steps + 1, n, d)``."""
        shape = (self.steps + 1, self.system.n_particles, self.system.dim)
        return {"positions": shape, "velocities": shape}

    def _stepper(self, loss: LossFunction | None = None) -> SpringStepper:
        """The stepper recording what ``loss`` reads (its ``times`` and ``reads``).

        By default every level, and the velocities too; a loss that declares it reads only
        the positions gets a stepper that records no velocities.
        """
        times = getattr(loss, "times", None)
        levels = times(self.steps) if times is not None else None
        reads = getattr(loss, "reads", None)
        names = reads() if reads is not None else None
        return self._recording(tuple(range(self.steps + 1)) if levels is None else tuple(levels),
                               velocities=names is None or "velocities" in names)

    def _recording(self, times: tuple[int, ...], velocities: bool = False) -> SpringStepper:
        """The stepper recording the positions (and velocities) at ``times``, values loaded."""
        key = (times, velocities)
        stepper = self._steppers.get(key)
        if stepper is None:
            stepper = SpringStepper(self.system, self.steps, self.dt, times, backend=self.backend,
                                    adjoint=self.adjoint, velocities=velocities)
            self._steppers[key] = stepper
        stepper.load(self.system, self.velocities, self.actuation)
        return stepper

    # -- forward ------------------------------------------------------------------------
    def simulate(self) -> dict[str, np.ndarray]:
        """Run the rollout and return every time level (no tape; on the CPU one launch).

        Returns:
            ``{"positions", "velocities"}``, each ``[steps + 1, n, d]`` in the runtime
            precision's dtype (float32 or float64).

        Raises:
            FloatingPointError: the state became NaN or Inf, naming the first such step.
        """
        positions, velocities = self._rollout()
        # NaN and Inf never turn finite again here (they spread through the springs), so
        # checking the last level finds any blow-up; then look for its first step.
        if not (np.isfinite(positions[-1]).all() and np.isfinite(velocities[-1]).all()):
            bad = ~(np.isfinite(positions).all(axis=(1, 2)) & np.isfinite(velocities).all(axis=(1, 2)))
            raise FloatingPointError(_blow_up(int(np.argmax(bad)), self.dt))
        return {"positions": positions, "velocities": velocities}

    def _rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """Run every step, writing the trajectory straight into new NumPy arrays."""
        return self._recording((self.steps,)).trajectory()  # written apart from the record

    def _blew_up(self, exc: FloatingPointError) -> None:
        self.simulate()  # raises, naming the exact step

    # -- gradients ----------------------------------------------------------------------
    def _cotangents(self, stepper: Stepper, cot: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
        assert isinstance(stepper, SpringStepper)
        shape = (len(stepper.times), self.system.n_particles, self.system.dim)
        out = {"positions": cot.get("positions", np.zeros(shape))}
        if stepper.velocities:
            out["velocities"] = cot.get("velocities", np.zeros(shape))
        return out

    def _check_wrt(self, wrt: tuple[str, ...]) -> None:
        if "actuation" in wrt and self.system.channels == 0:
            raise ValueError("wrt contains 'actuation' but the system has no actuated springs")

    def _gradients(self, stepper: Stepper, raw: dict[str, np.ndarray], wrt: tuple[str, ...],
                   partials: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        direct = partials or {}
        grads: dict[str, np.ndarray] = {}
        assert isinstance(stepper, SpringStepper)
        init = stepper.initial_state_gradient()
        for name in wrt:
            if name == "positions":
                g = init["x"].astype(np.float64)
            elif name == "velocities":
                g = init["v"].astype(np.float64)
                g[self.system.fixed] = 0.0
            elif name == "actuation":
                g = raw["actuation"][:, : self.system.channels].astype(np.float64)
            else:
                g = raw[name].astype(np.float64) + direct.get(name, 0.0)
                if np.ndim(getattr(self.system, name)) == 0:
                    g = np.asarray(g.sum())
            grads[name] = g
        return grads

    def close(self) -> None:
        """Free every Taichi field of this simulation."""
        for stepper in self._steppers.values():
            stepper.destroy()
        self._steppers.clear()


class SpringSimulation(Simulation):
    """:class:`Simulation` whose :meth:`simulate` returns a :class:`Trajectory`.

    The first release's result type; everything else is the same.
    """

    def simulate(self) -> Trajectory:  # type: ignore[override]
        """The rollout as a :class:`Trajectory` (see :meth:`Simulation.simulate`)."""
        out = super().simulate()
        return Trajectory(out["positions"], out["velocities"], self.dt)

    def value_and_grad(self, loss: Loss, *, wrt: Sequence[str] = ("stiffness",),  # type: ignore[override]
                       checkpoint: Schedule | None = None,
                       store: CheckpointStore | None = None) -> Gradient:
        """The loss and its gradient with respect to ``wrt`` (see :func:`value_and_grad`)."""
        return super().value_and_grad(loss, wrt=wrt, checkpoint=checkpoint, store=store)


def _blow_up(step: int, dt: float) -> str:
    return (f"the simulation blew up: positions or velocities became NaN or Inf at step {step} "
            f"(t = {step * dt:.6g} s). The time step may be too large for these springs, or "
            "the parameters are extreme; reduce dt or check stiffness, mass and actuation")


def simulate(system: SpringSystem, steps: int, dt: float, velocities: ArrayLike | None = None, *,
             actuation: ArrayLike | None = None) -> Trajectory:
    """Simulate ``steps`` steps of semi-implicit Euler.

    Args:
        system: the mass-spring system.
        steps: number of steps, >= 1.
        dt: time step in s; must be below :meth:`SpringSystem.stable_dt`.
        velocities: initial velocities ``[n, d]`` in m/s (default zero; pinned particles 0).
        actuation: ``[steps, channels]`` signal for actuated springs (default zero).

    Returns:
        A :class:`Trajectory` with ``positions`` and ``velocities`` ``[steps + 1, n, d]``.

    Raises:
        ValueError: bad input or an unstable ``dt`` (the message gives the estimate).
        FloatingPointError: the state became NaN or Inf; the message names the step.
    """
    with SpringSimulation(system, steps, dt, velocities=velocities, actuation=actuation) as sim:
        return sim.simulate()


def value_and_grad(
    system: SpringSystem,
    steps: int,
    dt: float,
    *,
    target: ArrayLike | None = None,
    loss: Loss | None = None,
    wrt: Sequence[str] = ("stiffness",),
    checkpoint: Schedule | None = None,
    velocities: ArrayLike | None = None,
    actuation: ArrayLike | None = None,
    adjoint: Literal["hand", "autodiff"] = "hand",
) -> Gradient:
    """A loss of a rollout and its exact gradient.

    Args:
        system: the mass-spring system.
        steps: number of steps.
        dt: time step in s.
        target: final positions ``[n, d]`` in m for the loss ``0.5 ||x[steps] - target||^2``
            (shorthand for ``loss=FinalPosition(target)``).
        loss: any :class:`Loss`: :class:`FinalPosition`, :class:`Tracking`,
            :class:`CenterOfMass`. Give ``target`` or ``loss``, not both.
        wrt: names from :data:`PARAMETERS`: ``"stiffness"``, ``"rest_length"``,
            ``"damping"``, ``"mass"``, ``"positions"``, ``"velocities"``, ``"actuation"``.
        checkpoint: a schedule (``StoreAll()``, ``Uniform(every=100)``,
            ``Binomial(slots=16)``, ``Budget(bytes="1GiB")``); default a 1 GiB budget.
        velocities: initial velocities ``[n, d]`` in m/s.
        actuation: ``[steps, channels]`` actuation signal.
        adjoint: ``"hand"`` or ``"autodiff"`` (see :class:`SpringSimulation`).

    Returns:
        A :class:`Gradient`: ``.loss``, ``.grads`` (each shaped like its parameter) and the
        tape's ``.report``.
    """
    if (target is None) == (loss is None):
        raise ValueError("give exactly one of target=[n, d] (final-position loss) or "
                         "loss=FinalPosition(...)/Tracking(...)/CenterOfMass(...)")
    if loss is None:
        assert target is not None   # one of the two is given (checked above)
        loss = FinalPosition(target)
    with SpringSimulation(system, steps, dt, velocities=velocities, actuation=actuation,
                          adjoint=adjoint) as sim:
        return sim.value_and_grad(loss, wrt=wrt, checkpoint=checkpoint)

"""A 1D chain of nonlinear oscillators: the small differentiable system of the foundation.

``N`` masses between two fixed walls, joined by ``N + 1`` FPU-beta springs with tension
``k (d + beta d^3)`` (N), driven by an external force per mass and step, integrated
with semi-implicit Euler. It exercises every part of the tape (a nonlinear step made
of two kernels, a scratch force buffer, time-indexed outputs, both adjoint
providers) and is the README's gradient demo until the wave engine lands.

Units: displacement m, velocity m/s, mass kg, stiffness N/m, beta 1/m^2, force N, s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import taichi as ti
from numpy.typing import ArrayLike

from diffsim._runtime import np_real
from diffsim._simulation import KeptStepperSimulation
from diffsim._tape import Launch, TaichiStepper
from diffsim._validate import as_array
from diffsim.kernels.chain import chain_adjoint, chain_forces, chain_integrate, chain_record

__all__ = ["OscillatorChain", "Simulation", "energy", "period", "simulate"]


class OscillatorChain(TaichiStepper):
    """FPU-beta chain stepper.

    Args:
        stiffness: spring stiffness in N/m, ``[N + 1]`` (or a scalar), > 0.
        mass: masses in kg, ``[N]`` (or a scalar), > 0.
        beta: cubic coefficient in 1/m^2, ``[N + 1]`` (or a scalar).
        forcing: external force in N, ``[steps, N]``; its length sets the step count.
        dt: time step in s; stable while ``dt < 2 / max(sqrt(4 k / m))``.
        observed: indices of the masses whose displacement is recorded, ``[R]``.
        q0, v0: initial displacement (m) and velocity (m/s), ``[N]``; zero by default.
        adjoint: ``"autodiff"`` (Taichi ``kernel.grad``) or ``"hand"`` (gather kernel).

    Outputs: ``"positions"`` (m) and ``"velocities"`` (m/s), each ``[steps + 1, R]``. Parameters (gradients):
    ``"stiffness"`` ``[N+1]``, ``"beta"`` ``[N+1]``, ``"mass"`` ``[N]``,
    ``"forcing"`` ``[steps, N]``.
    """

    def __init__(
        self,
        *,
        stiffness: ArrayLike,
        mass: ArrayLike,
        beta: ArrayLike = 0.0,
        forcing: np.ndarray,
        dt: float,
        observed: Sequence[int],
        q0: ArrayLike = 0.0,
        v0: ArrayLike = 0.0,
        adjoint: Literal["autodiff", "hand"] = "autodiff",
    ) -> None:
        forcing = np.asarray(forcing, dtype=np.float64)
        if forcing.ndim != 2:
            raise ValueError(f"forcing must be [steps, N]; got shape {forcing.shape}")
        steps, n = forcing.shape
        if n < 1 or steps < 1:
            raise ValueError(f"forcing shape {forcing.shape} needs steps >= 1 and N >= 1")
        if not np.all(np.isfinite(forcing)):
            raise ValueError("forcing contains NaN or Inf")
        k = as_array("stiffness", stiffness, (n + 1,), positive=True)
        m = as_array("mass", mass, (n,), positive=True)
        b = as_array("beta", beta, (n + 1,), positive=False)
        if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt={dt!r} must be a positive number of seconds")
        obs = np.asarray(observed, dtype=np.int64).reshape(-1)
        if obs.size == 0 or obs.min() < 0 or obs.max() >= n:
            raise ValueError(f"observed indices {obs.tolist()} must lie in [0, {n - 1}]")
        if adjoint not in ("autodiff", "hand"):
            raise ValueError(f"adjoint={adjoint!r}; choose 'autodiff' or 'hand'")
        super().__init__(steps=steps)
        self.n = n
        self.dt = float(dt)
        self.adjoint = adjoint
        self.q = self._state("q", (n,))
        self.v = self._state("v", (n,))
        self.k = self._param("stiffness", (n + 1,))
        self.beta = self._param("beta", (n + 1,))
        self.mass = self._param("mass", (n,))
        self.forcing = self._param("forcing", (steps, n))
        self.y = self._output("positions", (obs.size,))
        self.yv = self._output("velocities", (obs.size,))
        self.f = self._scratch("force", (n,))
        self.obs = self._tree.field((obs.size,), dtype=ti.i32)
        self._finalize()
        self._k_max, self._m_min = float(k.max()), float(m.min())
        self._check_stability(self._k_max, self._m_min)
        self.set_param("stiffness", k)
        self.set_param("mass", m)
        self.set_param("beta", b)
        self.set_param("forcing", forcing)
        self.obs.from_numpy(obs.astype(np.int32))
        self.set_initial(q0=q0, v0=v0)

    def _check_stability(self, k_max: float, m_min: float) -> None:
        omega_max = float(np.sqrt(4.0 * k_max / m_min))
        if self.dt * omega_max >= 2.0:
            raise ValueError(
                f"dt={self.dt!r} s is unstable for the linear part of this chain: semi-implicit "
                f"Euler needs dt < 2 / omega_max = {2.0 / omega_max:.6g} s "
                f"(omega_max = sqrt(4 max(k) / min(m)) = {omega_max:.6g} rad/s); reduce dt"
            )

    def _check_param(self, name: str, value: np.ndarray) -> None:
        if name in ("stiffness", "mass"):
            if np.any(value <= 0):
                raise ValueError(f"{name} must be > 0 everywhere; smallest value is {float(value.min())!r}")
            k_max = float(value.max()) if name == "stiffness" else self._k_max
            m_min = float(value.min()) if name == "mass" else self._m_min
            self._check_stability(k_max, m_min)
            self._k_max, self._m_min = k_max, m_min

    def set_initial(self, *, q0: ArrayLike | None = None, v0: ArrayLike | None = None) -> None:
        """Set the initial displacement ``q0`` (m) and/or velocity ``v0`` (m/s), ``[N]`` or scalars."""
        if q0 is not None:
            self._q0 = as_array("q0", q0, (self.n,), positive=False).astype(np_real())
        if v0 is not None:
            self._v0 = as_array("v0", v0, (self.n,), positive=False).astype(np_real())

    def load_initial(self) -> None:
        """Write ``q0, v0`` into the level of time 0."""
        q = np.zeros(self.q.shape, dtype=np_real())
        v = np.zeros(self.v.shape, dtype=np_real())
        q[self.level(0)] = self._q0
        v[self.level(0)] = self._v0
        self.q.from_numpy(q)
        self.v.from_numpy(v)

    def substeps(self, step: int) -> Sequence[Launch]:
        """Spring forces into the scratch buffer, then the integrator."""
        src, dst = self.level(step), self.level(step + 1)
        return (
            (chain_forces, (self.q, self.k, self.beta, self.f, src)),
            (chain_integrate, (self.q, self.v, self.f, self.mass, self.forcing, src, dst, step,
                               self.dt)),
        )

    def record(self, t: int) -> Sequence[Launch]:
        """Record the observed displacements and velocities at time ``t``."""
        return ((chain_record, (self.q, self.v, self.obs, self.y, self.yv, self.level(t), t)),)

    def reverse_step(self, step: int) -> None:
        """Autodiff (the default) or the hand-written gather adjoint."""
        if self.adjoint == "autodiff":
            super().reverse_step(step)
        else:
            chain_adjoint(self.q, self.v, self.k, self.beta, self.mass, self.forcing,
                          self.level(step), self.level(step + 1), step, self.dt)


class Simulation(KeptStepperSimulation):
    """The chain behind diffsim's one front-end shape (see :class:`OscillatorChain`).

    Built from the same keyword arguments as :class:`OscillatorChain` (and
    :func:`simulate`); one stepper is compiled and kept, :meth:`update` changes values.

    Outputs: ``"positions"`` (m) and ``"velocities"`` (m/s), ``[steps + 1, R]``.
    Parameters (``wrt``, :meth:`update`): ``"stiffness"`` ``[N+1]``, ``"beta"``
    ``[N+1]``, ``"mass"`` ``[N]``, ``"forcing"`` ``[steps, N]``.

    Example::

        sim = Simulation(stiffness=100.0, mass=1.0, dt=0.01, forcing=f, observed=[0, 7])
        res = sim.value_and_grad(L2(observed_positions, output="positions"),
                                 wrt=("stiffness", "mass"))
    """

    parameter_names = ("stiffness", "beta", "mass", "forcing")
    default_wrt = ("stiffness",)

    def __init__(self, **chain: Any) -> None:
        self.chain = self.stepper = OscillatorChain(**chain)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``"positions"`` and ``"velocities"``: ``(steps + 1, R)``."""
        shape = (self.chain.steps + 1, int(self.chain.obs.shape[0]))
        return {"positions": shape, "velocities": shape}


def simulate(**chain: Any) -> dict[str, np.ndarray]:
    """Outputs of one rollout of :class:`OscillatorChain` (same keyword arguments)."""
    with Simulation(**chain) as sim:
        return sim.simulate()


def energy(positions: np.ndarray, velocities: np.ndarray, stiffness: np.ndarray,
           mass: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Total energy ``sum m v^2/2 + sum k (d^2/2 + beta d^4/4)`` in J, per time step.

    Args:
        positions: every mass, ``[T, N]`` in m.
        velocities: every mass, ``[T, N]`` in m/s.
        stiffness: ``[N + 1]`` in N/m.
        mass: ``[N]`` in kg.
        beta: ``[N + 1]`` in 1/m^2.

    Returns:
        ``[T]`` energies.
    """
    t = positions.shape[0]
    padded = np.concatenate([np.zeros((t, 1)), positions, np.zeros((t, 1))], axis=1)
    d = np.diff(padded, axis=1)
    potential = np.sum(stiffness * (0.5 * d**2 + 0.25 * beta * d**4), axis=1)
    return potential + np.sum(0.5 * mass * velocities**2, axis=1)


def period(stiffness: float, mass: float) -> float:
    """Small-amplitude period ``2 pi sqrt(m / (2 k))`` of one mass between two walls, in s."""
    return float(2.0 * np.pi * np.sqrt(mass / (2.0 * stiffness)))
